//! The `AuthStore` port: users and service accounts, API tokens (hashed), per-resource grants.
//!
//! Secrets never reach this port in clear: passwords arrive as argon2id PHC strings, tokens as
//! the SHA-256 of their secret part. The store compares nothing secret itself.

use async_trait::async_trait;
use plinth_core::auth::{ApiToken, Grant, Level, PrincipalKind, ResourceKind, Role, User};

use crate::Result;
use crate::audit::Record;

#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub kind: PrincipalKind,
    pub role: Role,
    pub approver: bool,
    /// An argon2id PHC string; `None` for service accounts (tokens only).
    pub password_hash: Option<String>,
    pub now: i64,
}

/// A user with the hash its password is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub user: User,
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub role: Option<Role>,
    pub approver: Option<bool>,
    pub disabled: Option<bool>,
    /// A new argon2id PHC string.
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: String,
    pub user: String,
    pub name: String,
    /// SHA-256 of the secret part, lowercase hex.
    pub secret_hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// A token with the hash its secret is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub token: ApiToken,
    pub secret_hash: String,
}

#[async_trait]
pub trait AuthStore: Send + Sync + 'static {
    /// A taken name is `AuthError::UserExists`.
    async fn create_user(&self, new: &NewUser, record: Record<'_, User>) -> Result<User>;
    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>>;
    /// By name.
    async fn list_users(&self) -> Result<Vec<User>>;
    /// An unknown name is `AuthError::UserNotFound`. Refuses (`Error::Conflict`) to leave no enabled admin.
    async fn update_user(&self, name: &str, update: &UserUpdate, now: i64, record: Record<'_, User>) -> Result<User>;

    /// The user must exist (`AuthError::UserNotFound`).
    async fn create_token(&self, new: &NewToken, record: Record<'_, ApiToken>) -> Result<ApiToken>;
    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>>;
    /// Every token, or one user's, newest first.
    async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>>;
    /// Revoking twice keeps the first time. An unknown id is `AuthError::TokenNotFound`.
    async fn revoke_token(&self, id: &str, now: i64, record: Record<'_, ApiToken>) -> Result<ApiToken>;
    /// Records a use; writes at most once a minute per token (last-used is coarse by design).
    async fn touch_token(&self, id: &str, now: i64, record: Record<'_, ()>) -> Result<()>;

    /// Creates or replaces the grant of `grant.user` on the resource; the user must exist.
    async fn put_grant(&self, grant: &Grant, record: Record<'_, ()>) -> Result<()>;
    /// Makes `grant.user` the only grantee of the resource (its creator, with MANAGE), in one
    /// transaction: grants left over from an earlier resource of the same name go.
    async fn set_owner(&self, grant: &Grant, record: Record<'_, ()>) -> Result<()>;
    /// Deletes every grant on the resource (it was deleted); returns how many.
    async fn delete_grants_on(&self, kind: ResourceKind, resource: &str, record: Record<'_, u64>) -> Result<u64>;
    /// Returns whether there was one.
    async fn delete_grant(&self, user: &str, kind: ResourceKind, resource: &str, record: Record<'_, bool>) -> Result<bool>;
    /// Grants on one resource, by user.
    async fn grants_on(&self, kind: ResourceKind, resource: &str) -> Result<Vec<Grant>>;
    /// One user's grants, by kind and resource.
    async fn grants_of(&self, user: &str) -> Result<Vec<Grant>>;
    /// The user's level on a resource, if any grant.
    async fn level(&self, user: &str, kind: ResourceKind, resource: &str) -> Result<Option<Level>>;
    /// Renames the resource in every grant (a registered model rename).
    async fn rename_grants(&self, kind: ResourceKind, from: &str, to: &str, record: Record<'_, ()>) -> Result<()>;
}

/// What the auth port (users, tokens) can fail with, beyond the errors every port shares (`crate::Error`).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("User '{name}' already exists")]
    UserExists { name: String },
    #[error("User '{name}' not found")]
    UserNotFound { name: String },
    #[error("Token {id} not found")]
    TokenNotFound { id: String },
}

impl plinth_core::HasErrorCode for AuthError {
    fn error_code(&self) -> plinth_core::ErrorCode {
        use plinth_core::ErrorCode;
        match self {
            AuthError::UserNotFound { .. } | AuthError::TokenNotFound { .. } => ErrorCode::ResourceDoesNotExist,
            AuthError::UserExists { .. } => ErrorCode::ResourceAlreadyExists,
        }
    }
}
