//! Who is calling. With auth on, the principal the authentication layer verified. With auth off
//! (the single-user default on loopback), the user name an HTTP Basic `Authorization` header
//! presents (what the MLflow client sends with `MLFLOW_TRACKING_USERNAME`), unverified, or
//! `anonymous`; the password is never read or kept.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use plinth_core::audit::Actor;

/// The caller of a request.
pub(crate) struct Caller(pub(crate) Actor);

/// Longest user name taken from a header.
const MAX_USER_NAME: usize = 256;

pub(crate) fn actor_from(parts: &Parts) -> Actor {
    let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Actor::anonymous();
    };
    let Some((scheme, rest)) = header.split_once(' ') else { return Actor::anonymous() };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Actor::anonymous();
    }
    let Ok(decoded) = STANDARD.decode(rest.trim()) else { return Actor::anonymous() };
    let Ok(text) = String::from_utf8(decoded) else { return Actor::anonymous() };
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    if user.is_empty() || user.len() > MAX_USER_NAME || user.chars().any(char::is_control) {
        return Actor::anonymous();
    }
    Actor::new(user)
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Caller, Self::Rejection> {
        // With auth on, the authentication layer put the verified principal here.
        if let Some(p) = parts.extensions.get::<plinth_auth::Principal>() {
            return Ok(Caller(p.actor()));
        }
        Ok(Caller(actor_from(parts)))
    }
}
