//! `AuthStore` on SQL: users and service accounts, API tokens (hashed), per-resource grants.
//!
//! Locking: a user update that could take away an enabled admin (a demotion, a disable) first
//! locks every enabled admin's row, in name order (`FOR UPDATE` on PostgreSQL), then the user's
//! row, and counts the admins that would remain inside that transaction: two concurrent demotions
//! of the last two admins are judged one after the other, and the second is refused. Other user
//! updates lock the user's row only. On SQLite the single writer connection serializes every write.

use async_trait::async_trait;
use plinth_core::auth::{ApiToken, Grant, Level, PrincipalKind, ResourceKind, Role, User};
use plinth_store::audit::Record;
use plinth_store::auth::{NewToken, NewUser, TokenRecord, UserRecord, UserUpdate};
use plinth_store::{AuthStore, Error, Result};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use crate::SqlStore;
use crate::rows::{corrupt, flag, get_flag, get_i64, get_opt_i64, get_opt_str, get_str};
use crate::sql::{Tx, TxError, is_unique_violation, sql_error, write_tx};

const USER_COLUMNS: &str = "name, kind, role, approver, disabled, password_hash, created_at, updated_at";
const TOKEN_COLUMNS: &str = "id, user_name, name, secret_hash, created_at, expires_at, revoked_at, last_used_at";
const GRANT_COLUMNS: &str = "user_name, kind, resource, level, granted_by, granted_at";

/// `touch_token` writes when the recorded use is at least this old (milliseconds).
const TOUCH_INTERVAL_MS: i64 = 60_000;

fn user_from_row(row: &AnyRow) -> Result<UserRecord, sqlx::Error> {
    let kind = get_str(row, "kind")?;
    let role = get_str(row, "role")?;
    Ok(UserRecord {
        user: User {
            name: get_str(row, "name")?,
            kind: PrincipalKind::parse(&kind).ok_or_else(|| corrupt("principal kind", &kind))?,
            role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
            approver: get_flag(row, "approver")?,
            disabled: get_flag(row, "disabled")?,
            created_at: get_i64(row, "created_at")?,
            updated_at: get_i64(row, "updated_at")?,
        },
        password_hash: get_opt_str(row, "password_hash")?,
    })
}

fn token_from_row(row: &AnyRow) -> Result<TokenRecord, sqlx::Error> {
    Ok(TokenRecord {
        token: ApiToken {
            id: get_str(row, "id")?,
            user: get_str(row, "user_name")?,
            name: get_str(row, "name")?,
            created_at: get_i64(row, "created_at")?,
            expires_at: get_opt_i64(row, "expires_at")?,
            revoked_at: get_opt_i64(row, "revoked_at")?,
            last_used_at: get_opt_i64(row, "last_used_at")?,
        },
        secret_hash: get_str(row, "secret_hash")?,
    })
}

fn grant_from_row(row: &AnyRow) -> Result<Grant, sqlx::Error> {
    let kind = get_str(row, "kind")?;
    let level = get_str(row, "level")?;
    Ok(Grant {
        user: get_str(row, "user_name")?,
        kind: ResourceKind::parse(&kind).ok_or_else(|| corrupt("resource kind", &kind))?,
        resource: get_str(row, "resource")?,
        level: Level::parse(&level).ok_or_else(|| corrupt("level", &level))?,
        granted_by: get_str(row, "granted_by")?,
        granted_at: get_i64(row, "granted_at")?,
    })
}

fn user_not_found(name: &str) -> Error {
    Error::Auth(plinth_store::AuthError::UserNotFound { name: name.to_owned() })
}

fn token_not_found(id: &str) -> Error {
    Error::Auth(plinth_store::AuthError::TokenNotFound { id: id.to_owned() })
}

fn is_enabled_admin(user: &User) -> bool {
    user.role == Role::Admin && !user.disabled
}

async fn load_user(conn: &mut AnyConnection, name: &str, lock: &str) -> Result<Option<UserRecord>, sqlx::Error> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1{lock}");
    let row = sqlx::query(AssertSqlSafe(sql)).bind(name.to_owned()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(user_from_row).transpose()
}

async fn load_token(conn: &mut AnyConnection, id: &str) -> Result<Option<TokenRecord>, sqlx::Error> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
    let row = sqlx::query(AssertSqlSafe(sql)).bind(id.to_owned()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(token_from_row).transpose()
}

