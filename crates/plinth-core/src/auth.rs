//! Identities and permissions: users and service accounts, API tokens, platform roles, and
//! per-resource grants with MLflow's levels (READ < EDIT < MANAGE).

use crate::validation::InvalidParameter;

/// Longest user or service-account name.
pub const MAX_USER_NAME_LENGTH: usize = 64;
/// Shortest and longest accepted password.
pub const MIN_PASSWORD_LENGTH: usize = 12;
pub const MAX_PASSWORD_LENGTH: usize = 1024;
/// Longest token label.
pub const MAX_TOKEN_NAME_LENGTH: usize = 100;

/// A platform-level role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads what it was granted.
    Viewer,
    /// Reads and changes what it was granted or created; creates experiments and models.
    Member,
    /// Everything, including users, tokens and grants.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Viewer, Role::Member, Role::Admin].into_iter().find(|it| it.as_str().eq_ignore_ascii_case(s))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// A person: signs in with a password or a token.
    User,
    /// A machine identity: tokens only, never a password.
    ServiceAccount,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::ServiceAccount => "service_account",
        }
    }

    pub fn parse(s: &str) -> Option<PrincipalKind> {
        [PrincipalKind::User, PrincipalKind::ServiceAccount].into_iter().find(|it| it.as_str().eq_ignore_ascii_case(s))
    }
}

/// A user or service account, without secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub kind: PrincipalKind,
    pub role: Role,
    /// May approve promotion requests (the approver role of promotion gates).
    pub approver: bool,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An API token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// The public part of the token (`plt_<id>_<secret>`), used to find it.
    pub id: String,
    pub user: String,
    pub name: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

impl ApiToken {
    pub fn is_usable(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| now < at)
    }
}

/// A permission level on one resource, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Read,
    Edit,
    Manage,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "READ",
            Level::Edit => "EDIT",
            Level::Manage => "MANAGE",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        [Level::Read, Level::Edit, Level::Manage].into_iter().find(|it| it.as_str().eq_ignore_ascii_case(s))
    }
}

/// What a grant is on. The list grows with feature projects, deployments and job queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Experiment,
    RegisteredModel,
    /// A serving deployment: READ lets a caller infer and read its metadata (nothing of the registry).
    Deployment,
    /// A local job queue: READ shows its jobs, EDIT lets a caller submit to it, MANAGE cancel anyone's job in it.
    Queue,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Experiment => "experiment",
            ResourceKind::RegisteredModel => "registered_model",
            ResourceKind::Deployment => "deployment",
            ResourceKind::Queue => "queue",
        }
    }

    pub fn parse(s: &str) -> Option<ResourceKind> {
        [ResourceKind::Experiment, ResourceKind::RegisteredModel, ResourceKind::Deployment, ResourceKind::Queue]
            .into_iter()
            .find(|it| it.as_str().eq_ignore_ascii_case(s))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user: String,
    pub kind: ResourceKind,
    /// An experiment id or a registered model name.
    pub resource: String,
    pub level: Level,
    pub granted_by: String,
    pub granted_at: i64,
}

/// `^[A-Za-z0-9][A-Za-z0-9._@-]*$`, at most 64 characters; `anonymous` and `system` are reserved.
pub fn validate_user_name(name: &str) -> Result<(), InvalidParameter> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))
        && name.len() <= MAX_USER_NAME_LENGTH;
    if !ok {
        return Err(InvalidParameter::new(format!(
            "Invalid user name '{}': use 1 to {MAX_USER_NAME_LENGTH} letters, digits, '.', '_', '@' or '-', starting with a letter or digit",
            name.chars().take(80).collect::<String>()
        )));
    }
    if name.eq_ignore_ascii_case("anonymous") || name.eq_ignore_ascii_case("system") {
        return Err(InvalidParameter::new(format!("The user name '{name}' is reserved")));
    }
    Ok(())
}

/// At least 12 and at most 1024 characters.
pub fn validate_password(password: &str) -> Result<(), InvalidParameter> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LENGTH {
        return Err(InvalidParameter::new(format!("A password needs at least {MIN_PASSWORD_LENGTH} characters")));
    }
    if n > MAX_PASSWORD_LENGTH {
        return Err(InvalidParameter::new(format!("A password has at most {MAX_PASSWORD_LENGTH} characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ordering() {
        assert!(validate_user_name("alice").is_ok());
        assert!(validate_user_name("ci-bot@team.example").is_ok());
        assert!(validate_user_name("").is_err());
        assert!(validate_user_name("-x").is_err());
        assert!(validate_user_name("a b").is_err());
        assert!(validate_user_name("Anonymous").is_err());
        assert!(validate_user_name(&"a".repeat(65)).is_err());
        assert!(Level::Read < Level::Edit && Level::Edit < Level::Manage);
        assert!(Role::Viewer < Role::Member && Role::Member < Role::Admin);
        assert_eq!(Level::parse("manage"), Some(Level::Manage));
        assert!(validate_password("short").is_err());
        assert!(validate_password("correct horse battery").is_ok());
    }
}
