//! The supervisor: a small process (`plinth __supervise DIR`) that runs one attempt of one job on
//! this host and outlives the server, so a restarted server finds the attempt still supervised.
//!
//! It reads `launch.json`, starts the workers in a process group of their own, timestamps their
//! output into `output.log` (bounded), watches memory, the timeout and a `stop` request, and writes
//! how the attempt ended to `status.json` before it exits. Its standard output tells an attached
//! server `started` and `ended` at once; the files tell a server that attached later. It wakes at
//! once when a worker ends or when the attached server writes a line on its standard input (after
//! writing the `stop` file); otherwise every sample interval.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use plinth_core::jobs::{ExitCause, format_memory};
use serde::{Deserialize, Serialize};

use crate::sys;

/// The launch file's name in an attempt directory.
pub const LAUNCH_FILE: &str = "launch.json";
/// Written by the supervisor when it starts: its pid and start time.
pub const SUPERVISOR_FILE: &str = "supervisor.json";
/// Written once the workers run: their process group.
pub const WORKERS_FILE: &str = "workers.json";
/// Written last: how the attempt ended.
pub const STATUS_FILE: &str = "status.json";
/// Created by the server to stop the attempt; holds the reason (`cancelled` or `preempted`).
pub const STOP_FILE: &str = "stop";
/// The workers' timestamped output.
pub const OUTPUT_FILE: &str = "output.log";
/// System metrics sampled while the attempt runs, one JSON object per line.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The longest line kept whole; longer ones are split.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// What to run, as the executor wrote it for the supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchFile {
    pub job_id: i64,
    pub attempt: u32,
    pub command: Vec<String>,
    /// The workers' whole environment (nothing else is inherited), before the per-rank variables.
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    pub workers: u32,
    /// `CUDA_VISIBLE_DEVICES` per rank; empty when the job has no GPUs.
    pub devices: Vec<String>,
    /// The limit on the memory all workers hold together.
    pub memory_limit_bytes: Option<u64>,
    pub timeout_secs: Option<u64>,
    pub stop_grace_millis: u64,
    pub max_log_bytes: u64,
    pub sample_interval_millis: u64,
    pub master_port: u16,
    /// How often system metrics are written to `metrics.jsonl`; 0: never.
    #[serde(default)]
    pub metrics_interval_millis: u64,
}

/// One line of `metrics.jsonl`: MLflow's system metric names and their values at `timestamp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsLine {
    pub timestamp: i64,
    pub step: i64,
    pub metrics: Vec<(String, f64)>,
}

/// Writes the attempt's system metrics every interval: CPU use of the whole process group (100
/// for one busy core) and its resident memory, under MLflow's system metric names.
struct MetricsWriter {
    file: Option<std::fs::File>,
    interval: Duration,
    last: Instant,
    last_ticks: u64,
    step: i64,
    limit: Option<u64>,
}

impl MetricsWriter {
    fn new(dir: &Path, launch: &LaunchFile) -> MetricsWriter {
        let file = (launch.metrics_interval_millis > 0)
            .then(|| std::fs::OpenOptions::new().create(true).append(true).open(dir.join(METRICS_FILE)).ok())
            .flatten();
        MetricsWriter {
            file,
            interval: Duration::from_millis(launch.metrics_interval_millis.max(1)),
            last: Instant::now(),
            last_ticks: 0,
            step: 0,
            limit: launch.memory_limit_bytes,
        }
    }

    fn sample(&mut self, usage: sys::GroupUsage) {
        let Some(file) = &mut self.file else { return };
        let elapsed = self.last.elapsed();
        if elapsed < self.interval {
            return;
        }
        let cpu_secs = usage.cpu_ticks.saturating_sub(self.last_ticks) as f64 / sys::ticks_per_second() as f64;
        let mut metrics = vec![
            ("system/cpu_utilization_percentage".to_owned(), (cpu_secs / elapsed.as_secs_f64() * 1000.0).round() / 10.0),
            ("system/system_memory_usage_megabytes".to_owned(), (usage.rss_bytes as f64 / 1e5).round() / 10.0),
        ];
        if let Some(limit) = self.limit.filter(|l| *l > 0) {
            metrics.push((
                "system/system_memory_usage_percentage".to_owned(),
                (usage.rss_bytes as f64 / limit as f64 * 1000.0).round() / 10.0,
            ));
        }
        let line = MetricsLine { timestamp: now_ms(), step: self.step, metrics };
        if let Ok(mut text) = serde_json::to_vec(&line) {
            text.push(b'\n');
            let _ = file.write_all(&text);
        }
        self.step += 1;
        self.last = Instant::now();
        self.last_ticks = usage.cpu_ticks;
    }
}

