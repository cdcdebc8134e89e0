//! Model registry domain types and name rules: registered models, versions, aliases, stages,
//! promotion gates and promotion requests.

use crate::tracking::KeyValue;
use crate::validation::{InvalidParameter, check_length, is_unique_path, normalize_posix, validate_key};

/// Longest registered model name.
pub const MAX_MODEL_NAME_LENGTH: usize = 256;
/// Longest tag key on a registered model or a model version.
pub const MAX_REGISTRY_TAG_KEY_LENGTH: usize = 250;
/// Longest tag value on a registered model or a model version.
pub const MAX_REGISTRY_TAG_VALUE_LENGTH: usize = 100_000;
/// Longest alias name.
pub const MAX_ALIAS_LENGTH: usize = 255;
/// Longest model version source URI.
pub const MAX_SOURCE_LENGTH: usize = 500_000;
/// Longest description of a model or a version.
pub const MAX_DESCRIPTION_LENGTH: usize = 100_000;
/// Registered-model search: default and largest page.
pub const DEFAULT_REGISTERED_MODELS_PAGE: i64 = 100;
pub const MAX_REGISTERED_MODELS_PAGE: i64 = 1000;
/// Model-version search: default and largest page (MLflow's client asks for 10,000 by default).
pub const DEFAULT_MODEL_VERSIONS_PAGE: i64 = 10_000;
pub const MAX_MODEL_VERSIONS_PAGE: i64 = 200_000;
/// Gate limits: conditions per gate, characters per condition, required tags per gate, approvals.
pub const MAX_GATE_CONDITIONS: usize = 50;
pub const MAX_GATE_CONDITION_LENGTH: usize = 1000;
pub const MAX_GATE_REQUIRED_TAGS: usize = 50;
pub const MAX_GATE_APPROVALS: u32 = 20;
/// Longest promotion reason or review comment.
pub const MAX_COMMENT_LENGTH: usize = 5000;

/// Gate targets that name a stage start with this (`stage:production`).
pub const STAGE_TARGET_PREFIX: &str = "stage:";

/// A model version's deprecated stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    None,
    Staging,
    Production,
    Archived,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::None, Stage::Staging, Stage::Production, Stage::Archived];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::None => "None",
            Stage::Staging => "Staging",
            Stage::Production => "Production",
            Stage::Archived => "Archived",
        }
    }

    /// Case-insensitive, as MLflow's `get_canonical_stage`.
    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|it| it.as_str().eq_ignore_ascii_case(s))
    }

    /// Staging and Production, the stages `archive_existing_versions` may empty.
    pub fn is_active(self) -> bool {
        matches!(self, Stage::Staging | Stage::Production)
    }

    /// The promotion-gate target that guards moves into this stage (`stage:production`); gates on
    /// aliases are named by the alias itself, so the two never share a gate.
    pub fn gate_target(self) -> String {
        format!("{STAGE_TARGET_PREFIX}{}", self.as_str().to_ascii_lowercase())
    }

    /// The stage a gate target names (`stage:Production`, any case), if it names one.
    pub fn from_gate_target(target: &str) -> Option<Stage> {
        let rest = target.get(..STAGE_TARGET_PREFIX.len()).filter(|p| p.eq_ignore_ascii_case(STAGE_TARGET_PREFIX))?;
        Stage::parse(&target[rest.len()..])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelVersionStatus {
    PendingRegistration,
    FailedRegistration,
    Ready,
}

impl ModelVersionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelVersionStatus::PendingRegistration => "PENDING_REGISTRATION",
            ModelVersionStatus::FailedRegistration => "FAILED_REGISTRATION",
            ModelVersionStatus::Ready => "READY",
        }
    }

    pub fn parse(s: &str) -> Option<ModelVersionStatus> {
        [ModelVersionStatus::PendingRegistration, ModelVersionStatus::FailedRegistration, ModelVersionStatus::Ready]
            .into_iter()
            .find(|it| it.as_str() == s)
    }
}

