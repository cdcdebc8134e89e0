//! `LocalBlobStore`: artifacts as files under a root directory, laid out as MLflow lays them out.
//!
//! Writes go to a staging directory inside the root (`.plinth-staging`, owner-only, never
//! addressable or listed) and are renamed into place once complete and fsynced, with the
//! directories along the way fsynced too. Multipart uploads keep their parts in staging until
//! `complete_multipart` joins them. Leftovers of a crash are swept on start.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::path::RESERVED_ROOT_NAME;
use crate::{ArtifactPath, BlobStore, ByteStream, CompletedPart, Entry, Error, Object, Result};

/// Read buffer for downloads.
const READ_CHUNK_BYTES: usize = 256 * 1024;
/// Multipart uploads untouched for this long are removed on start.
const ABANDONED_UPLOAD_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
    staging: PathBuf,
}

impl LocalBlobStore {
    /// Creates `root` and its staging directory if missing, and sweeps what a crash left in staging.
    pub fn new(root: impl Into<PathBuf>) -> Result<LocalBlobStore> {
        let root = root.into();
        let staging = root.join(RESERVED_ROOT_NAME);
        std::fs::create_dir_all(staging.join("uploads")).map_err(Error::Io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700)).map_err(Error::Io)?;
        }
        let store = LocalBlobStore { root, staging };
        store.sweep_staging();
        Ok(store)
    }

    /// Removes unfinished single uploads (none can be in flight before the server starts) and
    /// multipart uploads abandoned for a week.
    fn sweep_staging(&self) {
        let Ok(entries) = std::fs::read_dir(&self.staging) else { return };
        for it in entries.flatten() {
            if it.file_name().to_string_lossy().starts_with("put-") {
                let _ = std::fs::remove_file(it.path());
            }
        }
        let Ok(uploads) = std::fs::read_dir(self.staging.join("uploads")) else { return };
        for it in uploads.flatten() {
            let old = it
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > ABANDONED_UPLOAD_SECS);
            if old {
                let _ = std::fs::remove_dir_all(it.path());
            }
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file_path(&self, path: &ArtifactPath) -> PathBuf {
        if path.is_root() { self.root.clone() } else { self.root.join(path.as_str()) }
    }

    fn upload_dir(&self, upload_id: &str) -> Result<PathBuf> {
        if upload_id.is_empty() || !upload_id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::UploadNotFound { upload_id: upload_id.to_owned() });
        }
        Ok(self.staging.join("uploads").join(upload_id))
    }

    fn temp_file(&self) -> PathBuf {
        self.staging.join(format!("put-{}", uuid::Uuid::new_v4().simple()))
    }

    /// Moves a finished staging file to its place, creating parent directories, and fsyncs every
    /// directory whose entries changed, so an acknowledged upload survives a power loss too.
    async fn publish(&self, temp: &Path, path: &ArtifactPath) -> Result<()> {
        let target = self.file_path(path);
        if path.is_root() {
            return Err(Error::InvalidPath);
        }
        let parent = target.parent().unwrap_or(&self.root).to_path_buf();
        // Directories about to be created, deepest last, and the existing one they hang from.
        let mut created = Vec::new();
        let mut existing = parent.clone();
        while tokio::fs::metadata(&existing).await.is_err() && existing != self.root {
            created.push(existing.clone());
            existing = existing.parent().unwrap_or(&self.root).to_path_buf();
        }
        tokio::fs::create_dir_all(&parent).await.map_err(|e| io_error(e, path))?;
        if tokio::fs::metadata(&target).await.is_ok_and(|m| m.is_dir()) {
            return Err(Error::IsDirectory { path: path.as_str().to_owned() });
        }
        tokio::fs::rename(temp, &target).await.map_err(|e| io_error(e, path))?;
        sync_dir(&parent).await?;
        for dir in created.iter().skip(1) {
            sync_dir(dir).await?;
        }
        if !created.is_empty() {
            sync_dir(&existing).await?;
        }
        Ok(())
    }
}

/// Flushes a directory's entries (a rename or a new child) to disk.
async fn sync_dir(dir: &Path) -> Result<()> {
    let handle = tokio::fs::File::open(dir).await.map_err(Error::Io)?;
    handle.sync_all().await.map_err(Error::Io)
}