/// The supervisor's identity, to tell it from a process that later took its pid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SupervisorFile {
    pub pid: i32,
    pub start_ticks: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkersFile {
    pub pgid: i32,
    pub pids: Vec<i32>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusFile {
    pub cause: String,
    pub message: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub peak_memory_bytes: Option<u64>,
    pub ended_at: i64,
}

/// Runs the supervisor on `dir`; the process's exit code. Failures it cannot put in
/// `status.json` go to standard error (the executor points it at `supervisor.log`).
pub fn main(dir: &Path) -> i32 {
    match supervise(dir) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "supervisor: {e}");
            2
        }
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> std::io::Result<T> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
}

/// Writes `value` to `path` through a temporary file, fsynced and renamed into place.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(value).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Tells an attached server something; a server that went away is not an error.
fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn now_ms() -> i64 {
    plinth_core::time::now_millis()
}

fn supervise(dir: &Path) -> std::io::Result<()> {
    let launch: LaunchFile = read_json(&dir.join(LAUNCH_FILE))?;
    let me = std::process::id() as i32;
    write_json_atomic(&dir.join(SUPERVISOR_FILE), &SupervisorFile { pid: me, start_ticks: sys::start_ticks(me).unwrap_or(0) })?;
    if let Some(reason) = stop_reason(dir) {
        return finish(dir, end_of_stop(&reason, "before it started", None));
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(OUTPUT_FILE))?;
    let (lines_tx, lines_rx) = mpsc::sync_channel::<Line>(1024);
    let writer = {
        let max = launch.max_log_bytes;
        thread::spawn(move || write_lines(log, lines_rx, max))
    };
    let mut workers: Vec<Worker> = Vec::with_capacity(launch.workers as usize);
    let mut readers = Vec::new();
    let mut pgid = 0i32;
    for rank in 0..launch.workers {
        match spawn_worker(&launch, rank, pgid) {
            Ok(mut child) => {
                let pid = child.id() as i32;
                if rank == 0 {
                    pgid = pid;
                }
                for (stream, pipe) in [
                    ('o', child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>)),
                    ('e', child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>)),
                ] {
                    if let Some(pipe) = pipe {
                        let tx = lines_tx.clone();
                        readers.push(thread::spawn(move || read_lines(pipe, stream, rank, tx)));
                    }
                }
                workers.push(Worker { rank, child, status: None });
            }
            Err(e) => {
                if pgid != 0 {
                    sys::kill_group(pgid, libc::SIGKILL);
                }
                for w in &mut workers {
                    let _ = w.child.wait();
                }
                drop(lines_tx);
                let _ = writer.join();
                let program = launch.command.first().map(String::as_str).unwrap_or_default();
                let end = End::new(ExitCause::StartFailed, format!("could not start '{program}': {e}"));
                return finish(dir, end);
            }
        }
    }
    drop(lines_tx);
    let (wake, woken) = mpsc::channel::<()>();
    for w in &workers {
        let (pid, wake) = (w.child.id() as i32, wake.clone());
        thread::spawn(move || {
            sys::wait_for_exit(pid);
            let _ = wake.send(());
        });
    }
    // Any line from the attached server means "look now" (it wrote the stop file first); its end
    // (the server went away) changes nothing.
    thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            if line.is_err() || wake.send(()).is_err() {
                return;
            }
        }
    });
    write_json_atomic(&dir.join(WORKERS_FILE), &WorkersFile { pgid, pids: workers.iter().map(|w| w.child.id() as i32).collect() })?;
    announce(&format!("started {pgid}"));
    let end = watch(dir, &launch, pgid, &mut workers, &woken);
    // Whatever of the group is left (a daemon a worker forked) goes with the attempt.
    sys::kill_group(pgid, libc::SIGKILL);
    // A process outside the group may still hold a pipe open: the readers get a moment, not forever.
    let deadline = Instant::now() + Duration::from_secs(2);
    for reader in readers {
        while !reader.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        if reader.is_finished() {
            let _ = reader.join();
        }
    }
    let _ = writer.join();
    finish(dir, end)
}

