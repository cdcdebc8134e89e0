//! Authentication on every request when auth is on, and the routes that administer users and
//! tokens (`/api/plinth/v1/users`, `/api/plinth/v1/tokens`, `/api/plinth/v1/auth/me`).
//!
//! After authentication, `access::authorize` checks the route's declared permission; a denial is
//! `PERMISSION_DENIED` and is audited.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use plinth_auth::{Principal, UserChange};
use plinth_core::ErrorCode;
use plinth_core::auth::{PrincipalKind, Role};
use plinth_core::validation::InvalidParameter;
use serde_json::{Value, json};

use crate::access::Need as N;
use crate::fields::MlflowRequest;
use crate::identity::Caller;
use crate::routes::Permissions;
use crate::routes::Routes;
use crate::{ApiError, AppState};

type Answer = Result<Json<Value>, ApiError>;

/// What the authentication layer needs: the handlers' state and every route's permission.
#[derive(Clone)]
pub(crate) struct Guard {
    pub(crate) state: AppState,
    pub(crate) permissions: Arc<Permissions>,
}

fn unauthenticated(e: plinth_auth::Error) -> Response {
    let mut response = ApiError::from(e).into_response();
    if response.status() == axum::http::StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"plinth\", charset=\"UTF-8\""));
    }
    response
}

/// The authentication layer: on with `auth.enabled`, otherwise a pass-through.
pub(crate) async fn authenticate(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let s = &guard.state;
    let public = req
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|m| guard.permissions.need(req.method(), m.as_str()) == Some(crate::access::Need::Public));
    if !s.auth_enabled || public {
        return next.run(req).await;
    }
    let address = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let principal = match s.auth.authenticate(header.as_deref(), address).await {
        Ok(p) => p,
        Err(e) => return unauthenticated(e),
    };
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    // A POST a cross-site page can send without a preflight (no content type, or a form's) could
    // ride on credentials a browser has cached: with auth on, it is refused. JSON, Arrow IPC and
    // other typed bodies need a preflight, which this server never grants.
    if method == axum::http::Method::POST && crate::fields::is_cross_site_sendable(req.headers()) {
        return ApiError::new(
            ErrorCode::BadRequest,
            "With authentication on, a POST must declare its body's Content-Type (application/json, or the route's own type such as application/vnd.apache.arrow.stream) or carry a bearer token; form types and text/plain are refused",
        )
        .into_response();
    }
    let mut req = match crate::access::authorize(s, &guard.permissions, &principal, req).await {
        Ok(req) => req,
        Err(denial) => {
            if let Err(e) = s.auth.record_denial(Some(&principal), method.as_str(), &path, denial.message()).await {
                return ApiError::from(e).into_response();
            }
            return denial.into_response();
        }
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

pub(crate) fn routes() -> Routes {
    Routes::new()
        // Identity administration: the handlers allow admins, and users their own tokens.
        .get("/auth/me", N::SignedIn, me)
        .get("/users", N::Admin, list_users)
        .post("/users", N::Admin, create_user)
        .get("/users/{name}", N::Admin, get_user)
        .patch("/users/{name}", N::Admin, update_user)
        .get("/tokens", N::SignedIn, list_tokens)
        .post("/tokens", N::SignedIn, create_token)
        .delete("/tokens/{id}", N::SignedIn, revoke_token)
        // Grants: MANAGE on the resource (checked by the handler), or admin.
        .get("/grants", N::SignedIn, list_grants)
        .put("/grants", N::SignedIn, put_grant)
        .delete("/grants", N::SignedIn, delete_grant)
}

/// The signed-in principal; with auth off these routes do not exist for anyone.
fn principal(s: &AppState, req_principal: Option<Principal>) -> Result<Principal, ApiError> {
    if !s.auth_enabled {
        return Err(ApiError::new(ErrorCode::EndpointNotFound, "Authentication is off on this server ([auth] enabled = false)"));
    }
    req_principal.ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "Sign in first"))
}

fn require_admin(p: &Principal) -> Result<(), ApiError> {
    if p.is_admin() { Ok(()) } else { Err(ApiError::new(ErrorCode::PermissionDenied, "Only admins may manage users")) }
}

fn user_json(u: &plinth_core::auth::User) -> Value {
    json!({
        "name": u.name, "kind": u.kind.as_str(), "role": u.role.as_str(), "approver": u.approver,
        "disabled": u.disabled, "created_at": u.created_at, "updated_at": u.updated_at,
    })
}

fn token_json(t: &plinth_core::auth::ApiToken) -> Value {
    json!({
        "id": t.id, "user": t.user, "name": t.name, "created_at": t.created_at, "expires_at": t.expires_at,
        "revoked_at": t.revoked_at, "last_used_at": t.last_used_at,
    })
}

type Ext = Option<axum::Extension<Principal>>;

async fn me(State(s): State<AppState>, p: Ext) -> Answer {
    let p = principal(&s, p.map(|e| e.0))?;
    let user = s.auth.get_user(&p.name).await?;
    Ok(Json(json!({"user": user_json(&user)})))
}

