//! The `RegistryStore` port: registered models, versions, tags, aliases, stages, promotion gates
//! and promotion requests.
//!
//! Version numbers are allocated inside the creating transaction from a per-model counter that
//! only grows, so concurrent registrations get distinct, gap-free numbers and a deleted number is
//! never handed out again. Alias moves and stage transitions can carry a precondition on the
//! current holder (compare-and-set), which is how promotion gates stay correct under races.

use async_trait::async_trait;
use plinth_core::registry::{Gate, ModelVersion, PromotionRequest, PromotionStatus, RegisteredModel, Review, Stage};
use plinth_core::tracking::KeyValue;
use plinth_filter::{Clause, OrderBy};

use crate::Result;
use crate::audit::Record;
use crate::tracking::{PageRequest, Rows};

/// The tag that marks a registered model (or version) as a prompt.
pub const PROMPT_TAG: &str = "mlflow.prompt.is_prompt";

#[derive(Debug, Clone)]
pub struct NewRegisteredModel {
    pub name: String,
    pub description: Option<String>,
    pub tags: Vec<KeyValue>,
    pub now: i64,
}

#[derive(Debug, Clone)]
pub struct NewModelVersion {
    pub name: String,
    pub source: String,
    pub storage_location: String,
    pub run_id: Option<String>,
    pub run_link: Option<String>,
    pub model_id: Option<String>,
    pub description: Option<String>,
    pub user_id: Option<String>,
    pub tags: Vec<KeyValue>,
    pub now: i64,
}

#[derive(Debug, Clone)]
pub struct RegisteredModelQuery {
    pub filter: Vec<Clause>,
    /// Leave out prompts (models tagged `mlflow.prompt.is_prompt = 'true'`), MLflow's default.
    pub exclude_prompts: bool,
    /// Only these registered models (what the caller may read); `None`: no restriction.
    pub restrict_to: Option<Vec<String>>,
    pub order_by: Vec<OrderBy>,
    pub page: PageRequest,
}

#[derive(Debug, Clone)]
pub struct ModelVersionQuery {
    pub filter: Vec<Clause>,
    /// Leave out versions of prompts (any version of the name tagged `mlflow.prompt.is_prompt = 'true'`).
    pub exclude_prompts: bool,
    /// Only versions of these registered models; `None`: no restriction.
    pub restrict_to: Option<Vec<String>>,
    pub order_by: Vec<OrderBy>,
    pub page: PageRequest,
}

/// What the mover expects the alias (or the stage) to hold when the move commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No precondition: last writer wins (MLflow's behaviour).
    Anything,
    /// The current holder must be this version (`None`: the alias must be unset, the stage empty).
    Holder(Option<i64>),
}

/// Moves `alias` of model `name` onto `version`.
#[derive(Debug, Clone)]
pub struct AliasMove {
    pub name: String,
    pub alias: String,
    pub version: i64,
    pub expect: Expect,
    /// The gate the move was judged under: `Some(Some(updated_at))` that gate must be unchanged,
    /// `Some(None)` there must be no gate, `None` no check. A mismatch is `Error::Conflict`.
    pub gate_stamp: Option<Option<i64>>,
    /// A pending promotion request this move carries out: it becomes `APPLIED` in the same transaction.
    pub promotion_id: Option<i64>,
    pub now: i64,
}