/// Checks inside a write transaction that the user exists. The row is not locked: users are never
/// deleted through the port, and the foreign key still guards the insert that follows.
async fn require_user(tx: &mut Tx, name: &str) -> Result<(), TxError> {
    let row = sqlx::query("SELECT name FROM users WHERE name = $1").bind(name.to_owned()).fetch_optional(&mut **tx).await?;
    if row.is_some() { Ok(()) } else { Err(user_not_found(name).into()) }
}

/// A foreign-key violation as `UserNotFound` (the user vanished between check and insert), a unique
/// violation as `unique`; other errors pass through.
fn map_insert_error(e: sqlx::Error, user: &str, unique: impl FnOnce() -> Error) -> TxError {
    if let sqlx::Error::Database(db) = &e
        && db.is_foreign_key_violation()
    {
        return user_not_found(user).into();
    }
    let e = TxError::from(e);
    if is_unique_violation(&e) { unique().into() } else { e }
}

/// Creates or replaces one grant; the user must exist.
async fn upsert_grant(tx: &mut Tx, grant: &Grant) -> Result<(), TxError> {
    let sql = format!(
        "INSERT INTO grants ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_name, kind, resource) \
     DO UPDATE SET level = excluded.level, granted_by = excluded.granted_by, granted_at = excluded.granted_at"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(grant.user.clone())
        .bind(grant.kind.as_str())
        .bind(grant.resource.clone())
        .bind(grant.level.as_str())
        .bind(grant.granted_by.clone())
        .bind(grant.granted_at)
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            map_insert_error(e, &grant.user, || Error::Conflict { message: "The grant changed concurrently; retry".to_owned() })
        })?;
    Ok::<_, TxError>(())
}

