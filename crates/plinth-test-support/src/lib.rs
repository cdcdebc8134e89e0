//! Test helpers: run the real `plinth` binary on port 0 and read its address from the readiness line.
//!
//! No fixed ports and no sleeps: `TestServer::start` waits (with a deadline) for the line
//! `plinth <version> listening on http://HOST:PORT` on the child's stdout.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a server may take to print its readiness line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `plinth server` child process.
pub struct TestServer {
    child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    _logs: tempfile::TempDir,
    _temp: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server on a fresh temporary data directory.
    pub fn start(bin: &Path) -> anyhow::Result<TestServer> {
        let temp = tempfile::tempdir()?;
        let mut server = TestServer::start_in(bin, temp.path(), &[])?;
        server._temp = Some(temp);
        Ok(server)
    }

    /// Starts a server on `data_dir` with extra command-line arguments.
    pub fn start_in(bin: &Path, data_dir: &Path, extra_args: &[&str]) -> anyhow::Result<TestServer> {
        // The log lives outside the data directory, so the server alone decides what to create there.
        let logs = tempfile::tempdir()?;
        let log_path = logs.path().join("server.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let mut child = Command::new(bin)
            .args(["server", "--host", "127.0.0.1", "--port", "0", "--data-dir"])
            .arg(data_dir)
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(idx) = line.find("listening on ") {
                    let _ = tx.send(line[idx + "listening on ".len()..].trim().to_owned());
                }
            }
        });
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(url) => Ok(TestServer { child, url, data_dir: data_dir.to_owned(), log_path, _logs: logs, _temp: None }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("server did not become ready; its log:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default())
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: the process gets no chance to flush or clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit (SIGKILL after `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.kill9();
                bail!("server did not stop within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Keeps the data directory after the server is dropped (for restarts on the same data).
    pub fn into_data_dir(mut self) -> Option<tempfile::TempDir> {
        self.kill9();
        self._temp.take()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: sending a signal to a child process we own; no memory is involved.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}
