//! Faults of the machine the server runs on, as states a request can be told about.
//!
//! `DiskFull` is the marker every storage adapter puts in an error's source chain when the file
//! system refused a write for lack of space (`ENOSPC`, `EDQUOT`, SQLite's `SQLITE_FULL`,
//! PostgreSQL's `53100`). The HTTP layer finds it there and answers `TEMPORARILY_UNAVAILABLE`
//! (503) with `DiskFull`'s message instead of an internal error: nothing was written, and writes
//! resume by themselves once space is freed.

use std::fmt;

use crate::{ErrorCode, HasErrorCode};

/// A write refused because the server's storage is out of space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskFull;

impl DiskFull {
    /// What a client is told.
    pub const MESSAGE: &'static str = "The server is out of disk space, so nothing was written. Reads still work; writes resume by themselves once space is freed on the server's storage (see docs/operations.md).";

    /// Whether an operating-system error is a full disk or an exhausted quota.
    pub fn is_os_error(e: &std::io::Error) -> bool {
        // ENOSPC and EDQUOT on Linux; StorageFull covers the platforms std maps.
        e.kind() == std::io::ErrorKind::StorageFull || matches!(e.raw_os_error(), Some(28 | 122))
    }

    /// Whether `err` or anything in its source chain is a `DiskFull`.
    pub fn in_chain(err: &(dyn std::error::Error + 'static)) -> bool {
        let mut current = Some(err);
        while let Some(e) = current {
            if e.is::<DiskFull>() {
                return true;
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if DiskFull::is_os_error(io) {
                    return true;
                }
                // An I/O error wrapping another error reports that error's source, not the error
                // itself: look at the wrapped one too.
                if let Some(inner) = io.get_ref()
                    && DiskFull::in_chain(inner)
                {
                    return true;
                }
            }
            current = e.source();
        }
        false
    }
}

impl fmt::Display for DiskFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no space left on the server's storage")
    }
}

impl std::error::Error for DiskFull {}

impl HasErrorCode for DiskFull {
    fn error_code(&self) -> ErrorCode {
        ErrorCode::TemporarilyUnavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_in_chains() {
        let enospc = std::io::Error::from_raw_os_error(28);
        assert!(DiskFull::is_os_error(&enospc));
        assert!(!DiskFull::is_os_error(&std::io::Error::from_raw_os_error(13)));
        assert!(DiskFull::in_chain(&DiskFull));
        let wrapped = std::io::Error::other(DiskFull);
        assert!(DiskFull::in_chain(&wrapped));
        assert!(!DiskFull::in_chain(&std::io::Error::other("permission denied")));
    }
}
