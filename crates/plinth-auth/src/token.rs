//! API tokens: `plt_<id>_<secret>`. The id (12 characters) finds the token; the secret (43
//! characters, 256 random bits) proves it and is stored only as its SHA-256. Tokens carry so
//! much entropy that a fast hash is enough; a slow one would only slow every request.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "plt_";
const ID_BYTES: usize = 9;
const SECRET_BYTES: usize = 32;

/// A freshly made token: show `full` once, store `id` and `secret_hash`.
pub struct Minted {
    pub id: String,
    pub full: String,
    pub secret_hash: String,
}

fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::Rng::fill(&mut rand::rng(), bytes.as_mut_slice());
    // URL-safe base64 uses '-' and '_'; the id may not contain '_', which separates the parts.
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn mint() -> Minted {
    let id = random_b64(ID_BYTES).replace('_', "-");
    let secret = random_b64(SECRET_BYTES);
    let full = format!("{PREFIX}{id}_{secret}");
    Minted { secret_hash: hash_secret(&secret), id, full }
}

/// `(id, secret)` of a token's text, if it has the token shape.
pub fn parse(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && !secret.is_empty() && secret.len() <= 100).then_some((id, secret))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two digests in time independent of where they differ.
pub fn same_digest(a: &str, b: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_and_parse() {
        let t = mint();
        let (id, secret) = parse(&t.full).expect("parses");
        assert_eq!(id, t.id);
        assert!(same_digest(&hash_secret(secret), &t.secret_hash));
        assert!(!same_digest(&hash_secret("other"), &t.secret_hash));
        assert!(parse("plt_short_x").is_none());
        assert!(parse("password123").is_none());
        assert_ne!(mint().full, t.full);
    }
}
