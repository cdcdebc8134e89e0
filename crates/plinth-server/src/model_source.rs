//! Serving's `ModelSource` on this server: a registry reference resolved by the registry service,
//! the version's files copied from the artifact store the tracking service reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use plinth_core::HasErrorCode;
use plinth_core::serving::{ModelRef, ModelTarget};
use plinth_registry::RegistryService;
use plinth_serving::{ModelSource, ResolvedVersion, SourceError};
use plinth_tracking::TrackingService;
use tokio::io::AsyncWriteExt;

pub(crate) struct RegistrySource {
    pub(crate) registry: Arc<RegistryService>,
    pub(crate) tracking: Arc<TrackingService>,
}

fn source_error(e: impl HasErrorCode + std::fmt::Display) -> SourceError {
    SourceError { code: e.error_code(), message: e.to_string() }
}

fn io_error(what: &Path, e: std::io::Error) -> SourceError {
    SourceError { code: plinth_core::ErrorCode::InternalError, message: format!("could not write {}: {e}", what.display()) }
}

#[async_trait]
impl ModelSource for RegistrySource {
    async fn resolve(&self, model: &ModelRef) -> Result<ResolvedVersion, SourceError> {
        let version = match &model.target {
            ModelTarget::Alias(alias) => self.registry.get_version_by_alias(&model.name, alias).await,
            ModelTarget::Version(number) => self.registry.get_model_version(&model.name, &number.to_string()).await,
        }
        .map_err(source_error)?;
        let location = if version.storage_location.is_empty() { version.source } else { version.storage_location };
        Ok(ResolvedVersion { name: version.name, version: version.version, location })
    }

    async fn fetch(&self, version: &ResolvedVersion, into: &Path) -> Result<PathBuf, SourceError> {
        tokio::fs::create_dir_all(into).await.map_err(|e| io_error(into, e))?;
        let mut dirs = vec![String::new()];
        let mut files = 0usize;
        while let Some(dir) = dirs.pop() {
            let entries = self
                .tracking
                .list_artifact_uri(&version.location, (!dir.is_empty()).then_some(dir.as_str()))
                .await
                .map_err(source_error)?;
            for (path, entry) in entries {
                // Paths come from the artifact store's listing, checked by its path rules: no `..`, no absolute path.
                let target = into.join(&path);
                if entry.is_dir {
                    tokio::fs::create_dir_all(&target).await.map_err(|e| io_error(&target, e))?;
                    dirs.push(path);
                    continue;
                }
                let (_, object) = self.tracking.open_artifact_uri(&version.location, &path).await.map_err(source_error)?;
                let mut file = tokio::fs::File::create(&target).await.map_err(|e| io_error(&target, e))?;
                let mut body = object.body;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| io_error(&target, e))?;
                    file.write_all(&chunk).await.map_err(|e| io_error(&target, e))?;
                }
                file.sync_all().await.map_err(|e| io_error(&target, e))?;
                files += 1;
            }
        }
        if files == 0 {
            return Err(SourceError {
                code: plinth_core::ErrorCode::InvalidParameterValue,
                message: format!("model {} version {} has no files at {}", version.name, version.version, version.location),
            });
        }
        Ok(into.to_path_buf())
    }
}

/// Serving's `Notifier` on this server: deployment events go to the webhook outbox.
pub(crate) struct OutboxNotifier(pub(crate) plinth_registry::webhooks::Outbox);

#[async_trait]
impl plinth_serving::Notifier for OutboxNotifier {
    async fn deployment_event(&self, action: &'static str, data: serde_json::Value) {
        self.0.emit(plinth_registry::webhooks::Event::Deployment { action, data }).await;
    }
}