fn finish(dir: &Path, end: End) -> std::io::Result<()> {
    let status = StatusFile {
        cause: end.cause.as_str().to_owned(),
        message: end.message,
        exit_code: end.exit_code,
        signal: end.signal,
        peak_memory_bytes: end.peak,
        ended_at: now_ms(),
    };
    write_json_atomic(&dir.join(STATUS_FILE), &status)?;
    announce("ended");
    Ok(())
}

struct Worker {
    rank: u32,
    child: Child,
    status: Option<ExitStatus>,
}

/// How the attempt ended, before it is written.
struct End {
    cause: ExitCause,
    message: String,
    exit_code: Option<i32>,
    signal: Option<i32>,
    peak: Option<u64>,
}

impl End {
    fn new(cause: ExitCause, message: String) -> End {
        End { cause, message, exit_code: None, signal: None, peak: None }
    }
}

fn end_of_stop(reason: &str, when: &str, peak: Option<u64>) -> End {
    let cause = if reason.trim() == "preempted" { ExitCause::Preempted } else { ExitCause::Cancelled };
    let what = if cause == ExitCause::Preempted { "preempted" } else { "cancelled" };
    End { cause, message: format!("{what} {when}"), exit_code: None, signal: None, peak }
}

fn stop_reason(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(STOP_FILE)).ok()
}

fn spawn_worker(launch: &LaunchFile, rank: u32, pgid: i32) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let (program, args) = launch.command.split_first().ok_or_else(|| std::io::Error::other("an empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&launch.workdir)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", launch.workers.to_string())
        .env("LOCAL_WORLD_SIZE", launch.workers.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", launch.master_port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The first worker leads a new group; the others join it, so one signal reaches them all.
        .process_group(pgid);
    if let Some(devices) = launch.devices.get(rank as usize) {
        cmd.env("CUDA_VISIBLE_DEVICES", devices);
    }
    cmd.spawn()
}

/// One line of output: the stream (`o` or `e`), the rank, the bytes without the newline.
struct Line {
    stream: char,
    rank: u32,
    at: i64,
    bytes: Vec<u8>,
}

fn read_lines(pipe: Box<dyn Read + Send>, stream: char, rank: u32, tx: mpsc::SyncSender<Line>) {
    let mut reader = BufReader::with_capacity(64 * 1024, pipe);
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        // Reads at most one line, and at most MAX_LINE_BYTES of it: a line without an end cannot grow without bound.
        let n = match (&mut reader).take(MAX_LINE_BYTES as u64).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        debug_assert!(n > 0);
        if tx.send(Line { stream, rank, at: now_ms(), bytes: std::mem::take(&mut buf) }).is_err() {
            return;
        }
    }
}

