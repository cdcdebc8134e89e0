//! The `DeploymentStore` port: serving deployments, their variants and the generation every change
//! bumps (what serving nodes follow).

use async_trait::async_trait;
use plinth_core::serving::{Deployment, DeploymentSpec};

use crate::Result;
use crate::audit::Record;
use crate::tracking::{PageRequest, Rows};

/// A deployment to create.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub name: String,
    pub spec: DeploymentSpec,
    pub created_by: String,
    pub now: i64,
}

#[async_trait]
pub trait DeploymentStore: Send + Sync + 'static {
    /// Creates the deployment at generation 1; a taken name is `ServingError::DeploymentExists`.
    async fn create_deployment(&self, new: &NewDeployment, record: Record<'_, Deployment>) -> Result<Deployment>;
    /// An unknown name is `ServingError::DeploymentNotFound`.
    async fn get_deployment(&self, name: &str) -> Result<Deployment>;
    /// By name.
    async fn list_deployments(&self, page: PageRequest) -> Result<Rows<Deployment>>;
    /// Replaces the spec when the stored generation is `expected_generation` (a compare-and-set:
    /// otherwise `Error::Conflict`, nothing written) and bumps the generation; answers the
    /// deployment as it now is.
    async fn update_deployment(
        &self,
        name: &str,
        expected_generation: i64,
        spec: &DeploymentSpec,
        now: i64,
        record: Record<'_, Deployment>,
    ) -> Result<Deployment>;
    /// Deletes the deployment; answers it as it was.
    async fn delete_deployment(&self, name: &str, record: Record<'_, Deployment>) -> Result<Deployment>;
    /// The deployments with a variant serving any version or alias of registered model `model`, by name.
    async fn deployments_of_model(&self, model: &str) -> Result<Vec<Deployment>>;
}

/// What the serving port can fail with, beyond the errors every port shares (`crate::Error`).
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error("Deployment '{name}' not found")]
    DeploymentNotFound { name: String },
    #[error("Deployment '{name}' already exists")]
    DeploymentExists { name: String },
}

impl plinth_core::HasErrorCode for ServingError {
    fn error_code(&self) -> plinth_core::ErrorCode {
        use plinth_core::ErrorCode;
        match self {
            ServingError::DeploymentNotFound { .. } => ErrorCode::ResourceDoesNotExist,
            ServingError::DeploymentExists { .. } => ErrorCode::ResourceAlreadyExists,
        }
    }
}
