//! Jobs' code: the submitter's code directory as a tar archive, named by its SHA-256 digest and
//! unpacked once per digest, so a job runs exactly what was submitted and the same code is stored
//! once however many jobs run it.
//!
//! Unpacking refuses anything but regular files and directories (no links, no devices) and any
//! path that is absolute or climbs out (`..`); it works in a scratch directory renamed into place
//! at the end, so a digest's directory is whole or absent.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use plinth_core::jobs::validate_code_digest;
use plinth_core::validation::InvalidParameter;

/// Most entries in one archive.
pub const MAX_ENTRIES: u64 = 200_000;

/// What an unpacked archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeInfo {
    pub digest: String,
    pub files: u64,
    pub bytes: u64,
}

/// Why an archive was refused or could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error(transparent)]
    Invalid(#[from] InvalidParameter),
    #[error("Cannot unpack the code archive: {0}")]
    Bad(String),
    #[error("Cannot store the code archive in {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl plinth_core::HasErrorCode for CodeError {
    fn error_code(&self) -> plinth_core::ErrorCode {
        match self {
            CodeError::Invalid(_) | CodeError::Bad(_) => plinth_core::ErrorCode::InvalidParameterValue,
            CodeError::Io { source, .. } if plinth_core::StorageFault::of_os_error(source).is_some() => {
                plinth_core::ErrorCode::TemporarilyUnavailable
            }
            CodeError::Io { .. } => plinth_core::ErrorCode::InternalError,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CodeError + '_ {
    move |source| CodeError::Io { path: path.display().to_string(), source }
}

/// The unpacked archives, one directory per digest.
#[derive(Debug, Clone)]
pub struct CodeStore {
    dir: PathBuf,
}

impl CodeStore {
    pub fn new(dir: PathBuf) -> CodeStore {
        CodeStore { dir }
    }

    /// Where the code of `digest` is (whether or not it was uploaded).
    pub fn dir_of(&self, digest: &str) -> Result<PathBuf, InvalidParameter> {
        validate_code_digest(digest)?;
        Ok(self.dir.join(digest.trim_start_matches("sha256:")))
    }

    pub fn has(&self, digest: &str) -> bool {
        self.dir_of(digest).is_ok_and(|d| d.is_dir())
    }

    /// Unpacks `archive` (whose digest the caller checked is `digest`) as that digest's code.
    /// Blocking: run it off the async workers.
    pub fn unpack(&self, digest: &str, archive: std::fs::File) -> Result<CodeInfo, CodeError> {
        let target = self.dir_of(digest)?;
        if target.is_dir() {
            return count(&target).map(|(files, bytes)| CodeInfo { digest: digest.to_owned(), files, bytes });
        }
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let scratch = tempfile::Builder::new().prefix(".unpack-").tempdir_in(&self.dir).map_err(io(&self.dir))?;
        let (files, bytes) = unpack_into(archive, scratch.path())?;
        let scratch = scratch.keep();
        match std::fs::rename(&scratch, &target) {
            Ok(()) => {}
            // Another upload of the same digest won the race: its copy is the same code.
            Err(_) if target.is_dir() => {
                let _ = std::fs::remove_dir_all(&scratch);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(io(&target)(e));
            }
        }
        Ok(CodeInfo { digest: digest.to_owned(), files, bytes })
    }
}

/// A path inside the archive, made safe: only normal components (`.` is skipped).
fn safe_path(raw: &Path) -> Result<PathBuf, CodeError> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return Err(CodeError::Bad(format!("'{}' is not a path inside the code directory", raw.display()))),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(CodeError::Bad("an entry has an empty path".to_owned()));
    }
    Ok(out)
}