async fn list_users(State(s): State<AppState>, p: Ext) -> Answer {
    require_admin(&principal(&s, p.map(|e| e.0))?)?;
    let users = s.auth.list_users().await?;
    Ok(Json(json!({"users": users.iter().map(user_json).collect::<Vec<_>>()})))
}

async fn get_user(State(s): State<AppState>, p: Ext, Path(name): Path<String>) -> Answer {
    require_admin(&principal(&s, p.map(|e| e.0))?)?;
    Ok(Json(json!({"user": user_json(&s.auth.get_user(&name).await?)})))
}

fn role(raw: Option<String>) -> Result<Option<Role>, ApiError> {
    raw.map(|r| Role::parse(&r).ok_or_else(|| InvalidParameter::invalid_value("role", &r, "Use admin, member or viewer.").into()))
        .transpose()
}

async fn create_user(State(s): State<AppState>, p: Ext, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    require_admin(&principal(&s, p.map(|e| e.0))?)?;
    let kind = match f.opt_str("kind")? {
        Some(k) => PrincipalKind::parse(&k).ok_or_else(|| InvalidParameter::invalid_value("kind", &k, "Use user or service_account."))?,
        None => PrincipalKind::User,
    };
    let role = role(f.opt_str("role")?)?.unwrap_or(Role::Member);
    let password = f.opt_str("password")?;
    let user =
        s.auth.create_user(&actor, &f.str("name")?, kind, role, f.opt_bool("approver")?.unwrap_or(false), password.as_deref()).await?;
    Ok(Json(json!({"user": user_json(&user)})))
}

async fn update_user(
    State(s): State<AppState>,
    p: Ext,
    Caller(actor): Caller,
    Path(name): Path<String>,
    MlflowRequest(f): MlflowRequest,
) -> Answer {
    require_admin(&principal(&s, p.map(|e| e.0))?)?;
    let change = UserChange {
        role: role(f.opt_str("role")?)?,
        approver: f.opt_bool("approver")?,
        disabled: f.opt_bool("disabled")?,
        password: f.opt_str("password")?,
    };
    Ok(Json(json!({"user": user_json(&s.auth.update_user(&actor, &name, change).await?)})))
}

async fn list_tokens(State(s): State<AppState>, p: Ext, MlflowRequest(f): MlflowRequest) -> Answer {
    let p = principal(&s, p.map(|e| e.0))?;
    let user = match f.opt_str("user")? {
        Some(u) if p.is_admin() => Some(u),
        Some(u) if u != p.name => return Err(ApiError::new(ErrorCode::PermissionDenied, "Only admins may list other users' tokens")),
        Some(u) => Some(u),
        None if p.is_admin() => None,
        None => Some(p.name.clone()),
    };
    let tokens = s.auth.list_tokens(user.as_deref()).await?;
    Ok(Json(json!({"tokens": tokens.iter().map(token_json).collect::<Vec<_>>()})))
}

async fn create_token(State(s): State<AppState>, p: Ext, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let p = principal(&s, p.map(|e| e.0))?;
    if p.via_token && !p.is_admin() {
        // A leaked token must not mint more: tokens are created after a password sign-in.
        return Err(ApiError::new(ErrorCode::PermissionDenied, "Sign in with a password to create tokens"));
    }
    let owner = f.opt_str("user")?.unwrap_or_else(|| p.name.clone());
    if owner != p.name && !p.is_admin() {
        return Err(ApiError::new(ErrorCode::PermissionDenied, "Only admins may create tokens for other users"));
    }
    // A token for someone else lets its holder act as them: only an admin who signed in with a
    // password mints one (never a token, which could be a leaked one), and the audit trail
    // records it as `token.impersonate`.
    if owner != p.name && p.via_token {
        return Err(ApiError::new(ErrorCode::PermissionDenied, "Sign in with a password to create tokens for other users"));
    }
    let (token, secret) = s.auth.create_token(&actor, &owner, &f.str("name")?, f.opt_i64("ttl_secs")?).await?;
    Ok(Json(json!({"token": token_json(&token), "secret": secret})))
}

async fn revoke_token(State(s): State<AppState>, p: Ext, Caller(actor): Caller, Path(id): Path<String>) -> Answer {
    let p = principal(&s, p.map(|e| e.0))?;
    let token = s.auth.get_token(&id).await?;
    if token.user != p.name && !p.is_admin() {
        return Err(ApiError::new(ErrorCode::PermissionDenied, "Only admins may revoke other users' tokens"));
    }
    Ok(Json(json!({"token": token_json(&s.auth.revoke_token(&actor, &id).await?)})))
}

/// With auth on, only approvers (and admins) may review promotion requests.
pub(crate) fn require_approver(s: &AppState, p: Option<&Principal>) -> Result<(), ApiError> {
    if !s.auth_enabled {
        return Ok(());
    }
    match p {
        Some(p) if p.approver || p.is_admin() => Ok(()),
        _ => Err(ApiError::new(ErrorCode::PermissionDenied, "Only users with the approver role may review promotion requests")),
    }
}