/// An alias and the version it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub alias: String,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub description: Option<String>,
    pub tags: Vec<KeyValue>,
    pub aliases: Vec<Alias>,
    /// The newest live version in each stage that has one, ordered by stage.
    pub latest_versions: Vec<ModelVersion>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersion {
    pub name: String,
    pub version: i64,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub user_id: Option<String>,
    pub current_stage: Stage,
    pub description: Option<String>,
    /// The URI the client registered (`runs:/…`, `models:/m-…`, a plain artifact URI).
    pub source: String,
    /// Where the artifacts are: the source, or a logged model's artifact location.
    pub storage_location: String,
    pub run_id: Option<String>,
    pub run_link: Option<String>,
    pub model_id: Option<String>,
    pub status: ModelVersionStatus,
    pub status_message: Option<String>,
    pub tags: Vec<KeyValue>,
    pub aliases: Vec<String>,
}

/// A registered model name: non-empty, no `/` or `:`, not resolving to another path, ≤ 256 characters.
pub fn validate_model_name(field: &str, name: &str) -> Result<(), InvalidParameter> {
    if name.trim().is_empty() {
        return Err(InvalidParameter::missing(field));
    }
    if name.contains('/') || name.contains(':') {
        return Err(InvalidParameter::new(format!("Invalid model name '{name}'. Names cannot contain '/' or ':'.")));
    }
    if !is_unique_path(name) {
        return Err(InvalidParameter::invalid_value(
            field,
            name,
            &format!(
                "Names may be treated as files in certain cases, and must not resolve to other names when treated as such. This name would resolve to '{}'",
                normalize_posix(name)
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidParameter::invalid_value(field, name, "Names may not contain control characters."));
    }
    check_length("Registered model name", MAX_MODEL_NAME_LENGTH, name)
}

/// A registry tag: the run-tag key rules, MLflow's registry limits.
pub fn validate_registry_tag(key: &str, value: &str) -> Result<(), InvalidParameter> {
    if key.is_empty() {
        return Err(InvalidParameter::missing("key"));
    }
    validate_key("key", key)?;
    check_length("key", MAX_REGISTRY_TAG_KEY_LENGTH, key)?;
    check_length("value", MAX_REGISTRY_TAG_VALUE_LENGTH, value)
}

/// An alias name: `^[\w-]*$`, non-empty, ≤ 255 characters; `latest` and `v<digits>` are reserved.
pub fn validate_alias(alias: &str) -> Result<(), InvalidParameter> {
    if alias.is_empty() {
        return Err(InvalidParameter::new("Registered model alias name cannot be empty."));
    }
    if !alias.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
        return Err(InvalidParameter::new(format!(
            "Invalid alias name: '{alias}'. Names may only contain alphanumerics, underscores (_), and dashes (-)."
        )));
    }
    check_length("Registered model alias name", MAX_ALIAS_LENGTH, alias)?;
    if alias.eq_ignore_ascii_case("latest") {
        return Err(InvalidParameter::new("'latest' alias name (case insensitive) is reserved."));
    }
    let mut chars = alias.chars();
    if matches!(chars.next(), Some('v' | 'V')) && chars.clone().next().is_some() && chars.all(|c| c.is_ascii_digit()) {
        return Err(InvalidParameter::new(format!("Version alias name '{alias}' is reserved.")));
    }
    Ok(())
}

/// A version number as MLflow reads it: an integer, given as a number or a string.
pub fn parse_version(raw: &str) -> Result<i64, InvalidParameter> {
    raw.trim().parse::<i64>().map_err(|_| InvalidParameter::new(format!("Parameter 'version' must be an integer, got '{raw}'.")))
}

/// The rules an alias (or a stage, through its lowercase name) enforces before it may point at a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateSpec {
    /// An alias name as spelled (`champion`; aliases are case-sensitive), or `stage:<stage>` in lowercase (`stage:production`).
    pub target: String,
    /// Conditions in the gate grammar (`metrics.auc >= 0.85`, `metrics.auc >= current.metrics.auc`).
    pub conditions: Vec<String>,
    /// Tags the version must carry, non-empty.
    pub required_tags: Vec<String>,
    /// Approvals (by people other than the requester) needed before the move.
    pub approvals_required: u32,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub model: String,
    pub spec: GateSpec,
    pub updated_by: String,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromotionStatus {
    /// Waiting for approvals (or for a failing condition to pass).
    Pending,
    /// The alias moved.
    Applied,
    Rejected,
    Expired,
    Cancelled,
}

impl PromotionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PromotionStatus::Pending => "PENDING",
            PromotionStatus::Applied => "APPLIED",
            PromotionStatus::Rejected => "REJECTED",
            PromotionStatus::Expired => "EXPIRED",
            PromotionStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<PromotionStatus> {
        [
            PromotionStatus::Pending,
            PromotionStatus::Applied,
            PromotionStatus::Rejected,
            PromotionStatus::Expired,
            PromotionStatus::Cancelled,
        ]
        .into_iter()
        .find(|it| it.as_str().eq_ignore_ascii_case(s))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewDecision {
    Approve,
    Reject,
}

impl ReviewDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewDecision::Approve => "APPROVE",
            ReviewDecision::Reject => "REJECT",
        }
    }

    pub fn parse(s: &str) -> Option<ReviewDecision> {
        [ReviewDecision::Approve, ReviewDecision::Reject].into_iter().find(|it| it.as_str().eq_ignore_ascii_case(s))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub reviewer: String,
    pub decision: ReviewDecision,
    pub comment: Option<String>,
    pub created_at: i64,
}

