//! Artifact storage: the `BlobStore` port, the local-directory adapter, and `ArtifactPath`.
//!
//! `ArtifactPath::parse` is the only way a user-supplied path becomes a storage key, so no
//! path can escape the store's root: `..` segments, absolute paths, backslashes, NUL bytes
//! and percent-encoded versions of those are refused. Bodies move as streams of `Bytes` in
//! both directions, so memory stays flat whatever the artifact's size. A write lands in a
//! staging file first and is renamed into place when complete: a reader never sees half a file.

mod error;
mod local;
mod path;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use error::{Error, Result};
pub use local::LocalBlobStore;
pub use path::{ArtifactPath, MAX_PATH_BYTES, MAX_SEGMENT_BYTES, RESERVED_ROOT_NAME};

/// A stream of body chunks.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// An entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's name within the listed directory.
    pub name: String,
    pub is_dir: bool,
    /// Size in bytes; `None` for directories.
    pub size: Option<u64>,
}

/// An object being read: its size and its bytes.
pub struct Object {
    pub size: u64,
    pub body: ByteStream,
}

/// One uploaded part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u32,
    pub etag: String,
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Writes a whole object from a stream; returns the bytes written.
    async fn put(&self, path: &ArtifactPath, body: ByteStream) -> Result<u64>;
    async fn get(&self, path: &ArtifactPath) -> Result<Object>;
    /// The immediate children of a directory, sorted by name; empty when `path` is a file or missing.
    async fn list(&self, path: &ArtifactPath) -> Result<Vec<Entry>>;
    /// Deletes a file or a whole directory tree.
    async fn delete(&self, path: &ArtifactPath) -> Result<()>;

    /// Starts a multipart upload of `path`; returns its upload id.
    async fn create_multipart(&self, path: &ArtifactPath) -> Result<String>;
    /// The path a multipart upload was started for (what a permission check of a part needs).
    async fn multipart_target(&self, upload_id: &str) -> Result<ArtifactPath>;
    /// Stores one part; returns its etag.
    async fn put_part(&self, upload_id: &str, part_number: u32, body: ByteStream) -> Result<String>;
    /// Joins the listed parts, in order, into the object.
    async fn complete_multipart(&self, upload_id: &str, path: &ArtifactPath, parts: &[CompletedPart]) -> Result<()>;
    /// Aborts an upload to `path`; an upload to another path is `InvalidPath` (an upload id does not
    /// let its holder touch uploads elsewhere).
    async fn abort_multipart(&self, upload_id: &str, path: &ArtifactPath) -> Result<()>;
}