fn grant_json(g: &plinth_core::auth::Grant) -> Value {
    json!({"user": g.user, "kind": g.kind.as_str(), "resource": g.resource, "level": g.level.as_str(), "granted_by": g.granted_by, "granted_at": g.granted_at})
}

fn resource_kind(f: &crate::fields::Fields) -> Result<plinth_core::auth::ResourceKind, ApiError> {
    let raw = f.str("kind")?;
    plinth_core::auth::ResourceKind::parse(&raw)
        .ok_or_else(|| InvalidParameter::invalid_value("kind", &raw, "Use experiment, registered_model or deployment.").into())
}

/// Grants are managed by admins and by whoever has MANAGE on the resource.
async fn require_manage(s: &AppState, p: &Principal, kind: plinth_core::auth::ResourceKind, resource: &str) -> Result<(), ApiError> {
    if s.auth.allows(p, kind, resource, plinth_core::auth::Level::Manage).await? {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!("Permission denied: user '{}' lacks MANAGE on {} '{resource}'", p.name, kind.as_str()),
        ))
    }
}

async fn list_grants(State(s): State<AppState>, p: Ext, MlflowRequest(f): MlflowRequest) -> Answer {
    let p = principal(&s, p.map(|e| e.0))?;
    let grants = match (f.opt_str("user")?, f.has("kind")) {
        (Some(user), _) => {
            if user != p.name && !p.is_admin() {
                return Err(ApiError::new(ErrorCode::PermissionDenied, "Only admins may list other users' grants"));
            }
            s.auth.grants_of(&user).await?
        }
        (None, true) => {
            let kind = resource_kind(&f)?;
            let resource = f.str("resource")?;
            require_manage(&s, &p, kind, &resource).await?;
            s.auth.grants_on(kind, &resource).await?
        }
        (None, false) => s.auth.grants_of(&p.name).await?,
    };
    Ok(Json(json!({"grants": grants.iter().map(grant_json).collect::<Vec<_>>()})))
}

async fn put_grant(State(s): State<AppState>, p: Ext, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let p = principal(&s, p.map(|e| e.0))?;
    let kind = resource_kind(&f)?;
    let resource = f.str("resource")?;
    require_manage(&s, &p, kind, &resource).await?;
    let raw = f.str("level")?;
    let level =
        plinth_core::auth::Level::parse(&raw).ok_or_else(|| InvalidParameter::invalid_value("level", &raw, "Use READ, EDIT or MANAGE."))?;
    let user = f.str("user")?;
    // Grants are only on resources that exist (a grant on a future name would own it).
    let exists = match kind {
        plinth_core::auth::ResourceKind::Experiment => s.tracking.get_experiment(&resource).await.is_ok(),
        plinth_core::auth::ResourceKind::RegisteredModel => s.registry.get_registered_model(&resource).await.is_ok(),
        plinth_core::auth::ResourceKind::Deployment => s.serving.get(&resource).await.is_ok(),
        plinth_core::auth::ResourceKind::Queue => match &s.jobs {
            Some(jobs) => jobs.has_queue(&resource),
            None => false,
        },
    };
    if !exists {
        return Err(ApiError::new(ErrorCode::ResourceDoesNotExist, format!("No {} '{resource}'", kind.as_str())));
    }
    s.auth.put_grant(&actor, &user, kind, &resource, level).await?;
    Ok(Json(json!({})))
}

async fn delete_grant(State(s): State<AppState>, p: Ext, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let p = principal(&s, p.map(|e| e.0))?;
    let kind = resource_kind(&f)?;
    let resource = f.str("resource")?;
    require_manage(&s, &p, kind, &resource).await?;
    if !s.auth.delete_grant(&actor, &f.str("user")?, kind, &resource).await? {
        return Err(ApiError::new(ErrorCode::ResourceDoesNotExist, "No such grant"));
    }
    Ok(Json(json!({})))
}

/// With auth on, the creator of a resource manages it.
pub(crate) async fn grant_creator(
    s: &AppState,
    p: Option<&Principal>,
    kind: plinth_core::auth::ResourceKind,
    resource: &str,
) -> Result<(), ApiError> {
    if let (true, Some(p)) = (s.auth_enabled, p) {
        s.auth.grant_creator(p, kind, resource).await?;
    }
    Ok(())
}

/// With auth on, the ids of `kind` the caller may read (`None`: everything, for admins or with auth off).
pub(crate) async fn readable(
    s: &AppState,
    p: Option<&Principal>,
    kind: plinth_core::auth::ResourceKind,
) -> Result<Option<std::collections::HashSet<String>>, ApiError> {
    match (s.auth_enabled, p) {
        (true, Some(p)) => Ok(s.auth.readable(p, kind).await?),
        (true, None) => Ok(Some(std::collections::HashSet::new())),
        (false, _) => Ok(None),
    }
}
