//! Page tokens: opaque to clients, base64 of `{"offset": N}` as MLflow's SQL store makes them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::validation::InvalidParameter;

pub fn encode(offset: i64) -> String {
    STANDARD.encode(format!("{{\"offset\": {offset}}}"))
}

/// An absent or empty token is the first page.
pub fn decode(token: Option<&str>) -> Result<i64, InvalidParameter> {
    let Some(token) = token.filter(|it| !it.is_empty()) else { return Ok(0) };
    let bad = || InvalidParameter::new("Invalid page token, could not base64-decode");
    let raw = STANDARD.decode(token.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let inner = text.trim().strip_prefix('{').and_then(|it| it.strip_suffix('}')).ok_or_else(bad)?;
    let (key, value) = inner.split_once(':').ok_or_else(bad)?;
    if key.trim() != "\"offset\"" {
        return Err(bad());
    }
    let offset: i64 = value.trim().parse().map_err(|_| bad())?;
    if offset < 0 {
        return Err(bad());
    }
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        for n in [0, 1, 100, 1 << 40] {
            assert_eq!(decode(Some(&encode(n))).expect("decode"), n);
        }
        assert_eq!(decode(None).expect("none"), 0);
        assert_eq!(decode(Some("")).expect("empty"), 0);
        for bad in ["!!!", "e30=", "eyJvZmZzZXQiOiAtMX0=", "bm90IGpzb24="] {
            assert!(decode(Some(bad)).is_err(), "{bad}");
        }
    }
}
