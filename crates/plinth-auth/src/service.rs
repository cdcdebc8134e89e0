//! `AuthService`: who is calling (HTTP Basic with a password or a token, Bearer tokens), and the
//! administration of users, service accounts and tokens. Every sign-in failure, every token
//! created or revoked and every user change goes to the audit trail; secrets never do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use plinth_core::audit::{Actor, AuditEvent, Change, Outcome};
use plinth_core::auth::{self as a, ApiToken, PrincipalKind, Role, User};
use plinth_core::time::now_millis;
use plinth_core::validation::{InvalidParameter, check_length};
use plinth_store::audit::Record;
use plinth_store::auth::{NewToken, NewUser, UserUpdate};
use plinth_store::{AuditLog, AuthStore};

use crate::limiter::{Limiter, Limits};
use crate::{Error, Result, password, token};

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub limits: Limits,
    /// The longest lifetime a token may be given; tokens without an expiry are refused when set.
    pub max_token_ttl_secs: Option<i64>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub kind: PrincipalKind,
    pub role: Role,
    pub approver: bool,
    /// Signed in with an API token rather than a password.
    pub via_token: bool,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor::new(self.name.clone())
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// What an `Authorization` header presents.
enum Credentials {
    Bearer(String),
    Basic { user: String, secret: String },
}

/// Longest `Authorization` header read.
const MAX_HEADER: usize = 8 * 1024;
/// A successful sign-in of the same principal is recorded at most this often.
const LOGIN_AUDIT_INTERVAL: Duration = Duration::from_secs(600);

fn credentials(header: &str) -> Result<Credentials> {
    if header.len() > MAX_HEADER {
        return Err(Error::Unauthenticated);
    }
    let (scheme, rest) = header.trim().split_once(' ').ok_or(Error::Unauthenticated)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credentials::Bearer(rest.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest).map_err(|_| Error::Unauthenticated)?;
        let text = String::from_utf8(decoded).map_err(|_| Error::Unauthenticated)?;
        let (user, secret) = text.split_once(':').ok_or(Error::Unauthenticated)?;
        return Ok(Credentials::Basic { user: user.to_owned(), secret: secret.to_owned() });
    }
    Err(Error::Unauthenticated)
}

pub struct AuthService {
    store: Arc<dyn AuthStore>,
    audit: Arc<dyn AuditLog>,
    limiter: Limiter,
    config: AuthConfig,
    last_login_recorded: Mutex<HashMap<String, Instant>>,
    /// Recently verified passwords: (user, SHA-256 of the password) → (the PHC hash it matched,
    /// when). HTTP Basic sends the password with every request; without this each request would
    /// pay a full argon2id verification. An entry only counts while the stored hash is the same one
    /// (a password change invalidates it) and for `VERIFIED_TTL`.
    verified: Mutex<HashMap<(String, String), (String, Instant)>>,
    /// argon2id runs at once, at most: each takes 19 MiB and a core for tens of milliseconds, so a
    /// burst of sign-ins must queue rather than exhaust memory or the blocking pool.
    hashing: Arc<tokio::sync::Semaphore>,
    /// When this process last recorded each token's use.
    touched: Mutex<HashMap<String, Instant>>,
}

/// How long a verified password is trusted without another argon2id run.
const VERIFIED_TTL: Duration = Duration::from_secs(300);
/// Most remembered verifications.
const MAX_VERIFIED: usize = 10_000;

/// Changes to a user.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub role: Option<Role>,
    pub approver: Option<bool>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
}

