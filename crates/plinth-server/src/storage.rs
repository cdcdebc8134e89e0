//! The storage monitor: measures the free space under the data directory and the artifact
//! destination every `server.storage_check_secs` and records it in `plinth_api::Readiness`
//! (`GET /ready`, `plinth_storage_full`). It only observes: writes that do not fit are refused
//! by the stores themselves, with `StorageFault::Full`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use plinth_api::Readiness;
use tokio_util::sync::CancellationToken;

/// Free bytes (for an unprivileged writer) of the file system holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut out = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `out` a valid place for the result; statvfs only
    // writes to it, and it is read only when the call succeeded.
    let rc = unsafe { libc::statvfs(c.as_ptr(), out.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `out`.
    let stat = unsafe { out.assume_init() };
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// One measurement: the smallest free space among `paths` (a path not there yet is skipped).
pub(crate) fn measure(readiness: &Readiness, paths: &[PathBuf], floor_bytes: u64) {
    if let Some(free) = paths.iter().filter_map(|p| free_bytes(p)).min() {
        readiness.record_free_space(free, floor_bytes);
    }
}

/// Measures every `interval` until `shutdown`.
pub(crate) async fn run(readiness: Arc<Readiness>, paths: Vec<PathBuf>, floor_bytes: u64, interval: Duration, shutdown: CancellationToken) {
    let mut was_full = readiness.storage_full();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let (r, p) = (readiness.clone(), paths.clone());
        // statvfs may block on a sick file system: never on an async worker.
        if tokio::task::spawn_blocking(move || measure(&r, &p, floor_bytes)).await.is_err() {
            continue;
        }
        let full = readiness.storage_full();
        if full && !was_full {
            tracing::warn!(
                free_bytes = readiness.free_bytes(),
                "Storage is full: writes are refused until space is freed (GET /ready is 503)."
            );
        }
        was_full = full;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_real_file_system() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(free_bytes(dir.path()).is_some_and(|b| b > 0));
        assert_eq!(free_bytes(&dir.path().join("missing")), None);
        let r = Readiness::new();
        measure(&r, &[dir.path().to_path_buf()], u64::MAX);
        assert!(r.storage_full(), "below an impossible floor");
        measure(&r, &[dir.path().to_path_buf()], 0);
        assert!(!r.storage_full());
    }
}
