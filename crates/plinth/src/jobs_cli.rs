//! `plinth jobs …` and `plinth queues …`: training jobs and their queues on a running server
//! (`/api/plinth/v1/jobs`, `/api/plinth/v1/queues`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::client::{Client, Connection, print};

#[derive(Subcommand)]
pub(crate) enum JobsCommand {
    /// Queue a job: `plinth jobs submit --queue team-a --cpus 4 --memory 8Gi -- python train.py --lr 0.01`.
    Submit(Box<SubmitArgs>),
    /// Jobs, newest first (yours only, unless you have READ on the queue you name or are an admin).
    List {
        #[arg(long)]
        queue: Option<String>,
        /// One state or several, comma-separated (queued,running,…).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// One job: its state, why it waits and where it stands, how its last attempt ended.
    Get { id: i64 },
    /// A job's output, from the first line; `-f` follows it live (across retries) and reconnects
    /// where it left off.
    Logs {
        id: i64,
        #[arg(short, long)]
        follow: bool,
        /// Which attempt (default: the latest).
        #[arg(long)]
        attempt: Option<u32>,
        /// Show each line's time, stream (o/e) and worker rank.
        #[arg(long)]
        timestamps: bool,
    },
    /// Cancel a job, whatever its state (queued, starting or running); cancelling again changes nothing.
    Cancel { id: i64 },
}

#[derive(Args)]
pub(crate) struct SubmitArgs {
    /// A job file (TOML, the fields of the API's job body); flags override what it says.
    #[arg(long)]
    file: Option<PathBuf>,
    /// The local queue to submit to.
    #[arg(long)]
    queue: Option<String>,
    #[arg(long)]
    name: Option<String>,
    /// CPUs per worker: 4, 0.5 or 500m.
    #[arg(long)]
    cpus: Option<String>,
    /// Memory per worker (also its limit): 8Gi, 512Mi.
    #[arg(long)]
    memory: Option<String>,
    /// GPUs per worker.
    #[arg(long)]
    gpus: Option<u64>,
    /// The GPUs' flavor (gpu-a100); any the queue offers when left out.
    #[arg(long)]
    gpu_flavor: Option<String>,
    /// Workers, admitted together; each gets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
    #[arg(long)]
    workers: Option<u32>,
    /// Longest the job may run: 90s, 30m, 2h.
    #[arg(long)]
    timeout: Option<String>,
    /// Retries after a failure (see --retry-on).
    #[arg(long)]
    retries: Option<u32>,
    /// The wait before the first retry (doubling for each next): 10s, 1m.
    #[arg(long)]
    retry_backoff: Option<String>,
    /// Which ends retry, comma-separated: failed, signaled, out_of_memory, timed_out, lost, start_failed.
    #[arg(long)]
    retry_on: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    priority: Option<i32>,
    /// The experiment (by name) the job's run is created in; created when it does not exist.
    #[arg(long)]
    experiment: Option<String>,
    /// An environment variable as KEY=VALUE (repeat for several).
    #[arg(long)]
    env: Vec<String>,
    /// A tag of the job and its run as KEY=VALUE (repeat for several).
    #[arg(long)]
    tag: Vec<String>,
    /// The code directory the job runs in: packed, uploaded once per content (by its SHA-256) and
    /// unpacked as the job's working directory (`.git` and `__pycache__` are left out).
    #[arg(long)]
    code: Option<PathBuf>,
    /// Submitting again with the same key answers the first job instead of queueing another.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Follow the job's output once it is queued.
    #[arg(short, long)]
    follow: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Subcommand)]
pub(crate) enum QueuesCommand {
    /// What applying a queue configuration file would change.
    Plan { file: PathBuf },
    /// Apply a queue configuration file (flavors, cluster queues with quotas, cohorts, local queues).
    Apply {
        file: PathBuf,
        /// Apply only over this version (what you planned against).
        #[arg(long)]
        version: Option<i64>,
    },
    /// The configuration in force and each queue's usage per flavor and resource.
    List,
}