impl AuthService {
    pub fn new(store: Arc<dyn AuthStore>, audit: Arc<dyn AuditLog>, config: AuthConfig) -> AuthService {
        AuthService {
            store,
            audit,
            limiter: Limiter::new(config.limits),
            config,
            last_login_recorded: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
            hashing: Arc::new(tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZero::get))),
        }
    }

    async fn record(&self, event: AuditEvent) -> Result<()> {
        plinth_store::audit::append_detached(&self.audit, event).await?;
        Ok(())
    }

    /// Who the `Authorization` header says is calling, checked. Every failure is the same
    /// `UNAUTHENTICATED`; too many failures for a user or an address are `REQUEST_LIMIT_EXCEEDED`.
    pub async fn authenticate(&self, header: Option<&str>, address: Option<IpAddr>) -> Result<Principal> {
        let Some(header) = header else { return Err(Error::Unauthenticated) };
        let creds = credentials(header);
        // The per-user limit guards passwords; a token is 256 random bits, and locking its user
        // would let anyone lock a CI account out by guessing passwords under its name.
        let claimed = match &creds {
            Ok(Credentials::Basic { user, secret }) if token::parse(secret).is_none() && a::validate_user_name(user).is_ok() => {
                Some(user.clone())
            }
            _ => None,
        };
        let Some(attempt) = self.limiter.reserve(claimed.as_deref(), address) else {
            return Err(Error::RateLimited);
        };
        let verdict = match creds {
            Err(_) => Ok(Err("malformed Authorization header")),
            Ok(Credentials::Bearer(text)) => self.by_token(None, &text).await,
            Ok(Credentials::Basic { user, secret }) if token::parse(&secret).is_some() => self.by_token(Some(&user), &secret).await,
            Ok(Credentials::Basic { user, secret }) => self.by_password(&user, &secret).await,
        };
        match verdict {
            Ok(Ok(principal)) => {
                self.limiter.succeeded(attempt);
                self.note_login(&principal, address).await?;
                Ok(principal)
            }
            Ok(Err(reason)) => {
                self.limiter.failed(attempt);
                self.refuse(claimed.as_deref(), address, reason).await?;
                Err(Error::Unauthenticated)
            }
            Err(e) => {
                self.limiter.succeeded(attempt);
                Err(e)
            }
        }
    }

    /// Runs an argon2id verification off the async workers, with at most one per core at a time.
    async fn argon2_verify(&self, secret: &str, phc: Option<&str>) -> bool {
        let Ok(_permit) = self.hashing.clone().acquire_owned().await else { return false };
        let secret = secret.to_owned();
        let phc = phc.map(str::to_owned);
        tokio::task::spawn_blocking(move || match phc {
            Some(phc) => password::verify(&secret, &phc),
            None => {
                password::verify_nothing(&secret);
                false
            }
        })
        .await
        .unwrap_or(false)
    }

    /// `Ok(Err(reason))` is a refusal; the reason goes to the audit trail, never to the caller.
    async fn by_password(&self, user: &str, secret: &str) -> Result<std::result::Result<Principal, &'static str>> {
        let record = if a::validate_user_name(user).is_ok() { self.store.get_user(user).await? } else { None };
        let Some(record) = record else {
            self.argon2_verify(secret, None).await;
            return Ok(Err("unknown user"));
        };
        let Some(hash) = record.password_hash.as_deref() else {
            self.argon2_verify(secret, None).await;
            return Ok(Err("the account has no password (a service account signs in with tokens)"));
        };
        let key = (user.to_owned(), token::hash_secret(secret));
        let remembered = {
            let cache = self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            cache.get(&key).is_some_and(|(phc, at)| phc == hash && at.elapsed() < VERIFIED_TTL)
        };
        if !remembered {
            if !self.argon2_verify(secret, Some(hash)).await {
                return Ok(Err("wrong password"));
            }
            let mut cache = self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() >= MAX_VERIFIED {
                cache.retain(|_, (_, at)| at.elapsed() < VERIFIED_TTL);
                if cache.len() >= MAX_VERIFIED {
                    cache.clear();
                }
            }
            cache.insert(key, (hash.to_owned(), Instant::now()));
        }
        if record.user.disabled {
            return Ok(Err("the account is disabled"));
        }
        Ok(Ok(principal(&record.user, false)))
    }

    async fn by_token(&self, user: Option<&str>, text: &str) -> Result<std::result::Result<Principal, &'static str>> {
        let Some((id, secret)) = token::parse(text) else { return Ok(Err("not a Plinth token")) };
        let Some(record) = self.store.get_token(id).await? else { return Ok(Err("unknown token")) };
        if !token::same_digest(&token::hash_secret(secret), &record.secret_hash) {
            return Ok(Err("wrong token secret"));
        }
        let now = now_millis();
        if !record.token.is_usable(now) {
            return Ok(Err("the token is revoked or expired"));
        }
        if user.is_some_and(|u| u != record.token.user) {
            return Ok(Err("the token belongs to another user"));
        }
        let Some(owner) = self.store.get_user(&record.token.user).await? else { return Ok(Err("the token's user is gone")) };
        if owner.user.disabled {
            return Ok(Err("the account is disabled"));
        }
        // Last use is kept to the minute: the store is only asked when this process has not
        // recorded a use of the token within the last minute.
        let due = {
            let mut touched = self.touched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let due = touched.get(id).is_none_or(|at| at.elapsed() >= Duration::from_secs(60));
            if due {
                if touched.len() >= MAX_VERIFIED {
                    touched.clear();
                }
                touched.insert(id.to_owned(), Instant::now());
            }
            due
        };
        if due {
            // A token's last use is bookkeeping, not a change anyone made: no record.
            self.store.touch_token(id, now, Record::none()).await?;
        }
        Ok(Ok(principal(&owner.user, true)))
    }

    async fn refuse(&self, user: Option<&str>, address: Option<IpAddr>, reason: &str) -> Result<()> {
        // A name that is really a token or a password typed into the wrong slot is not recorded:
        // only names that could be user names and are not token-shaped.
        let who = user.filter(|u| a::validate_user_name(u).is_ok() && !u.starts_with(token::PREFIX)).unwrap_or(Actor::ANONYMOUS);
        let mut event = AuditEvent::new(&Actor::new(who), "auth.login", "user", who).with_outcome(Outcome::Refused, reason);
        if let Some(addr) = address {
            event.changes.push(Change::set("source_address", addr.to_string()));
        }
        self.record(event).await
    }

    async fn note_login(&self, principal: &Principal, address: Option<IpAddr>) -> Result<()> {
        let due = {
            let mut seen = self.last_login_recorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let due = seen.get(&principal.name).is_none_or(|at| now.duration_since(*at) >= LOGIN_AUDIT_INTERVAL);
            if due {
                seen.insert(principal.name.clone(), now);
            }
            due
        };
        if due {
            let mut event = AuditEvent::new(&principal.actor(), "auth.login", "user", principal.name.clone());
            if let Some(addr) = address {
                event.changes.push(Change::set("source_address", addr.to_string()));
            }
            self.record(event).await?;
        }
        Ok(())
    }

    // Users.

    pub async fn create_user(
        &self,
        actor: &Actor,
        name: &str,
        kind: PrincipalKind,
        role: Role,
        approver: bool,
        password: Option<&str>,
    ) -> Result<User> {
        let event = AuditEvent::new(actor, "user.create", "user", name)
            .with_change(Change::set("kind", kind.as_str()))
            .with_change(Change::set("role", role.as_str()))
            .with_change(Change::set("approver", approver.to_string()));
        let res = async {
            a::validate_user_name(name)?;
            let password_hash = match (kind, password) {
                (PrincipalKind::User, Some(p)) => {
                    a::validate_password(p)?;
                    let p = p.to_owned();
                    Some(tokio::task::spawn_blocking(move || password::hash(&p)).await.map_err(plinth_store::Error::internal)?)
                }
                (PrincipalKind::User, None) => return Err(InvalidParameter::missing("password").into()),
                (PrincipalKind::ServiceAccount, Some(_)) => {
                    return Err(InvalidParameter::new("A service account has no password; create a token for it").into());
                }
                (PrincipalKind::ServiceAccount, None) => None,
            };
            let new = NewUser { name: name.to_owned(), kind, role, approver, password_hash, now: now_millis() };
            Ok(self.store.create_user(&new, Record::event(event.clone())).await?)
        }
        .await;
        self.finish(event, res).await
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        Ok(self.store.list_users().await?)
    }

    pub async fn get_user(&self, name: &str) -> Result<User> {
        self.store
            .get_user(name)
            .await?
            .map(|r| r.user)
            .ok_or_else(|| plinth_store::Error::Auth(plinth_store::AuthError::UserNotFound { name: name.to_owned() }).into())
    }

    pub async fn update_user(&self, actor: &Actor, name: &str, change: UserChange) -> Result<User> {
        let mut event = AuditEvent::new(actor, "user.update", "user", name);
        let res = async {
            let before = self.get_user(name).await?;
            let mut update = UserUpdate { role: change.role, approver: change.approver, disabled: change.disabled, password_hash: None };
            if let Some(role) = change.role {
                event.changes.push(Change::new("role", Some(before.role.as_str().to_owned()), Some(role.as_str().to_owned())));
            }
            if let Some(approver) = change.approver {
                event.changes.push(Change::new("approver", Some(before.approver.to_string()), Some(approver.to_string())));
            }
            if let Some(disabled) = change.disabled {
                event.changes.push(Change::new("disabled", Some(before.disabled.to_string()), Some(disabled.to_string())));
            }
            if let Some(p) = change.password {
                if before.kind == PrincipalKind::ServiceAccount {
                    return Err(InvalidParameter::new("A service account has no password; create a token for it").into());
                }
                a::validate_password(&p)?;
                update.password_hash =
                    Some(tokio::task::spawn_blocking(move || password::hash(&p)).await.map_err(plinth_store::Error::internal)?);
                event.changes.push(Change::set("password", "(changed)"));
            }
            Ok(self.store.update_user(name, &update, now_millis(), Record::event(event.clone())).await?)
        }
        .await;
        self.finish(event, res).await
    }

    /// Creates the first admin if there is no enabled admin yet; returns whether it did.
    pub async fn bootstrap_admin(&self, name: &str, password: &str) -> Result<bool> {
        let users = self.store.list_users().await?;
        if users.iter().any(|u| u.role == Role::Admin && !u.disabled) {
            return Ok(false);
        }
        self.create_user(&Actor::system(), name, PrincipalKind::User, Role::Admin, true, Some(password)).await?;
        Ok(true)
    }

    // Tokens.

    /// Returns the token and its full text, which is shown once and never stored.
    pub async fn create_token(&self, actor: &Actor, user: &str, label: &str, ttl_secs: Option<i64>) -> Result<(ApiToken, String)> {
        // A token minted for another user is impersonation, and is recorded as such.
        let action = if actor.name == user { "token.create" } else { "token.impersonate" };
        let event = AuditEvent::new(actor, action, "user", user).with_change(Change::set("token_name", label));
        let res = async {
            if label.trim().is_empty() {
                return Err(InvalidParameter::missing("name").into());
            }
            check_length("name", a::MAX_TOKEN_NAME_LENGTH, label)?;
            let ttl = match (ttl_secs, self.config.max_token_ttl_secs) {
                (Some(t), _) if t <= 0 => return Err(InvalidParameter::new("ttl_secs must be positive").into()),
                (Some(t), Some(max)) if t > max => return Err(InvalidParameter::new(format!("ttl_secs is at most {max}")).into()),
                (None, Some(max)) => Some(max),
                (t, _) => t,
            };
            let minted = token::mint();
            let now = now_millis();
            let new = NewToken {
                id: minted.id.clone(),
                user: user.to_owned(),
                name: label.to_owned(),
                secret_hash: minted.secret_hash,
                created_at: now,
                expires_at: ttl.map(|t| now.saturating_add(t.saturating_mul(1000))),
            };
            let record = Record::of(|created: &ApiToken| event.clone().with_change(Change::set("token_id", created.id.clone())));
            let created = self.store.create_token(&new, record).await?;
            Ok((created, minted.full))
        }
        .await;
        self.finish(event, res).await
    }

    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>> {
        Ok(self.store.list_tokens(user).await?)
    }

    pub async fn get_token(&self, id: &str) -> Result<ApiToken> {
        self.store
            .get_token(id)
            .await?
            .map(|r| r.token)
            .ok_or_else(|| plinth_store::Error::Auth(plinth_store::AuthError::TokenNotFound { id: id.to_owned() }).into())
    }

    pub async fn revoke_token(&self, actor: &Actor, id: &str) -> Result<ApiToken> {
        let event = AuditEvent::new(actor, "token.revoke", "token", id);
        let res = async { Ok(self.store.revoke_token(id, now_millis(), Record::event(event.clone())).await?) }.await;
        self.finish(event, res).await
    }

    /// Records a change that did not happen (its refusal or failure); a change that happened was
    /// recorded by the store in its own transaction, from the `Record` each write passes down.
    async fn finish<T>(&self, event: AuditEvent, res: Result<T>) -> Result<T> {
        plinth_store::audit::append_failure(&self.audit, event, res).await
    }

    /// Records a refused request (a permission the caller lacks).
    pub async fn record_denial(&self, principal: Option<&Principal>, method: &str, path: &str, why: &str) -> Result<()> {
        let actor = principal.map_or_else(Actor::anonymous, Principal::actor);
        let event = AuditEvent::new(&actor, "request.deny", "route", format!("{method} {path}")).with_outcome(Outcome::Refused, why);
        self.record(event).await
    }
}

