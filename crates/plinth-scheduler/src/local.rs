//! `LocalExecutor`: attempts as processes on this host, each under a supervisor process of its own
//! (`supervisor.rs`) that outlives the server.
//!
//! An attempt lives in `<root>/<job>/<attempt>/`: `launch.json`, the supervisor's files, the
//! output, and `work/`, its working directory. Its handle is that directory. Limits: memory by a
//! watchdog in the supervisor (the group's resident memory sampled, the group killed past the
//! limit); GPUs from the configured inventory through `CUDA_VISIBLE_DEVICES`; CPU is a quota for
//! admission only (see `docs/jobs.md`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use plinth_core::jobs::{AttemptEnd, ExitCause};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::executor::{Executor, ExecutorError, ExecutorEvent, Launch};
use crate::supervisor::{
    LAUNCH_FILE, LaunchFile, OUTPUT_FILE, STATUS_FILE, STOP_FILE, SUPERVISOR_FILE, StatusFile, SupervisorFile, WORKERS_FILE, WorkersFile,
    write_json_atomic,
};
use crate::sys;

/// A GPU of this host, with its flavor (`gpu-a100`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    pub index: u32,
    pub flavor: String,
}

/// How the local executor is set up (the server builds it from `[jobs.local]`).
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Where attempts live (`<data_dir>/jobs`).
    pub root: PathBuf,
    /// The program that runs `__supervise DIR` (the `plinth` binary itself).
    pub supervisor: PathBuf,
    /// The environment every job starts from (PATH, HOME, LANG, … as the server chose), before its own.
    pub base_env: Vec<(String, String)>,
    pub gpus: Vec<Gpu>,
    pub stop_grace: Duration,
    pub max_log_bytes: u64,
    pub sample_interval: Duration,
    /// How often system metrics are sampled into the job's run; zero: never.
    pub metrics_interval: Duration,
}

/// The GPUs each live attempt (job, attempt) holds.
type DeviceTable = Arc<Mutex<HashMap<(i64, u32), Vec<u32>>>>;

/// The standard input of each supervisor this server started: a line wakes it.
type Wakers = Arc<Mutex<HashMap<(i64, u32), tokio::process::ChildStdin>>>;

pub struct LocalExecutor {
    options: LocalOptions,
    events: mpsc::UnboundedSender<ExecutorEvent>,
    wakers: Wakers,
    /// The GPUs each live attempt holds.
    devices: DeviceTable,
}

fn failed(what: &str, e: impl std::fmt::Display) -> ExecutorError {
    ExecutorError::Failed { message: format!("{what}: {e}") }
}