#[async_trait]
impl AuthStore for SqlStore {
    async fn create_user(&self, new: &NewUser, record: Record<'_, User>) -> Result<User> {
        write_tx!(self, &record, |tx| async {
            let res = sqlx::query(
                "INSERT INTO users (name, kind, role, approver, disabled, password_hash, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 0, $5, $6, $6)",
            )
            .bind(new.name.clone())
            .bind(new.kind.as_str())
            .bind(new.role.as_str())
            .bind(flag(new.approver))
            .bind(new.password_hash.clone())
            .bind(new.now)
            .execute(&mut **tx)
            .await;
            if let Err(e) = res {
                let e = TxError::from(e);
                if is_unique_violation(&e) {
                    return Err(Error::Auth(plinth_store::AuthError::UserExists { name: new.name.clone() }).into());
                }
                return Err(e);
            }
            Ok::<_, TxError>(User {
                name: new.name.clone(),
                kind: new.kind,
                role: new.role,
                approver: new.approver,
                disabled: false,
                created_at: new.now,
                updated_at: new.now,
            })
        }
        .await)
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        let mut conn = self.read_conn().await?;
        load_user(&mut conn, name, "").await.map_err(sql_error)
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name");
        let mut conn = self.read_conn().await?;
        let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *conn).await.map_err(sql_error)?;
        rows.iter().map(|row| user_from_row(row).map(|r| r.user)).collect::<Result<Vec<_>, _>>().map_err(sql_error)
    }

    async fn update_user(&self, name: &str, update: &UserUpdate, now: i64, record: Record<'_, User>) -> Result<User> {
        // Only a demotion or a disable can take away an enabled admin.
        let may_remove_admin = update.role.is_some_and(|role| role != Role::Admin) || update.disabled == Some(true);
        write_tx!(self, &record, |tx| async {
            // The enabled admins, locked in name order before the user's row (one lock order for
            // every guarded update). On PostgreSQL a row demoted or disabled by a transaction that
            // committed while this one waited is re-checked and drops out of the result.
            let mut admins: Vec<String> = Vec::new();
            if may_remove_admin {
                let sql = format!("SELECT name FROM users WHERE role = $1 AND disabled = 0 ORDER BY name{}", self.for_update());
                for row in sqlx::query(AssertSqlSafe(sql)).bind(Role::Admin.as_str()).fetch_all(&mut **tx).await? {
                    admins.push(get_str(&row, "name")?);
                }
            }
            let Some(mut record) = load_user(tx, name, self.for_update()).await? else { return Err(user_not_found(name).into()) };
            let was_admin = is_enabled_admin(&record.user);
            if let Some(role) = update.role {
                record.user.role = role;
            }
            if let Some(approver) = update.approver {
                record.user.approver = approver;
            }
            if let Some(disabled) = update.disabled {
                record.user.disabled = disabled;
            }
            if let Some(hash) = &update.password_hash {
                record.password_hash = Some(hash.clone());
            }
            record.user.updated_at = now;
            if was_admin && !is_enabled_admin(&record.user) && !admins.iter().any(|admin| admin != name) {
                return Err(Error::Conflict {
                    message: format!(
                        "'{name}' is the last enabled admin: promote or enable another admin before demoting or disabling this one"
                    ),
                }
                .into());
            }
            sqlx::query("UPDATE users SET role = $1, approver = $2, disabled = $3, password_hash = $4, updated_at = $5 WHERE name = $6")
                .bind(record.user.role.as_str())
                .bind(flag(record.user.approver))
                .bind(flag(record.user.disabled))
                .bind(record.password_hash.clone())
                .bind(now)
                .bind(name.to_owned())
                .execute(&mut **tx)
                .await?;
            Ok::<_, TxError>(record.user)
        }
        .await)
    }

    async fn create_token(&self, new: &NewToken, record: Record<'_, ApiToken>) -> Result<ApiToken> {
        write_tx!(self, &record, |tx| async {
            require_user(tx, &new.user).await?;
            sqlx::query(
                "INSERT INTO api_tokens (id, user_name, name, secret_hash, created_at, expires_at, revoked_at, last_used_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)",
            )
            .bind(new.id.clone())
            .bind(new.user.clone())
            .bind(new.name.clone())
            .bind(new.secret_hash.clone())
            .bind(new.created_at)
            .bind(new.expires_at)
            .execute(&mut **tx)
            .await
            .map_err(|e| map_insert_error(e, &new.user, || Error::Conflict { message: format!("Token {} already exists", new.id) }))?;
            Ok::<_, TxError>(ApiToken {
                id: new.id.clone(),
                user: new.user.clone(),
                name: new.name.clone(),
                created_at: new.created_at,
                expires_at: new.expires_at,
                revoked_at: None,
                last_used_at: None,
            })
        }
        .await)
    }

    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>> {
        let mut conn = self.read_conn().await?;
        load_token(&mut conn, id).await.map_err(sql_error)
    }

    async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>> {
        let mut conn = self.read_conn().await?;
        let rows = match user {
            Some(user) => {
                let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_name = $1 ORDER BY created_at DESC, id DESC");
                sqlx::query(AssertSqlSafe(sql)).bind(user.to_owned()).fetch_all(&mut *conn).await
            }
            None => {
                let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at DESC, id DESC");
                sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *conn).await
            }
        }
        .map_err(sql_error)?;
        rows.iter().map(|row| token_from_row(row).map(|r| r.token)).collect::<Result<Vec<_>, _>>().map_err(sql_error)
    }

    async fn revoke_token(&self, id: &str, now: i64, record: Record<'_, ApiToken>) -> Result<ApiToken> {
        write_tx!(self, &record, |tx| async {
            let sql = format!("UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING {TOKEN_COLUMNS}");
            let row = sqlx::query(AssertSqlSafe(sql)).bind(now).bind(id.to_owned()).fetch_optional(&mut **tx).await?;
            let Some(row) = row else { return Err(token_not_found(id).into()) };
            Ok::<_, TxError>(token_from_row(&row)?.token)
        }
        .await)
    }

    async fn touch_token(&self, id: &str, now: i64, record: Record<'_, ()>) -> Result<()> {
        let due = now.saturating_sub(TOUCH_INTERVAL_MS);
        // Nearly every call is within the interval: a reader answers those without queueing for
        // the writer (SQLite has one). The conditional update below stays the judge.
        {
            let mut conn = self.read_conn().await?;
            let row = sqlx::query("SELECT last_used_at FROM api_tokens WHERE id = $1")
                .bind(id.to_owned())
                .fetch_optional(&mut *conn)
                .await
                .map_err(sql_error)?;
            let Some(row) = row else { return Ok(()) };
            if get_opt_i64(&row, "last_used_at").map_err(sql_error)?.is_some_and(|at| at >= due) {
                return Ok(());
            }
        }
        write_tx!(self, &record, |tx| async {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)")
                .bind(now)
                .bind(id.to_owned())
                .bind(due)
                .execute(&mut **tx)
                .await?;
            Ok::<_, TxError>(())
        }
        .await)
    }

    async fn put_grant(&self, grant: &Grant, record: Record<'_, ()>) -> Result<()> {
        write_tx!(self, &record, |tx| async {
            require_user(tx, &grant.user).await?;
            upsert_grant(tx, grant).await
        }
        .await)
    }

    async fn set_owner(&self, grant: &Grant, record: Record<'_, ()>) -> Result<()> {
        write_tx!(self, &record, |tx| async {
            require_user(tx, &grant.user).await?;
            sqlx::query("DELETE FROM grants WHERE kind = $1 AND resource = $2")
                .bind(grant.kind.as_str())
                .bind(grant.resource.clone())
                .execute(&mut **tx)
                .await?;
            upsert_grant(tx, grant).await
        }
        .await)
    }

    async fn delete_grants_on(&self, kind: ResourceKind, resource: &str, record: Record<'_, u64>) -> Result<u64> {
        write_tx!(self, &record, |tx| async {
            let res = sqlx::query("DELETE FROM grants WHERE kind = $1 AND resource = $2")
                .bind(kind.as_str())
                .bind(resource.to_owned())
                .execute(&mut **tx)
                .await?;
            Ok::<_, TxError>(res.rows_affected())
        }
        .await)
    }

    async fn delete_grant(&self, user: &str, kind: ResourceKind, resource: &str, record: Record<'_, bool>) -> Result<bool> {
        write_tx!(self, &record, |tx| async {
            let res = sqlx::query("DELETE FROM grants WHERE user_name = $1 AND kind = $2 AND resource = $3")
                .bind(user.to_owned())
                .bind(kind.as_str())
                .bind(resource.to_owned())
                .execute(&mut **tx)
                .await?;
            Ok::<_, TxError>(res.rows_affected() > 0)
        }
        .await)
    }

    async fn grants_on(&self, kind: ResourceKind, resource: &str) -> Result<Vec<Grant>> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE kind = $1 AND resource = $2 ORDER BY user_name");
        let mut conn = self.read_conn().await?;
        let rows =
            sqlx::query(AssertSqlSafe(sql)).bind(kind.as_str()).bind(resource.to_owned()).fetch_all(&mut *conn).await.map_err(sql_error)?;
        rows.iter().map(grant_from_row).collect::<Result<Vec<_>, _>>().map_err(sql_error)
    }

    async fn grants_of(&self, user: &str) -> Result<Vec<Grant>> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE user_name = $1 ORDER BY kind, resource");
        let mut conn = self.read_conn().await?;
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(user.to_owned()).fetch_all(&mut *conn).await.map_err(sql_error)?;
        rows.iter().map(grant_from_row).collect::<Result<Vec<_>, _>>().map_err(sql_error)
    }

    async fn level(&self, user: &str, kind: ResourceKind, resource: &str) -> Result<Option<Level>> {
        let mut conn = self.read_conn().await?;
        let row = sqlx::query("SELECT level FROM grants WHERE user_name = $1 AND kind = $2 AND resource = $3")
            .bind(user.to_owned())
            .bind(kind.as_str())
            .bind(resource.to_owned())
            .fetch_optional(&mut *conn)
            .await
            .map_err(sql_error)?;
        let Some(row) = row else { return Ok(None) };
        let level = get_str(&row, "level").map_err(sql_error)?;
        Level::parse(&level).map(Some).ok_or_else(|| sql_error(corrupt("level", &level)))
    }

    async fn rename_grants(&self, kind: ResourceKind, from: &str, to: &str, record: Record<'_, ()>) -> Result<()> {
        if from == to {
            return Ok(());
        }
        write_tx!(self, &record, |tx| async {
            // Grants left on `to` belong to a resource that no longer exists (a deleted model of that
            // name): the renamed resource takes the grants of `from` only, and they cannot collide.
            sqlx::query("DELETE FROM grants WHERE kind = $1 AND resource = $2")
                .bind(kind.as_str())
                .bind(to.to_owned())
                .execute(&mut **tx)
                .await?;
            sqlx::query("UPDATE grants SET resource = $1 WHERE kind = $2 AND resource = $3")
                .bind(to.to_owned())
                .bind(kind.as_str())
                .bind(from.to_owned())
                .execute(&mut **tx)
                .await?;
            Ok::<_, TxError>(())
        }
        .await)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_zero_or_one() {
        assert_eq!(super::flag(false), 0);
        assert_eq!(super::flag(true), 1);
    }
}
