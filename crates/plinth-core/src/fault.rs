//! Faults of the storage the server writes to, as states a request can be told about.
//!
//! `StorageFault` is what every storage adapter puts in an error's source chain when the file
//! system or database refused a write for a reason that is the machine's, not the request's: no
//! space left (`ENOSPC`, `EDQUOT`, SQLite's `SQLITE_FULL`, PostgreSQL's `53100`), or storage that
//! cannot be written (`EROFS`, `EACCES`, `EPERM`, SQLite's `SQLITE_READONLY`). Operating-system
//! errors are recognised in the chain as they are. The HTTP layer finds either there and answers
//! `TEMPORARILY_UNAVAILABLE` (503) with the fault's message instead of an internal error: nothing
//! was written, and writes resume by themselves once the cause is gone.

use std::fmt;

use crate::{ErrorCode, HasErrorCode};

/// A write refused because of the server's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFault {
    /// Out of space (or quota).
    Full,
    /// Read-only, or not writable by the server's user.
    Unwritable,
}

impl StorageFault {
    /// What a client is told.
    pub fn message(self) -> &'static str {
        match self {
            StorageFault::Full => {
                "The server is out of disk space, so nothing was written. Reads still work; writes resume by themselves once space is freed on the server's storage (see docs/operations.md)."
            }
            StorageFault::Unwritable => {
                "The server cannot write to its storage (read-only or not permitted), so nothing was written. Reads still work; writes resume by themselves once the storage is writable again (see docs/operations.md)."
            }
        }
    }

    /// The fault an operating-system error is, if any.
    pub fn of_os_error(e: &std::io::Error) -> Option<StorageFault> {
        use std::io::ErrorKind;
        match (e.kind(), e.raw_os_error()) {
            (ErrorKind::StorageFull | ErrorKind::QuotaExceeded, _) | (_, Some(28 | 122)) => Some(StorageFault::Full),
            (ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied, _) | (_, Some(1 | 13 | 30)) => Some(StorageFault::Unwritable),
            _ => None,
        }
    }

    /// The first storage fault in `err`'s chain: a `StorageFault` itself, or an I/O error that is one.
    pub fn in_chain(err: &(dyn std::error::Error + 'static)) -> Option<StorageFault> {
        let mut current = Some(err);
        while let Some(e) = current {
            if let Some(fault) = e.downcast_ref::<StorageFault>() {
                return Some(*fault);
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if let Some(fault) = StorageFault::of_os_error(io) {
                    return Some(fault);
                }
                // An I/O error wrapping another error reports that error's source, not the error
                // itself: look at the wrapped one too.
                if let Some(fault) = io.get_ref().and_then(|inner| StorageFault::in_chain(inner)) {
                    return Some(fault);
                }
            }
            current = e.source();
        }
        None
    }
}

impl fmt::Display for StorageFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageFault::Full => "no space left on the server's storage",
            StorageFault::Unwritable => "the server's storage cannot be written",
        })
    }
}

impl std::error::Error for StorageFault {}

impl HasErrorCode for StorageFault {
    fn error_code(&self) -> ErrorCode {
        ErrorCode::TemporarilyUnavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_in_chains() {
        for (errno, want) in
            [(28, Some(StorageFault::Full)), (30, Some(StorageFault::Unwritable)), (13, Some(StorageFault::Unwritable)), (2, None)]
        {
            assert_eq!(StorageFault::of_os_error(&std::io::Error::from_raw_os_error(errno)), want, "errno {errno}");
        }
        assert_eq!(StorageFault::in_chain(&StorageFault::Full), Some(StorageFault::Full));
        assert_eq!(StorageFault::in_chain(&std::io::Error::other(StorageFault::Unwritable)), Some(StorageFault::Unwritable));
        assert_eq!(StorageFault::in_chain(&std::io::Error::other("connection reset")), None);
    }
}