fn pair(raw: &str, what: &str) -> anyhow::Result<(String, String)> {
    match raw.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => bail!("{what} '{raw}' is not KEY=VALUE"),
    }
}

fn secs(raw: &str, what: &str) -> anyhow::Result<u64> {
    if let Ok(n) = raw.parse::<u64>() {
        return Ok(n);
    }
    let d = humantime::parse_duration(raw).with_context(|| format!("{what} '{raw}' is not a duration (90s, 30m, 2h)"))?;
    Ok(d.as_secs())
}

/// The job body: the file's fields, then the flags over them.
fn body(args: &SubmitArgs) -> anyhow::Result<Value> {
    let mut body = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let table: toml::Table = text.parse().with_context(|| format!("{} is not valid TOML", path.display()))?;
            match serde_json::to_value(table)? {
                Value::Object(map) => map,
                _ => Map::new(),
            }
        }
        None => Map::new(),
    };
    // A file may give the timeout as text ("2h").
    if let Some(Value::String(t)) = body.remove("timeout") {
        body.insert("timeout_secs".into(), json!(secs(&t, "timeout")?));
    }
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            body.insert(key.to_owned(), v);
        }
    };
    set("queue", args.queue.clone().map(Value::from));
    set("name", args.name.clone().map(Value::from));
    set("workers", args.workers.map(Value::from));
    set("priority", args.priority.map(Value::from));
    set("experiment", args.experiment.clone().map(Value::from));
    set("idempotency_key", args.idempotency_key.clone().map(Value::from));
    set("timeout_secs", args.timeout.as_deref().map(|t| secs(t, "--timeout")).transpose()?.map(Value::from));
    if !args.command.is_empty() {
        body.insert("command".into(), json!(args.command));
    }
    let mut resources = match body.remove("resources") {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    for (key, value) in [
        ("cpus", args.cpus.clone().map(Value::from)),
        ("memory", args.memory.clone().map(Value::from)),
        ("gpus", args.gpus.map(Value::from)),
        ("gpu_flavor", args.gpu_flavor.clone().map(Value::from)),
    ] {
        if let Some(v) = value {
            resources.insert(key.to_owned(), v);
        }
    }
    if !resources.is_empty() {
        body.insert("resources".into(), Value::Object(resources));
    }
    let mut retries = match body.remove("retries") {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    if let Some(n) = args.retries {
        retries.insert("max".into(), json!(n));
    }
    if let Some(b) = &args.retry_backoff {
        retries.insert("backoff_secs".into(), json!(secs(b, "--retry-backoff")?));
    }
    if let Some(on) = &args.retry_on {
        retries.insert("on".into(), json!(on.split(',').map(str::trim).collect::<Vec<_>>()));
    }
    if !retries.is_empty() {
        body.insert("retries".into(), Value::Object(retries));
    }
    for (flag, key, items) in [("--env", "env", &args.env), ("--tag", "tags", &args.tag)] {
        if items.is_empty() {
            continue;
        }
        let mut map = match body.remove(key) {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        for raw in items {
            let (k, v) = pair(raw, flag)?;
            map.insert(k, Value::from(v));
        }
        body.insert(key.to_owned(), Value::Object(map));
    }
    if !body.contains_key("command") {
        bail!("no command: give it after `--` (plinth jobs submit --queue Q -- python train.py) or as command in --file");
    }
    if !body.contains_key("queue") {
        bail!("no queue: give --queue (or queue in --file)");
    }
    Ok(Value::Object(body))
}

/// One line for people: the job's state and why it waits or how it ended.
fn summary(job: &Value) -> String {
    let mut line = format!("job {} {}", job["id"], job["state"].as_str().unwrap_or("?"));
    if let Some(reason) = job["waiting"]["text"].as_str() {
        line.push_str(&format!(": {reason}"));
    } else if let Some(message) = job["last_end"]["message"].as_str() {
        line.push_str(&format!(": {message}"));
    }
    line
}

pub(crate) fn jobs(conn: &Connection, command: JobsCommand) -> anyhow::Result<()> {
    let client = Client::new(conn)?;
    match command {
        JobsCommand::Submit(args) => {
            let mut body = body(&args)?;
            if let Some(dir) = &args.code {
                body["code"] = Value::from(upload_code(&client, dir)?);
            }
            let answer = client.call(Method::POST, "/jobs", &[], Some(body))?;
            let job = &answer["job"];
            if !answer["created"].as_bool().unwrap_or(true) {
                eprintln!("job {} was already submitted with this idempotency key", job["id"]);
            }
            if args.follow {
                eprintln!("{}", summary(job));
                let id = job["id"].as_i64().context("the server answered a job without an id")?;
                return follow_logs(&client, id, None, false, true);
            }
            print(&answer)
        }
        JobsCommand::List { queue, state, limit } => {
            let mut query = vec![("max_results", limit.to_string())];
            if let Some(q) = queue {
                query.push(("queue", q));
            }
            if let Some(s) = state {
                query.push(("state", s));
            }
            print(&client.call(Method::GET, "/jobs", &query, None)?)
        }
        JobsCommand::Get { id } => print(&client.call(Method::GET, &format!("/jobs/{id}"), &[], None)?),
        JobsCommand::Cancel { id } => {
            let answer = client.call(Method::POST, &format!("/jobs/{id}/cancel"), &[], None)?;
            eprintln!("{}", summary(&answer["job"]));
            print(&answer)
        }
        JobsCommand::Logs { id, follow, attempt, timestamps } => follow_logs(&client, id, attempt, timestamps, follow),
    }
}

/// Writes the output's lines, without their prefix unless `timestamps`.
fn write_lines(out: &mut impl Write, chunk: &[u8], pending: &mut Vec<u8>, timestamps: bool) -> std::io::Result<()> {
    pending.extend_from_slice(chunk);
    while let Some(end) = pending.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = pending.drain(..=end).collect();
        if timestamps {
            out.write_all(&line)?;
        } else {
            // `<time> <o|e><rank> <text>`: the text starts after the second space.
            let mut spaces = line.iter().enumerate().filter(|(_, b)| **b == b' ').map(|(i, _)| i);
            let start = spaces.nth(1).map_or(0, |i| i + 1);
            out.write_all(&line[start..])?;
        }
    }
    out.flush()
}

/// Prints an attempt's output; following, goes on across retries until the job ended and
/// reconnects (from the byte it reached) when the connection drops.
fn follow_logs(client: &Client, id: i64, attempt: Option<u32>, timestamps: bool, follow: bool) -> anyhow::Result<()> {
    let job = client.call(Method::GET, &format!("/jobs/{id}"), &[], None)?;
    let mut attempt = attempt.unwrap_or_else(|| job["job"]["attempt"].as_u64().unwrap_or(1) as u32);
    let mut offset = 0u64;
    let mut failures = 0u32;
    let stdout = std::io::stdout();
    loop {
        let mut query = vec![("attempt", attempt.to_string()), ("offset", offset.to_string())];
        if follow {
            query.push(("follow", "true".into()));
        }
        let mut pending = Vec::new();
        match client.get_stream(&format!("/jobs/{id}/logs"), &query) {
            Ok(resp) => {
                let mut reader = std::io::BufReader::with_capacity(64 * 1024, resp);
                let mut out = stdout.lock();
                let mut complete = false;
                loop {
                    let buf = match reader.fill_buf() {
                        Ok([]) => {
                            complete = true;
                            break;
                        }
                        Ok(buf) => buf,
                        Err(e) => {
                            failures += 1;
                            eprintln!("(connection lost: {e}; reconnecting from byte {offset})");
                            break;
                        }
                    };
                    let n = buf.len();
                    write_lines(&mut out, buf, &mut pending, timestamps)?;
                    offset += n as u64;
                    reader.consume(n);
                    failures = 0;
                }
                if complete {
                    // A last line without its newline is shown as it is.
                    out.write_all(&pending)?;
                    out.flush()?;
                } else {
                    // Resuming from `offset` reads the partial line again, whole.
                    offset -= pending.len() as u64;
                }
            }
            Err(e) if follow && failures < 30 => {
                failures += 1;
                eprintln!("(cannot read the output: {e:#}; retrying)");
            }
            Err(e) => return Err(e),
        }
        if !follow {
            return Ok(());
        }
        if failures > 0 {
            std::thread::sleep(std::time::Duration::from_secs(1));
            continue;
        }
        // The attempt ended: the job ended too, or another attempt follows.
        let job = client.call(Method::GET, &format!("/jobs/{id}"), &[], None)?;
        let job = &job["job"];
        let latest = job["attempt"].as_u64().unwrap_or(1) as u32;
        let state = job["state"].as_str().unwrap_or("");
        if latest > attempt {
            eprintln!("--- attempt {latest} ---");
            attempt = latest;
            offset = 0;
            continue;
        }
        if matches!(state, "succeeded" | "failed" | "cancelled" | "timed_out" | "out_of_memory" | "lost") {
            eprintln!("{}", summary(job));
            return Ok(());
        }
        // Not started yet (queued, admitted, starting): wait for its output to begin.
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

pub(crate) fn queues(conn: &Connection, command: QueuesCommand) -> anyhow::Result<()> {
    let client = Client::new(conn)?;
    let read = |file: &PathBuf| std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()));
    match command {
        QueuesCommand::Plan { file } => {
            let answer = client.call(Method::POST, "/queues/plan", &[], Some(json!({"text": read(&file)?})))?;
            print_changes(&answer);
            Ok(())
        }
        QueuesCommand::Apply { file, version } => {
            let answer = client.call(Method::PUT, "/queues", &[], Some(json!({"text": read(&file)?, "version": version})))?;
            print_changes(&answer);
            println!("applied: version {}", answer["version"]);
            Ok(())
        }
        QueuesCommand::List => print(&client.call(Method::GET, "/queues", &[], None)?),
    }
}

fn print_changes(answer: &Value) {
    let changes = answer["changes"].as_array().cloned().unwrap_or_default();
    if changes.is_empty() {
        println!("no changes (version {})", answer["version"]);
    }
    for change in changes {
        println!("{}", change.as_str().unwrap_or_default());
    }
}

/// Directories never packed: version control and Python's byte-code caches.
const SKIPPED: &[&str] = &[".git", "__pycache__"];

/// Packs `dir` as a tar archive the same way every time (entries in name order; times, owners and
/// modes normalized), so the same code has the same digest.
fn pack(dir: &Path) -> anyhow::Result<(std::fs::File, String, u64)> {
    use sha2::Digest;
    if !dir.is_dir() {
        bail!("--code {} is not a directory", dir.display());
    }
    let file = tempfile::tempfile().context("cannot create a temporary file for the code archive")?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    let mut files = 0u64;
    while let Some(rel) = stack.pop() {
        let full = dir.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&full)
            .with_context(|| format!("cannot read {}", full.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot read {}", full.display()))?;
        entries.sort_by_key(|e| e.file_name());
        // Directories are visited in name order: pushed in reverse onto the stack.
        let mut dirs = Vec::new();
        for entry in entries {
            let name = entry.file_name();
            let path = rel.join(&name);
            let kind = entry.file_type().with_context(|| format!("cannot read {}", entry.path().display()))?;
            if kind.is_symlink() {
                bail!("{} is a symbolic link: a job's code holds regular files and directories only", entry.path().display());
            }
            if kind.is_dir() {
                if !SKIPPED.iter().any(|s| name == *s) {
                    dirs.push(path);
                }
                continue;
            }
            if !kind.is_file() {
                bail!("{} is not a regular file", entry.path().display());
            }
            let meta = entry.metadata().with_context(|| format!("cannot read {}", entry.path().display()))?;
            let executable = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0;
            let mut header = tar::Header::new_gnu();
            header.set_size(meta.len());
            header.set_mode(if executable { 0o755 } else { 0o644 });
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            header.set_entry_type(tar::EntryType::Regular);
            let content = std::fs::File::open(entry.path()).with_context(|| format!("cannot read {}", entry.path().display()))?;
            builder.append_data(&mut header, &path, content).with_context(|| format!("cannot pack {}", entry.path().display()))?;
            files += 1;
        }
        stack.extend(dirs.into_iter().rev());
    }
    let writer = builder.into_inner().context("cannot finish the code archive")?;
    let mut file = writer.into_inner().map_err(|e| anyhow::anyhow!("cannot write the code archive: {}", e.error()))?;
    std::io::Seek::rewind(&mut file)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    std::io::Seek::rewind(&mut file)?;
    Ok((file, format!("sha256:{}", hex::encode(hasher.finalize())), files))
}

/// Packs and uploads `dir` unless the server already has that content; answers its digest.
fn upload_code(client: &Client, dir: &Path) -> anyhow::Result<String> {
    let (file, digest, files) = pack(dir)?;
    let path = format!("/jobs/code/{digest}");
    if client.call(Method::GET, &path, &[], None).is_ok() {
        eprintln!("code {digest} ({files} files) is already on the server");
        return Ok(digest);
    }
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    eprintln!("uploading code {digest} ({files} files, {size} bytes)");
    client.send_body(Method::PUT, &path, &[], reqwest::blocking::Body::sized(file, size), "application/x-tar")?;
    Ok(digest)
}

#[derive(Subcommand)]
pub(crate) enum SweepsCommand {
    /// Start a sweep from its file (TOML: a job template with {param} placeholders, parameters,
    /// the objective, max_trials, parallelism, early_stopping).
    Create { file: PathBuf },
    /// Sweeps, newest first.
    List {
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// A sweep with its trials as a table, best first; `--json` for everything.
    Get {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a sweep and its running trials.
    Cancel { id: i64 },
}

pub(crate) fn sweeps(conn: &Connection, command: SweepsCommand) -> anyhow::Result<()> {
    let client = Client::new(conn)?;
    match command {
        SweepsCommand::Create { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            print(&client.call(Method::POST, "/sweeps", &[], Some(json!({"text": text})))?)
        }
        SweepsCommand::List { limit } => print(&client.call(Method::GET, "/sweeps", &[("max_results", limit.to_string())], None)?),
        SweepsCommand::Get { id, json } => {
            let answer = client.call(Method::GET, &format!("/sweeps/{id}"), &[], None)?;
            if json {
                return print(&answer);
            }
            print_sweep(&answer["sweep"]);
            Ok(())
        }
        SweepsCommand::Cancel { id } => print(&client.call(Method::POST, &format!("/sweeps/{id}/cancel"), &[], None)?),
    }
}

/// The sweep's state, then one line per trial, the best objective first (trials without one last).
fn print_sweep(sweep: &Value) {
    let metric = sweep["objective"]["metric"].as_str().unwrap_or("objective");
    let maximize = sweep["objective"]["direction"] == "maximize";
    println!(
        "sweep {} {} ({}): {} of {} trials; best trial {}",
        sweep["id"],
        sweep["name"].as_str().unwrap_or_default(),
        sweep["state"].as_str().unwrap_or_default(),
        sweep["trials"].as_array().map_or(0, Vec::len),
        sweep["budget"],
        sweep["best_trial"],
    );
    let mut trials = sweep["trials"].as_array().cloned().unwrap_or_default();
    trials.sort_by(|a, b| {
        let (x, y) = (a["objective"].as_f64(), b["objective"].as_f64());
        match (x, y) {
            (Some(x), Some(y)) if maximize => y.total_cmp(&x),
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
    });
    println!("{:>5}  {:<10} {:>14} {:>6}  {:>6}  params", "trial", "state", metric, "step", "job");
    for t in trials {
        let params: Vec<String> = t["params"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect())
            .unwrap_or_default();
        let objective = t["objective"].as_f64().map_or("-".to_owned(), |v| format!("{v:.6}"));
        println!(
            "{:>5}  {:<10} {:>14} {:>6}  {:>6}  {}",
            t["index"],
            t["state"].as_str().unwrap_or_default(),
            objective,
            t["step"].as_i64().map_or("-".to_owned(), |s| s.to_string()),
            t["job_id"],
            params.join(" ")
        );
    }
}