/// Moves a version into `stage`.
#[derive(Debug, Clone)]
pub struct StageMove {
    pub name: String,
    pub version: i64,
    pub stage: Stage,
    /// Moves the other versions in `stage` to `Archived`.
    pub archive_existing: bool,
    /// Precondition on the newest other version in `stage`.
    pub expect: Expect,
    /// As `AliasMove::gate_stamp`, for the stage's gate (target `stage:<stage>`).
    pub gate_stamp: Option<Option<i64>>,
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageMoved {
    pub version: ModelVersion,
    pub previous_stage: Stage,
    /// Versions moved to `Archived` by `archive_existing`.
    pub archived: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct NewPromotion {
    pub model: String,
    pub version: i64,
    pub target: String,
    pub requester: String,
    pub reason: Option<String>,
    pub now: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct PromotionQuery {
    /// Only this model's requests.
    pub model: Option<String>,
    pub status: Option<PromotionStatus>,
    pub page: PageRequest,
}

#[async_trait]
pub trait RegistryStore: Send + Sync + 'static {
    async fn create_registered_model(&self, new: NewRegisteredModel, record: Record<'_, RegisteredModel>) -> Result<RegisteredModel>;
    /// With tags, aliases and the latest version per stage.
    async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel>;
    /// Renames the model and every version, alias, gate and promotion request of it.
    async fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
        now: i64,
        record: Record<'_, RegisteredModel>,
    ) -> Result<RegisteredModel>;
    async fn update_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
        now: i64,
        record: Record<'_, RegisteredModel>,
    ) -> Result<RegisteredModel>;
    /// Deletes the model with its versions, tags, aliases, gates and promotion requests.
    async fn delete_registered_model(&self, name: &str, record: Record<'_, ()>) -> Result<()>;
    async fn search_registered_models(&self, query: &RegisteredModelQuery) -> Result<Rows<RegisteredModel>>;
    async fn set_registered_model_tag(&self, name: &str, tag: &KeyValue, now: i64, record: Record<'_, ()>) -> Result<()>;
    /// Deleting a tag that does not exist is not an error (MLflow's SQL store); the model must exist.
    async fn delete_registered_model_tag(&self, name: &str, key: &str, record: Record<'_, ()>) -> Result<()>;

    /// Allocates the next number (never reused, also after deletions) and writes the version `READY`.
    async fn create_model_version(&self, new: NewModelVersion, record: Record<'_, ModelVersion>) -> Result<ModelVersion>;
    /// A live version (deleted ones are not found).
    async fn get_model_version(&self, name: &str, version: i64) -> Result<ModelVersion>;
    async fn update_model_version(
        &self,
        name: &str,
        version: i64,
        description: Option<&str>,
        now: i64,
        record: Record<'_, ModelVersion>,
    ) -> Result<ModelVersion>;
    /// Soft delete: the number stays taken, the fields are redacted, aliases pointing at it are removed.
    /// Returns the version as it was.
    async fn delete_model_version(&self, name: &str, version: i64, now: i64, record: Record<'_, ModelVersion>) -> Result<ModelVersion>;
    async fn search_model_versions(&self, query: &ModelVersionQuery) -> Result<Rows<ModelVersion>>;
    async fn set_model_version_tag(&self, name: &str, version: i64, tag: &KeyValue, now: i64, record: Record<'_, ()>) -> Result<()>;
    async fn delete_model_version_tag(&self, name: &str, version: i64, key: &str, record: Record<'_, ()>) -> Result<()>;
    async fn transition_stage(&self, change: &StageMove, record: Record<'_, StageMoved>) -> Result<StageMoved>;
    /// The newest live version other than `except` in `stage`.
    async fn stage_holder(&self, name: &str, stage: Stage, except: i64) -> Result<Option<i64>>;

    /// The version the alias points at, if it is set. The model must exist.
    async fn get_alias(&self, name: &str, alias: &str) -> Result<Option<i64>>;
    /// Returns the previous holder. A failed precondition is `Error::Conflict`.
    async fn move_alias(&self, change: &AliasMove, record: Record<'_, Option<i64>>) -> Result<Option<i64>>;
    /// Returns the previous holder.
    async fn delete_alias(&self, name: &str, alias: &str, now: i64, record: Record<'_, Option<i64>>) -> Result<Option<i64>>;

    /// Creates or replaces the gate of `gate.spec.target`; returns the previous one.
    async fn put_gate(&self, gate: &Gate, record: Record<'_, Option<Gate>>) -> Result<Option<Gate>>;
    async fn get_gate(&self, model: &str, target: &str) -> Result<Option<Gate>>;
    async fn list_gates(&self, model: &str) -> Result<Vec<Gate>>;
    async fn delete_gate(&self, model: &str, target: &str, record: Record<'_, Option<Gate>>) -> Result<Option<Gate>>;

    async fn create_promotion(&self, new: NewPromotion, record: Record<'_, PromotionRequest>) -> Result<PromotionRequest>;
    async fn get_promotion(&self, id: i64) -> Result<PromotionRequest>;
    /// Newest first.
    async fn list_promotions(&self, query: &PromotionQuery) -> Result<Rows<PromotionRequest>>;
    /// Records a review of a `PENDING` request (a reviewer's later review replaces their earlier one);
    /// a rejection also makes the request `REJECTED`, in the same transaction.
    async fn add_review(&self, id: i64, review: &Review, record: Record<'_, PromotionRequest>) -> Result<PromotionRequest>;
    /// Compare-and-set of a request's status; a request not in `from` is `Error::Conflict`.
    async fn set_promotion_status(
        &self,
        id: i64,
        from: PromotionStatus,
        to: PromotionStatus,
        now: i64,
        record: Record<'_, PromotionRequest>,
    ) -> Result<PromotionRequest>;
    /// Marks every `PENDING` request whose `expires_at` is before `now` as `EXPIRED`; returns them.
    async fn expire_promotions(&self, now: i64, record: Record<'_, Vec<PromotionRequest>>) -> Result<Vec<PromotionRequest>>;
}

/// What the registry port (registered models, versions, promotion requests) can fail with, beyond the errors every port shares (`crate::Error`).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Registered Model with name={name} not found")]
    RegisteredModelNotFound { name: String },
    #[error("Registered Model (name={name}) already exists.")]
    RegisteredModelExists { name: String },
    #[error("Model Version (name={name}, version={version}) not found")]
    ModelVersionNotFound { name: String, version: i64 },
    #[error("Promotion request {id} not found")]
    PromotionNotFound { id: i64 },
}

impl plinth_core::HasErrorCode for RegistryError {
    fn error_code(&self) -> plinth_core::ErrorCode {
        use plinth_core::ErrorCode;
        match self {
            RegistryError::RegisteredModelNotFound { .. }
            | RegistryError::ModelVersionNotFound { .. }
            | RegistryError::PromotionNotFound { .. } => ErrorCode::ResourceDoesNotExist,
            RegistryError::RegisteredModelExists { .. } => ErrorCode::ResourceAlreadyExists,
        }
    }
}