impl LocalExecutor {
    pub fn new(options: LocalOptions, events: mpsc::UnboundedSender<ExecutorEvent>) -> Arc<LocalExecutor> {
        Arc::new(LocalExecutor {
            options,
            events,
            wakers: Arc::new(Mutex::new(HashMap::new())),
            devices: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// How memory limits are enforced on this host, for the start-up log and the docs.
    pub fn limits_mode() -> &'static str {
        // cgroup v2 is detected and named; the watchdog is what enforces limits in both cases for now.
        if sys::cgroup_v2_memory() {
            "memory watchdog (cgroup v2 with the memory controller is available)"
        } else {
            "memory watchdog (no cgroup v2 memory controller on this host)"
        }
    }

    fn dir(&self, job_id: i64, attempt: u32) -> PathBuf {
        self.options.root.join(job_id.to_string()).join(attempt.to_string())
    }

    /// Picks `count` free GPUs of `flavor` (any flavor when `None`) for an attempt.
    fn take_devices(&self, key: (i64, u32), count: usize, flavor: Option<&str>) -> Result<Vec<u32>, ExecutorError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut held = self.devices.lock().expect("device table lock");
        let busy: Vec<u32> = held.values().flatten().copied().collect();
        let free: Vec<u32> = self
            .options
            .gpus
            .iter()
            .filter(|g| flavor.is_none_or(|f| g.flavor == f) && !busy.contains(&g.index))
            .map(|g| g.index)
            .collect();
        if free.len() < count {
            return Err(ExecutorError::NoCapacity {
                message: format!("{count} GPUs of flavor {} are needed and {} are free on this host", flavor.unwrap_or("any"), free.len()),
            });
        }
        let taken = free[..count].to_vec();
        held.insert(key, taken.clone());
        Ok(taken)
    }

    fn release_devices(&self, key: (i64, u32)) {
        self.devices.lock().expect("device table lock").remove(&key);
    }

    async fn prepare(&self, launch: &Launch, dir: &Path) -> Result<LaunchFile, ExecutorError> {
        let work = dir.join("work");
        tokio::fs::create_dir_all(&work).await.map_err(|e| failed(&format!("could not create {}", work.display()), e))?;
        if let Some(code) = &launch.code_dir {
            let (from, to) = (code.clone(), work.clone());
            tokio::task::spawn_blocking(move || copy_tree(&from, &to))
                .await
                .map_err(|e| failed("could not copy the job's code", e))?
                .map_err(|e| failed("could not copy the job's code", e))?;
        }
        let per_worker = launch.resources.gpus as usize;
        let flavor = launch.flavors.get(plinth_core::jobs::GPU).map(String::as_str);
        let taken = self.take_devices((launch.job_id, launch.attempt), per_worker * launch.workers as usize, flavor)?;
        let devices: Vec<String> = if per_worker == 0 {
            Vec::new()
        } else {
            taken.chunks(per_worker).map(|c| c.iter().map(u32::to_string).collect::<Vec<_>>().join(",")).collect()
        };
        let master_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| failed("could not pick a port for MASTER_PORT", e))?;
        let mut env: BTreeMap<String, String> = self.options.base_env.iter().cloned().collect();
        env.extend(launch.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.insert("PLINTH_JOB_ID".into(), launch.job_id.to_string());
        let memory = launch.resources.memory_bytes.saturating_mul(u64::from(launch.workers));
        Ok(LaunchFile {
            job_id: launch.job_id,
            attempt: launch.attempt,
            command: launch.command.clone(),
            env: env.into_iter().collect(),
            workdir: work,
            workers: launch.workers,
            devices,
            memory_limit_bytes: (memory > 0).then_some(memory),
            timeout_secs: launch.timeout_secs,
            stop_grace_millis: u64::try_from(self.options.stop_grace.as_millis()).unwrap_or(u64::MAX),
            max_log_bytes: self.options.max_log_bytes,
            sample_interval_millis: u64::try_from(self.options.sample_interval.as_millis()).unwrap_or(100),
            master_port,
            metrics_interval_millis: u64::try_from(self.options.metrics_interval.as_millis()).unwrap_or(0),
        })
    }
}

/// How an attempt ended, from its directory: `status.json` when the supervisor wrote it, else the
/// stop request (a stop that had to kill the supervisor), else lost.
fn read_end(dir: &Path, lost_why: &str) -> AttemptEnd {
    if let Ok(bytes) = std::fs::read(dir.join(STATUS_FILE))
        && let Ok(status) = serde_json::from_slice::<StatusFile>(&bytes)
    {
        return AttemptEnd {
            cause: ExitCause::parse(&status.cause).unwrap_or(ExitCause::Lost),
            message: status.message,
            exit_code: status.exit_code,
            signal: status.signal,
            peak_memory_bytes: status.peak_memory_bytes,
        };
    }
    if let Ok(reason) = std::fs::read_to_string(dir.join(STOP_FILE)) {
        let cause = if reason.trim() == "preempted" { ExitCause::Preempted } else { ExitCause::Cancelled };
        return AttemptEnd {
            cause,
            message: format!("{} (stopped by force)", cause.as_str()),
            exit_code: None,
            signal: None,
            peak_memory_bytes: None,
        };
    }
    AttemptEnd { cause: ExitCause::Lost, message: lost_why.to_owned(), exit_code: None, signal: None, peak_memory_bytes: None }
}

/// What an adopted attempt's directory says.
enum Adoption {
    /// The supervisor lives; `running` once its workers started.
    Alive { running: bool },
    /// The supervisor wrote how the attempt ended.
    Ended,
    /// The supervisor is gone without a word.
    Gone,
}

fn adoption_state(dir: &Path) -> Adoption {
    if dir.join(STATUS_FILE).exists() {
        return Adoption::Ended;
    }
    match read_json::<SupervisorFile>(&dir.join(SUPERVISOR_FILE)) {
        Some(s) if sys::is_same_process(s.pid, s.start_ticks) => Adoption::Alive { running: dir.join(WORKERS_FILE).exists() },
        _ => {
            // The status may have landed between the two checks.
            if dir.join(STATUS_FILE).exists() { Adoption::Ended } else { Adoption::Gone }
        }
    }
}

/// Kills the workers of an attempt whose supervisor ended without writing how it ended.
fn kill_leftovers_if_unfinished(dir: &Path) {
    if !dir.join(STATUS_FILE).exists() {
        kill_leftovers(dir);
    }
}

fn read_json<T: for<'de> serde::Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Kills what is left of an attempt whose supervisor is gone: its workers' group.
fn kill_leftovers(dir: &Path) {
    if let Some(workers) = read_json::<WorkersFile>(&dir.join(WORKERS_FILE)) {
        sys::kill_group(workers.pgid, libc::SIGKILL);
    }
}

/// Copies a directory tree; symbolic links are refused (a job's code may not point outside itself).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        } else {
            return Err(std::io::Error::other(format!("{} is not a regular file or directory", entry.path().display())));
        }
    }
    Ok(())
}

