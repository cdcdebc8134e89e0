//! Reading a job's output as it grows: chunks from a byte offset, and with `follow`, more as the
//! attempt writes them until it ended and everything was read. Memory stays bounded by one chunk
//! whatever the job prints.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use plinth_core::jobs::JobState;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::service::JobService;

/// The largest chunk read at once.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// How often a follower looks for more output.
const POLL: Duration = Duration::from_millis(100);

struct Follow {
    service: Arc<JobService>,
    job_id: i64,
    attempt: u32,
    path: PathBuf,
    offset: u64,
    follow: bool,
    file: Option<tokio::fs::File>,
    /// Set once the attempt is known to have ended: what is left is read, then the stream ends.
    over: bool,
}

impl Follow {
    async fn attempt_over(&self) -> bool {
        match self.service.get(self.job_id).await {
            Ok(view) => view.job.attempt != self.attempt || view.job.state.is_terminal() || view.job.state == JobState::Queued,
            Err(_) => true,
        }
    }

    async fn next_chunk(&mut self) -> Option<std::io::Result<Vec<u8>>> {
        loop {
            if self.file.is_none() {
                match tokio::fs::File::open(&self.path).await {
                    Ok(mut file) => {
                        if let Err(e) = file.seek(std::io::SeekFrom::Start(self.offset)).await {
                            return Some(Err(e));
                        }
                        self.file = Some(file);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Some(Err(e)),
                }
            }
            if let Some(file) = &mut self.file {
                let mut buf = vec![0u8; CHUNK_BYTES];
                match file.read(&mut buf).await {
                    Ok(0) => {}
                    Ok(n) => {
                        buf.truncate(n);
                        self.offset += n as u64;
                        return Some(Ok(buf));
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
            if !self.follow || self.over {
                return None;
            }
            // Nothing new: the attempt may have ended; one more read then picks up its last lines.
            if self.attempt_over().await {
                self.over = true;
                continue;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The output of `job_id`'s attempt `attempt` from byte `offset`.
pub fn stream(
    service: Arc<JobService>,
    job_id: i64,
    attempt: u32,
    path: PathBuf,
    offset: u64,
    follow: bool,
) -> impl Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    let state = Follow { service, job_id, attempt, path, offset, follow, file: None, over: false };
    futures::stream::unfold(state, |mut state| async move {
        let chunk = state.next_chunk().await?;
        Some((chunk, state))
    })
}