/// Appends each line as `<RFC 3339 time> <stream><rank> <text>`; past `max` bytes, one note and nothing more.
fn write_lines(file: std::fs::File, rx: mpsc::Receiver<Line>, max: u64) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, file);
    let mut written = 0u64;
    let mut full = false;
    loop {
        // Flushes whenever the workers pause, so a follower sees each line soon after it is printed.
        let line = match rx.try_recv() {
            Ok(line) => line,
            Err(mpsc::TryRecvError::Empty) => {
                let _ = out.flush();
                match rx.recv() {
                    Ok(line) => line,
                    Err(_) => break,
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
        };
        if full {
            continue;
        }
        let prefix = format!("{} {}{} ", plinth_core::time::rfc3339_from_millis(line.at), line.stream, line.rank);
        let size = (prefix.len() + line.bytes.len() + 1) as u64;
        if written + size > max {
            let note = format!(
                "{} p{} output past the job's log limit of {} is dropped\n",
                plinth_core::time::rfc3339_from_millis(line.at),
                line.rank,
                format_memory(max)
            );
            let _ = out.write_all(note.as_bytes());
            full = true;
            continue;
        }
        let _ = out.write_all(prefix.as_bytes());
        let _ = out.write_all(&line.bytes);
        let _ = out.write_all(b"\n");
        written += size;
    }
    let _ = out.flush();
    let _ = out.get_ref().sync_all();
}

/// Watches the workers until all have ended; says how the attempt ended.
fn watch(dir: &Path, launch: &LaunchFile, pgid: i32, workers: &mut [Worker], woken: &mpsc::Receiver<()>) -> End {
    let started = Instant::now();
    let interval = Duration::from_millis(launch.sample_interval_millis.max(10));
    let grace = Duration::from_millis(launch.stop_grace_millis);
    let mut peak = 0u64;
    let mut metrics = MetricsWriter::new(dir, launch);
    // Set once Plinth decided the attempt ends: why, and when to stop asking nicely.
    let mut ending: Option<(End, Instant)> = None;
    loop {
        for w in workers.iter_mut().filter(|w| w.status.is_none()) {
            if let Ok(Some(status)) = w.child.try_wait() {
                w.status = Some(status);
            }
        }
        if workers.iter().all(|w| w.status.is_some()) {
            break;
        }
        let usage = sys::group_usage(pgid);
        let rss = usage.rss_bytes;
        peak = peak.max(rss);
        metrics.sample(usage);
        if ending.is_none()
            && let Some(limit) = launch.memory_limit_bytes
            && rss > limit
        {
            sys::kill_group(pgid, libc::SIGKILL);
            let message = format!("out of memory: peak {} over the {} limit", format_memory(peak), format_memory(limit));
            // Killed at once: memory over the limit is not given a grace period.
            ending = Some((End::new(ExitCause::OutOfMemory, message), Instant::now()));
        }
        if ending.is_none()
            && let Some(timeout) = launch.timeout_secs
            && started.elapsed() >= Duration::from_secs(timeout)
        {
            sys::kill_group(pgid, libc::SIGTERM);
            let message = format!("timed out after {}", humanize_secs(timeout));
            ending = Some((End::new(ExitCause::TimedOut, message), Instant::now() + grace));
        }
        if ending.is_none()
            && let Some(reason) = stop_reason(dir)
        {
            sys::kill_group(pgid, libc::SIGTERM);
            ending = Some((end_of_stop(&reason, "while running", None), Instant::now() + grace));
        }
        if ending.is_none() {
            // One failed worker fails the group (as torchrun does): the others are stopped.
            if let Some(failed) = workers.iter().find(|w| w.status.is_some_and(|s| !s.success())) {
                let mut end = exit_end(failed.rank, failed.status.expect("checked above"), peak);
                end.message.push_str("; the other workers were stopped");
                sys::kill_group(pgid, libc::SIGTERM);
                ending = Some((end, Instant::now() + grace));
            }
        }
        if let Some((_, kill_at)) = &ending
            && Instant::now() >= *kill_at
        {
            sys::kill_group(pgid, libc::SIGKILL);
        }
        // Until a worker ends, the server asks, or the interval passes; a grace period ends on time.
        let wait = match &ending {
            Some((_, kill_at)) => interval.min(kill_at.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))),
            None => interval,
        };
        let _ = woken.recv_timeout(wait);
    }
    let peak = Some(peak).filter(|p| *p > 0);
    if let Some((mut end, _)) = ending {
        end.peak = peak;
        if let Some(first) = workers.iter().find_map(|w| w.status) {
            end.exit_code = end.exit_code.or(first.code());
            end.signal = end.signal.or(std::os::unix::process::ExitStatusExt::signal(&first));
        }
        return end;
    }
    match workers.iter().find(|w| w.status.is_some_and(|s| !s.success())) {
        Some(failed) => exit_end(failed.rank, failed.status.expect("every worker ended"), peak.unwrap_or(0)),
        None => {
            let mut end = End::new(ExitCause::Succeeded, "succeeded".to_owned());
            end.exit_code = Some(0);
            end.peak = peak;
            end
        }
    }
}

fn exit_end(rank: u32, status: ExitStatus, peak: u64) -> End {
    use std::os::unix::process::ExitStatusExt;
    let peak_note = if peak > 0 { format!(" (peak memory {})", format_memory(peak)) } else { String::new() };
    let mut end = match (status.code(), status.signal()) {
        (Some(code), _) => End::new(ExitCause::Failed, format!("exited with code {code} (rank {rank}){peak_note}")),
        (None, Some(signal)) => {
            let mut message = format!("killed by signal {signal} ({}) (rank {rank}){peak_note}", sys::signal_name(signal));
            if signal == libc::SIGKILL {
                message.push_str("; not sent by Plinth: the host's out-of-memory killer, or someone else");
            }
            End::new(ExitCause::Signaled, message)
        }
        (None, None) => End::new(ExitCause::Failed, format!("ended without an exit code (rank {rank})")),
    };
    end.exit_code = status.code();
    end.signal = status.signal();
    end.peak = Some(peak).filter(|p| *p > 0);
    end
}

fn humanize_secs(secs: u64) -> String {
    match secs {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