fn principal(user: &User, via_token: bool) -> Principal {
    Principal { name: user.name.clone(), kind: user.kind, role: user.role, approver: user.approver, via_token }
}

/// What a principal may do on one resource: admins everything; others their grant, capped by
/// their role (a viewer never more than READ).
pub fn effective_level(principal: &Principal, granted: Option<a::Level>) -> Option<a::Level> {
    match principal.role {
        Role::Admin => Some(a::Level::Manage),
        Role::Member => granted,
        Role::Viewer => granted.map(|l| l.min(a::Level::Read)),
    }
}

impl AuthService {
    /// The principal's level on a resource.
    pub async fn level(&self, principal: &Principal, kind: a::ResourceKind, resource: &str) -> Result<Option<a::Level>> {
        if principal.is_admin() {
            return Ok(Some(a::Level::Manage));
        }
        Ok(effective_level(principal, self.store.level(&principal.name, kind, resource).await?))
    }

    /// Whether the principal has at least `needed` on the resource.
    pub async fn allows(&self, principal: &Principal, kind: a::ResourceKind, resource: &str, needed: a::Level) -> Result<bool> {
        Ok(self.level(principal, kind, resource).await?.is_some_and(|l| l >= needed))
    }

    /// The resources of `kind` among `candidates` the principal may read.
    pub async fn readable(&self, principal: &Principal, kind: a::ResourceKind) -> Result<Option<std::collections::HashSet<String>>> {
        if principal.is_admin() {
            return Ok(None);
        }
        let grants = self.store.grants_of(&principal.name).await?;
        Ok(Some(grants.into_iter().filter(|g| g.kind == kind).map(|g| g.resource).collect()))
    }