#[async_trait]
impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    fn handle_of(&self, job_id: i64, attempt: u32) -> String {
        self.dir(job_id, attempt).display().to_string()
    }

    async fn launch(&self, launch: Launch) -> Result<(), ExecutorError> {
        let dir = self.dir(launch.job_id, launch.attempt);
        let file = match self.prepare(&launch, &dir).await {
            Ok(file) => file,
            Err(e) => {
                self.release_devices((launch.job_id, launch.attempt));
                return Err(e);
            }
        };
        let key = (launch.job_id, launch.attempt);
        let written = {
            let (path, file) = (dir.join(LAUNCH_FILE), file.clone());
            tokio::task::spawn_blocking(move || write_json_atomic(&path, &file)).await
        };
        if let Err(e) = written.map_err(std::io::Error::other).and_then(|r| r) {
            self.release_devices(key);
            return Err(failed("could not write the launch file", e));
        }
        let log = std::fs::File::create(dir.join("supervisor.log")).map_err(|e| failed("could not create supervisor.log", e))?;
        let mut child = tokio::process::Command::new(&self.options.supervisor)
            .arg("__supervise")
            .arg(&dir)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| {
                self.release_devices(key);
                failed(&format!("could not start the supervisor {}", self.options.supervisor.display()), e)
            })?;
        let stdout = child.stdout.take().expect("stdout was piped");
        if let Some(stdin) = child.stdin.take() {
            self.wakers.lock().expect("wakers lock").insert(key, stdin);
        }
        let wakers = self.wakers.clone();
        let (job_id, attempt) = key;
        let events = self.events.clone();
        let devices = self.devices.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let mut ended = false;
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("started") {
                    let _ = events.send(ExecutorEvent::Running { job_id, attempt });
                } else if line == "ended" {
                    ended = true;
                }
            }
            let _ = child.wait().await;
            let why = if ended { "the supervisor ended without a status" } else { "the supervisor died" };
            let end = {
                let dir = dir.clone();
                let why = why.to_owned();
                tokio::task::spawn_blocking(move || {
                    kill_leftovers_if_unfinished(&dir);
                    read_end(&dir, &why)
                })
                .await
                .unwrap_or_else(|e| AttemptEnd {
                    cause: ExitCause::Lost,
                    message: e.to_string(),
                    exit_code: None,
                    signal: None,
                    peak_memory_bytes: None,
                })
            };
            devices.lock().expect("device table lock").remove(&(job_id, attempt));
            wakers.lock().expect("wakers lock").remove(&(job_id, attempt));
            let _ = events.send(ExecutorEvent::Ended { job_id, attempt, end });
        });
        Ok(())
    }

    async fn stop(&self, job_id: i64, attempt: u32, handle: &str, reason: &str) -> Result<(), ExecutorError> {
        let dir = PathBuf::from(handle);
        if dir.join(STATUS_FILE).exists() {
            return Ok(());
        }
        let stop = dir.join(STOP_FILE);
        if !stop.exists() {
            tokio::fs::create_dir_all(&dir).await.map_err(|e| failed("could not reach the attempt's directory", e))?;
            tokio::fs::write(&stop, reason).await.map_err(|e| failed("could not write the stop request", e))?;
        }
        // A supervisor this server started hears it at once; an adopted one at its next sample.
        let waker = self.wakers.lock().expect("wakers lock").remove(&(job_id, attempt));
        if let Some(mut stdin) = waker {
            use tokio::io::AsyncWriteExt;
            let _ = stdin.write_all(b"stop\n").await;
            let _ = stdin.flush().await;
        }
        // Should the supervisor be stuck or gone, the workers are killed by force after the grace period.
        let grace = self.options.stop_grace + Duration::from_secs(2);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if !dir.join(STATUS_FILE).exists() {
                tracing::warn!(job_id, attempt, "The attempt did not stop within its grace period; its processes are killed.");
                kill_leftovers(&dir);
                if let Some(s) = read_json::<SupervisorFile>(&dir.join(SUPERVISOR_FILE))
                    && sys::is_same_process(s.pid, s.start_ticks)
                {
                    sys::kill_process(s.pid, libc::SIGKILL);
                }
            }
        });
        Ok(())
    }

    async fn adopt(&self, job_id: i64, attempt: u32, handle: &str) -> Result<(), ExecutorError> {
        let dir = PathBuf::from(handle);
        if let Some(launch) = read_json::<LaunchFile>(&dir.join(LAUNCH_FILE)) {
            let held: Vec<u32> = launch.devices.iter().flat_map(|d| d.split(',').filter_map(|i| i.parse().ok())).collect();
            if !held.is_empty() {
                self.devices.lock().expect("device table lock").insert((job_id, attempt), held);
            }
        }
        let events = self.events.clone();
        let devices = self.devices.clone();
        tokio::spawn(async move {
            let mut announced = false;
            loop {
                let d = dir.clone();
                let state = tokio::task::spawn_blocking(move || adoption_state(&d)).await.unwrap_or(Adoption::Gone);
                match state {
                    Adoption::Alive { running } => {
                        if running && !announced {
                            announced = true;
                            let _ = events.send(ExecutorEvent::Running { job_id, attempt });
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Adoption::Ended | Adoption::Gone => {
                        let d = dir.clone();
                        let end = tokio::task::spawn_blocking(move || {
                            kill_leftovers_if_unfinished(&d);
                            read_end(&d, "the supervisor died while the server was down")
                        })
                        .await
                        .unwrap_or_else(|e| AttemptEnd {
                            cause: ExitCause::Lost,
                            message: e.to_string(),
                            exit_code: None,
                            signal: None,
                            peak_memory_bytes: None,
                        });
                        devices.lock().expect("device table lock").remove(&(job_id, attempt));
                        let _ = events.send(ExecutorEvent::Ended { job_id, attempt, end });
                        return;
                    }
                }
            }
        });
        Ok(())
    }

    fn log_path(&self, job_id: i64, attempt: u32) -> PathBuf {
        self.dir(job_id, attempt).join(OUTPUT_FILE)
    }

    fn system_metrics_path(&self, job_id: i64, attempt: u32) -> Option<PathBuf> {
        Some(self.dir(job_id, attempt).join(crate::supervisor::METRICS_FILE))
    }
}
