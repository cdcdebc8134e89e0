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

/// Serving's `FeatureLookup` on this server: the feature store's online read, in-process.
pub(crate) struct FeatureStoreLookup(pub(crate) Arc<plinth_features::FeatureService>);

fn scalar(v: plinth_features::online::FeatureValue) -> plinth_serving::Scalar {
    use plinth_features::online::FeatureValue as F;
    use plinth_serving::Scalar as S;
    match v {
        F::Null => S::Null,
        F::Int32(i) => S::Int(i.into()),
        F::Int64(i) | F::Timestamp(i) => S::Int(i),
        F::Float32(f) => S::Float(f.into()),
        F::Float64(f) => S::Float(f),
        F::String(s) => S::Text(s),
        F::Bool(b) => S::Bool(b),
        F::Bytes(b) => S::Bytes(b),
    }
}

#[async_trait]
impl plinth_serving::FeatureLookup for FeatureStoreLookup {
    async fn shape(&self, service: &str) -> Result<plinth_serving::ServiceShape, SourceError> {
        let snap = self.0.snapshot().await.map_err(source_error)?;
        let pairs = self.0.resolve(&snap, &[], Some(service)).map_err(source_error)?;
        let mut join_keys: Vec<(String, plinth_serving::DataType)> = Vec::new();
        for (view, _) in &pairs {
            let spec = snap.repo.view(view).ok_or_else(|| SourceError {
                code: plinth_core::ErrorCode::ResourceDoesNotExist,
                message: format!("feature view '{view}' of feature service '{service}' is not defined"),
            })?;
            for key in snap.repo.join_keys(spec) {
                use plinth_features::types::ValueType as V;
                use plinth_serving::DataType as D;
                let datatype = match key.value_type {
                    V::Int32 => D::I32,
                    V::Int64 | V::Timestamp => D::I64,
                    V::Float32 => D::F32,
                    V::Float64 => D::F64,
                    V::Bool => D::Bool,
                    V::String | V::Bytes => D::Bytes,
                };
                if !join_keys.iter().any(|(name, _)| *name == key.name) {
                    join_keys.push((key.name, datatype));
                }
            }
        }
        Ok(plinth_serving::ServiceShape { join_keys, features: pairs.into_iter().map(|(_, feature)| feature).collect() })
    }

    async fn lookup(
        &self,
        service: &str,
        entities: &[(String, Vec<plinth_serving::Scalar>)],
    ) -> Result<Vec<plinth_serving::FeatureColumn>, SourceError> {
        use plinth_features::online::FeatureValue as F;
        use plinth_serving::Scalar as S;
        let columns: Vec<(String, Vec<F>)> = entities
            .iter()
            .map(|(name, values)| {
                let values = values
                    .iter()
                    .map(|v| match v {
                        S::Null => F::Null,
                        S::Bool(b) => F::Bool(*b),
                        S::Int(i) => F::Int64(*i),
                        S::Float(f) => F::Float64(*f),
                        S::Text(t) => F::String(t.clone()),
                        S::Bytes(b) => F::Bytes(b.clone()),
                    })
                    .collect();
                (name.clone(), values)
            })
            .collect();
        let read = self.0.online_features(&[], Some(service), &columns, false).await.map_err(source_error)?;
        // The entity columns come first, as given; then the service's features, in its order.
        Ok(read
            .into_iter()
            .skip(columns.len())
            .map(|c| plinth_serving::FeatureColumn {
                name: c.name,
                values: c.values.into_iter().map(scalar).collect(),
                statuses: c.statuses.into_iter().map(plinth_features::FieldStatus::as_str).collect(),
            })
            .collect())
    }
}