    /// The creator of a resource manages it, alone: grants left from an earlier resource of the
    /// same name go, in the same transaction.
    pub async fn grant_creator(&self, principal: &Principal, kind: a::ResourceKind, resource: &str) -> Result<()> {
        let grant = a::Grant {
            user: principal.name.clone(),
            kind,
            resource: resource.to_owned(),
            level: a::Level::Manage,
            granted_by: principal.name.clone(),
            granted_at: now_millis(),
        };
        let event = AuditEvent::new(&principal.actor(), "grant.owner", kind.as_str(), resource)
            .with_change(Change::set(format!("grants.{}", principal.name), a::Level::Manage.as_str()));
        let res = async { Ok(self.store.set_owner(&grant, Record::event(event.clone())).await?) }.await;
        self.finish(event, res).await
    }

    pub async fn put_grant(&self, actor: &Actor, user: &str, kind: a::ResourceKind, resource: &str, level: a::Level) -> Result<()> {
        let event =
            AuditEvent::new(actor, "grant.put", kind.as_str(), resource).with_change(Change::set(format!("grants.{user}"), level.as_str()));
        let grant = a::Grant {
            user: user.to_owned(),
            kind,
            resource: resource.to_owned(),
            level,
            granted_by: actor.name.clone(),
            granted_at: now_millis(),
        };
        let res = async { Ok(self.store.put_grant(&grant, Record::event(event.clone())).await?) }.await;
        self.finish(event, res).await
    }