fn io_error(e: std::io::Error, path: &ArtifactPath) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound { path: path.as_str().to_owned() },
        // A file where a directory is needed (or the reverse), or a name the file system refuses,
        // is the caller's mistake.
        std::io::ErrorKind::NotADirectory
        | std::io::ErrorKind::IsADirectory
        | std::io::ErrorKind::AlreadyExists
        | std::io::ErrorKind::InvalidFilename => Error::InvalidPath,
        _ => Error::Io(e),
    }
}

/// Streams `body` into a new file at `dest`, fsyncs it, returns the byte count.
async fn write_stream(dest: &Path, mut body: ByteStream) -> Result<u64> {
    let file = tokio::fs::File::create(dest).await.map_err(Error::Io)?;
    let mut writer = tokio::io::BufWriter::with_capacity(READ_CHUNK_BYTES, file);
    let mut n = 0u64;
    let res = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(Error::Body)?;
            n += chunk.len() as u64;
            writer.write_all(&chunk).await.map_err(Error::Io)?;
        }
        writer.flush().await.map_err(Error::Io)?;
        writer.get_ref().sync_all().await.map_err(Error::Io)?;
        Ok(n)
    }
    .await;
    if res.is_err() {
        let _ = tokio::fs::remove_file(dest).await;
    }
    res
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put(&self, path: &ArtifactPath, body: ByteStream) -> Result<u64> {
        if path.is_root() {
            return Err(Error::InvalidPath);
        }
        let temp = self.temp_file();
        let n = write_stream(&temp, body).await?;
        if let Err(e) = self.publish(&temp, path).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
        Ok(n)
    }

    async fn get(&self, path: &ArtifactPath) -> Result<Object> {
        let file_path = self.file_path(path);
        let file = tokio::fs::File::open(&file_path).await.map_err(|e| io_error(e, path))?;
        let meta = file.metadata().await.map_err(Error::Io)?;
        if meta.is_dir() {
            return Err(Error::IsDirectory { path: path.as_str().to_owned() });
        }
        let body = tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK_BYTES).boxed();
        Ok(Object { size: meta.len(), body })
    }

    async fn list(&self, path: &ArtifactPath) -> Result<Vec<Entry>> {
        let dir = self.file_path(path);
        let mut read = match tokio::fs::read_dir(&dir).await {
            Ok(read) => read,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => return Ok(Vec::new()),
            Err(e) => return Err(Error::Io(e)),
        };
        let mut entries = Vec::new();
        while let Some(it) = read.next_entry().await.map_err(Error::Io)? {
            let Ok(name) = it.file_name().into_string() else { continue };
            if path.is_root() && name == RESERVED_ROOT_NAME {
                continue;
            }
            let meta = it.metadata().await.map_err(Error::Io)?;
            let is_dir = meta.is_dir();
            entries.push(Entry { name, is_dir, size: if is_dir { None } else { Some(meta.len()) } });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    async fn delete(&self, path: &ArtifactPath) -> Result<()> {
        if path.is_root() {
            return Err(Error::InvalidPath);
        }
        let target = self.file_path(path);
        let meta = tokio::fs::metadata(&target).await.map_err(|e| io_error(e, path))?;
        if meta.is_dir() {
            tokio::fs::remove_dir_all(&target).await.map_err(Error::Io)
        } else {
            tokio::fs::remove_file(&target).await.map_err(Error::Io)
        }
    }

    async fn create_multipart(&self, path: &ArtifactPath) -> Result<String> {
        if path.is_root() {
            return Err(Error::InvalidPath);
        }
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.upload_dir(&upload_id)?;
        tokio::fs::create_dir_all(&dir).await.map_err(Error::Io)?;
        tokio::fs::write(dir.join("target"), path.as_str()).await.map_err(Error::Io)?;
        Ok(upload_id)
    }

    async fn multipart_target(&self, upload_id: &str) -> Result<ArtifactPath> {
        let dir = self.upload_dir(upload_id)?;
        let target =
            tokio::fs::read_to_string(dir.join("target")).await.map_err(|_| Error::UploadNotFound { upload_id: upload_id.to_owned() })?;
        ArtifactPath::parse(&target)
    }

    async fn put_part(&self, upload_id: &str, part_number: u32, body: ByteStream) -> Result<String> {
        let dir = self.upload_dir(upload_id)?;
        if tokio::fs::metadata(&dir).await.is_err() {
            return Err(Error::UploadNotFound { upload_id: upload_id.to_owned() });
        }
        // Each attempt writes its own file; the last to finish wins, whole.
        let temp = dir.join(format!("part-{part_number}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let hasher = std::sync::Arc::new(std::sync::Mutex::new(std::hash::DefaultHasher::new()));
        let tap = hasher.clone();
        let body: ByteStream = Box::pin(body.inspect(move |chunk| {
            if let (Ok(bytes), Ok(mut h)) = (chunk, tap.lock()) {
                std::hash::Hasher::write(&mut *h, bytes);
            }
        }));
        let n = write_stream(&temp, body).await?;
        let digest = hasher.lock().map(|h| std::hash::Hasher::finish(&*h)).unwrap_or_default();
        let etag = format!("{part_number}-{n}-{digest:016x}");
        tokio::fs::rename(&temp, dir.join(format!("part-{part_number}"))).await.map_err(Error::Io)?;
        tokio::fs::write(dir.join(format!("part-{part_number}.etag")), &etag).await.map_err(Error::Io)?;
        Ok(etag)
    }

    async fn complete_multipart(&self, upload_id: &str, path: &ArtifactPath, parts: &[CompletedPart]) -> Result<()> {
        let dir = self.upload_dir(upload_id)?;
        let target =
            tokio::fs::read_to_string(dir.join("target")).await.map_err(|_| Error::UploadNotFound { upload_id: upload_id.to_owned() })?;
        if target != path.as_str() {
            return Err(Error::InvalidPath);
        }
        let temp = self.temp_file();
        let res = async {
            let mut out = tokio::io::BufWriter::with_capacity(READ_CHUNK_BYTES, tokio::fs::File::create(&temp).await.map_err(Error::Io)?);
            let mut sorted = parts.to_vec();
            sorted.sort_by_key(|it| it.part_number);
            for part in &sorted {
                let part_path = dir.join(format!("part-{}", part.part_number));
                let stored = tokio::fs::read_to_string(dir.join(format!("part-{}.etag", part.part_number)))
                    .await
                    .map_err(|_| Error::PartMismatch { part_number: part.part_number })?;
                if part.etag != stored {
                    return Err(Error::PartMismatch { part_number: part.part_number });
                }
                let mut input = tokio::fs::File::open(&part_path).await.map_err(Error::Io)?;
                tokio::io::copy(&mut input, &mut out).await.map_err(Error::Io)?;
            }
            out.flush().await.map_err(Error::Io)?;
            out.get_ref().sync_all().await.map_err(Error::Io)?;
            self.publish(&temp, path).await
        }
        .await;
        if res.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
            return res;
        }
        let _ = tokio::fs::remove_dir_all(&dir).await;
        Ok(())
    }

    async fn abort_multipart(&self, upload_id: &str, path: &ArtifactPath) -> Result<()> {
        let dir = self.upload_dir(upload_id)?;
        let target =
            tokio::fs::read_to_string(dir.join("target")).await.map_err(|_| Error::UploadNotFound { upload_id: upload_id.to_owned() })?;
        if target != path.as_str() {
            return Err(Error::InvalidPath);
        }
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::UploadNotFound { upload_id: upload_id.to_owned() }),
            Err(e) => Err(Error::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::TryStreamExt;

    use super::*;

    fn body(chunks: &[&'static [u8]]) -> ByteStream {
        futures::stream::iter(chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect::<Vec<_>>()).boxed()
    }

    async fn read_all(store: &LocalBlobStore, path: &str) -> Vec<u8> {
        let obj = store.get(&ArtifactPath::parse(path).expect("path")).await.expect("get");
        let chunks: Vec<Bytes> = obj.body.try_collect().await.expect("read");
        chunks.concat()
    }

    #[tokio::test]
    async fn put_get_list_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobStore::new(dir.path().join("artifacts")).expect("store");
        let p = |s: &str| ArtifactPath::parse(s).expect("path");
        assert_eq!(store.put(&p("1/run/artifacts/a.txt"), body(&[b"hel", b"lo"])).await.expect("put"), 5);
        store.put(&p("1/run/artifacts/dir/b.txt"), body(&[b"b"])).await.expect("put");
        assert_eq!(read_all(&store, "1/run/artifacts/a.txt").await, b"hello");
        assert!(dir.path().join("artifacts/1/run/artifacts/a.txt").is_file(), "MLflow's on-disk layout");
        let listing = store.list(&p("1/run/artifacts")).await.expect("list");
        assert_eq!(
            listing,
            vec![Entry { name: "a.txt".into(), is_dir: false, size: Some(5) }, Entry { name: "dir".into(), is_dir: true, size: None }]
        );
        assert!(store.list(&p("1/run/artifacts/a.txt")).await.expect("list file").is_empty());
        assert!(store.list(&p("nope")).await.expect("list missing").is_empty());
        assert!(matches!(store.get(&p("nope")).await, Err(Error::NotFound { .. })));
        assert!(matches!(store.get(&p("1/run")).await, Err(Error::IsDirectory { .. })));
        assert!(matches!(store.put(&p("1/run/artifacts/a.txt/x"), body(&[b"x"])).await, Err(Error::InvalidPath)));
        store.delete(&p("1/run/artifacts/dir")).await.expect("delete dir");
        assert_eq!(store.list(&p("1/run/artifacts")).await.expect("list").len(), 1);
        let staging = dir.path().join("artifacts").join(RESERVED_ROOT_NAME);
        assert!(std::fs::read_dir(staging).expect("staging").all(|e| e.expect("entry").file_name() == "uploads"));
        assert!(store.list(&ArtifactPath::root()).await.expect("root").iter().all(|e| e.name != RESERVED_ROOT_NAME), "staging is hidden");
    }

    #[tokio::test]
    async fn failed_upload_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobStore::new(dir.path().join("a")).expect("store");
        let broken: ByteStream =
            futures::stream::iter(vec![Ok(Bytes::from_static(b"partial")), Err(std::io::Error::other("client went away"))]).boxed();
        assert!(matches!(store.put(&ArtifactPath::parse("x/y.bin").expect("path"), broken).await, Err(Error::Body(_))));
        assert!(store.list(&ArtifactPath::parse("x").expect("path")).await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn multipart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobStore::new(dir.path().join("a")).expect("store");
        let path = ArtifactPath::parse("big/file.bin").expect("path");
        let id = store.create_multipart(&path).await.expect("create");
        let e2 = store.put_part(&id, 2, body(&[b"world"])).await.expect("part");
        let e1 = store.put_part(&id, 1, body(&[b"hello "])).await.expect("part");
        let bad = [CompletedPart { part_number: 1, etag: "nope".into() }];
        assert!(matches!(store.complete_multipart(&id, &path, &bad).await, Err(Error::PartMismatch { .. })));
        let parts = [CompletedPart { part_number: 2, etag: e2 }, CompletedPart { part_number: 1, etag: e1 }];
        store.complete_multipart(&id, &path, &parts).await.expect("complete");
        assert_eq!(read_all(&store, "big/file.bin").await, b"hello world");
        assert!(matches!(store.put_part(&id, 3, body(&[b"x"])).await, Err(Error::UploadNotFound { .. })));
        assert!(matches!(store.put_part("../../etc", 1, body(&[b"x"])).await, Err(Error::UploadNotFound { .. })));
        let id = store.create_multipart(&path).await.expect("create");
        let elsewhere = ArtifactPath::parse("other/file.bin").expect("path");
        assert!(matches!(store.abort_multipart(&id, &elsewhere).await, Err(Error::InvalidPath)), "bound to its target");
        store.abort_multipart(&id, &path).await.expect("abort");
        assert!(matches!(store.abort_multipart(&id, &path).await, Err(Error::UploadNotFound { .. })));
    }
}