fn unpack_into(archive: std::fs::File, into: &Path) -> Result<(u64, u64), CodeError> {
    use std::os::unix::fs::PermissionsExt;
    let mut tar = tar::Archive::new(std::io::BufReader::with_capacity(256 * 1024, archive));
    let (mut files, mut bytes, mut entries) = (0u64, 0u64, 0u64);
    for entry in tar.entries().map_err(|e| CodeError::Bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| CodeError::Bad(e.to_string()))?;
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err(CodeError::Bad(format!("more than {MAX_ENTRIES} entries")));
        }
        let raw = entry.path().map_err(|e| CodeError::Bad(e.to_string()))?.into_owned();
        let rel = safe_path(&raw)?;
        let target = into.join(&rel);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(io(&target))?;
            continue;
        }
        if !kind.is_file() {
            return Err(CodeError::Bad(format!(
                "'{}' is not a regular file or a directory (links and devices are refused)",
                raw.display()
            )));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mode = entry.header().mode().unwrap_or(0o644);
        let mut file = std::fs::File::create(&target).map_err(io(&target))?;
        let mut reader = (&mut entry).take(u64::MAX);
        bytes += std::io::copy(&mut reader, &mut file).map_err(io(&target))?;
        let executable = mode & 0o111 != 0;
        let perms = std::fs::Permissions::from_mode(if executable { 0o755 } else { 0o644 });
        std::fs::set_permissions(&target, perms).map_err(io(&target))?;
        files += 1;
    }
    Ok((files, bytes))
}

fn count(dir: &Path) -> Result<(u64, u64), CodeError> {
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io(&d))? {
            let entry = entry.map_err(io(&d))?;
            let meta = entry.metadata().map_err(io(&d))?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> std::fs::File {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        let bytes = builder.into_inner().expect("archive");
        let mut file = tempfile::tempfile().expect("tempfile");
        std::io::Write::write_all(&mut file, &bytes).expect("write");
        std::io::Seek::rewind(&mut file).expect("rewind");
        file
    }

    fn file(builder: &mut tar::Builder<Vec<u8>>, path: &str, body: &[u8], mode: u32) {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(mode);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, body).expect("append");
    }

    const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";

    #[test]
    fn files_and_directories_unpack_with_their_executable_bit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CodeStore::new(dir.path().join("code"));
        let tar = archive(|b| {
            file(b, "train.py", b"print('hi')\n", 0o644);
            file(b, "bin/run.sh", b"#!/bin/sh\n", 0o755);
        });
        let info = store.unpack(DIGEST, tar).expect("unpack");
        assert_eq!((info.files, info.bytes), (2, 22));
        let root = store.dir_of(DIGEST).expect("dir");
        assert_eq!(std::fs::read_to_string(root.join("train.py")).expect("read"), "print('hi')\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(root.join("bin/run.sh")).expect("meta").permissions().mode() & 0o777, 0o755);
        assert!(store.has(DIGEST));
        // Unpacking the same digest again keeps what is there.
        assert_eq!(store.unpack(DIGEST, archive(|_| {})).expect("again").files, 2);
    }

    #[test]
    fn links_and_escaping_paths_are_refused_and_nothing_is_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CodeStore::new(dir.path().join("code"));
        let link = archive(|b| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            b.append_link(&mut header, "etc", "/etc").expect("link");
        });
        let err = store.unpack(DIGEST, link).expect_err("a link");
        assert!(err.to_string().contains("links"), "{err}");
        // The builder refuses to write `..`, so the entry's name is set by hand.
        let climbing = archive(|b| {
            let mut header = tar::Header::new_old();
            header.as_old_mut().name[..9].copy_from_slice(b"../escape");
            header.set_size(1);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            b.append(&header, &b"x"[..]).expect("append");
        });
        let err = store.unpack(DIGEST, climbing).expect_err("climbing out");
        assert!(err.to_string().contains("not a path inside"), "{err}");
        assert!(!store.has(DIGEST));
        assert!(!dir.path().join("escape").exists());
        assert!(store.dir_of("sha256:xyz").is_err());
    }
}