/// A request to move `target` onto `version`, waiting for approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionRequest {
    pub id: i64,
    pub model: String,
    pub version: i64,
    pub target: String,
    pub requester: String,
    pub reason: Option<String>,
    pub status: PromotionStatus,
    pub created_at: i64,
    pub expires_at: i64,
    pub updated_at: i64,
    pub reviews: Vec<Review>,
}

impl PromotionRequest {
    /// Distinct approvers, the requester excluded.
    pub fn approvers(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.reviews {
            if r.decision == ReviewDecision::Approve && r.reviewer != self.requester && !out.contains(&r.reviewer.as_str()) {
                out.push(&r.reviewer);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_rules() {
        assert!(validate_alias("champion").is_ok());
        assert!(validate_alias("blue-green_2").is_ok());
        assert!(validate_alias("").is_err());
        assert!(validate_alias("Latest").is_err());
        assert!(validate_alias("v12").is_err());
        assert!(validate_alias("V3").is_err());
        assert!(validate_alias("v").is_ok());
        assert!(validate_alias("v1a").is_ok());
        assert!(validate_alias("a b").is_err());
        assert!(validate_alias(&"a".repeat(256)).is_err());
    }

    #[test]
    fn model_name_rules() {
        assert!(validate_model_name("name", "churn model").is_ok());
        assert!(validate_model_name("name", "").is_err());
        assert!(validate_model_name("name", "  ").is_err());
        assert!(validate_model_name("name", "a/b").is_err());
        assert!(validate_model_name("name", "a:b").is_err());
        assert!(validate_model_name("name", "..").is_err());
        assert!(validate_model_name("name", "a\u{0}").is_err());
        assert!(validate_model_name("name", &"m".repeat(257)).is_err());
    }

    #[test]
    fn stages_parse_case_insensitively() {
        assert_eq!(Stage::parse("production"), Some(Stage::Production));
        assert_eq!(Stage::parse("NONE"), Some(Stage::None));
        assert_eq!(Stage::parse("deleted"), None);
        assert_eq!(Stage::Production.gate_target(), "stage:production");
        assert_eq!(Stage::from_gate_target("Stage:Production"), Some(Stage::Production));
        assert_eq!(Stage::from_gate_target("production"), None);
        assert_eq!(Stage::from_gate_target("stage:live"), None);
    }
}