    pub async fn delete_grant(&self, actor: &Actor, user: &str, kind: a::ResourceKind, resource: &str) -> Result<bool> {
        let event =
            AuditEvent::new(actor, "grant.delete", kind.as_str(), resource).with_change(Change::new(format!("grants.{user}"), None, None));
        let res = async { Ok(self.store.delete_grant(user, kind, resource, Record::event(event.clone())).await?) }.await;
        self.finish(event, res).await
    }

    pub async fn grants_on(&self, kind: a::ResourceKind, resource: &str) -> Result<Vec<a::Grant>> {
        Ok(self.store.grants_on(kind, resource).await?)
    }

    pub async fn grants_of(&self, user: &str) -> Result<Vec<a::Grant>> {
        Ok(self.store.grants_of(user).await?)
    }

    pub async fn rename_resource(&self, actor: &Actor, kind: a::ResourceKind, from: &str, to: &str) -> Result<()> {
        let event = AuditEvent::new(actor, "grant.rename", kind.as_str(), from).with_change(Change::new(
            "resource",
            Some(from.to_owned()),
            Some(to.to_owned()),
        ));
        let res = async { Ok(self.store.rename_grants(kind, from, to, Record::event(event.clone())).await?) }.await;
        self.finish(event, res).await
    }
}

impl AuthService {
    /// Drops every grant on a resource that no longer exists.
    pub async fn forget_resource(&self, actor: &Actor, kind: a::ResourceKind, resource: &str) -> Result<()> {
        let event = AuditEvent::new(actor, "grant.forget", kind.as_str(), resource);
        let res = async { Ok(self.store.delete_grants_on(kind, resource, Record::event(event.clone())).await.map(|_| ())?) }.await;
        self.finish(event, res).await
    }
}
