//! Where deployed models come from: the `ModelSource` port. The server implements it over the
//! registry (a reference resolved to a version) and the artifact store (the version's files);
//! a serving node apart from the control plane will implement it over the control plane's API.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use plinth_core::serving::ModelRef;

/// A registry reference resolved to one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedVersion {
    pub name: String,
    pub version: i64,
    /// Where the version's files are (its storage location, or its source).
    pub location: String,
}

/// Why a model could not be resolved or fetched, with the error code of its cause.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    pub code: plinth_core::ErrorCode,
    pub message: String,
}

#[async_trait]
pub trait ModelSource: Send + Sync + 'static {
    /// The version `model` names now (the alias's holder, or the pinned version, which must exist).
    async fn resolve(&self, model: &ModelRef) -> Result<ResolvedVersion, SourceError>;
    /// Copies the version's files into the directory `into` (which does not exist yet; the
    /// implementation creates it) and answers the path to load: the directory itself.
    async fn fetch(&self, version: &ResolvedVersion, into: &Path) -> Result<PathBuf, SourceError>;
}
