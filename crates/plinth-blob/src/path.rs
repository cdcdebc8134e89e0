//! `ArtifactPath`: a relative path that cannot leave the store's root.

use crate::Error;

/// A validated, normalized relative path: segments joined by `/`, none empty, `.` or `..`.
/// The empty path is the root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArtifactPath(String);

/// Longest accepted path, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest accepted path segment, in bytes (the file-name limit of common file systems).
pub const MAX_SEGMENT_BYTES: usize = 255;
/// The store's own directory at the root (staging files); never addressable by users.
pub const RESERVED_ROOT_NAME: &str = ".plinth-staging";

impl ArtifactPath {
    /// The store's root.
    pub fn root() -> ArtifactPath {
        ArtifactPath(String::new())
    }

    /// Validates a path as received (already percent-decoded once by the HTTP layer).
    ///
    /// Refuses `..` segments, absolute paths, Windows drive and UNC forms, backslashes, `#` (as
    /// MLflow does: a fragment marker in a URL), NUL and other control characters, also when they
    /// hide behind further percent-encoding.
    pub fn parse(raw: &str) -> Result<ArtifactPath, Error> {
        if raw.len() > MAX_PATH_BYTES {
            return Err(Error::InvalidPath);
        }
        let mut decoded = raw.to_owned();
        for _ in 0..4 {
            check_plain(&decoded)?;
            match percent_decode(&decoded) {
                Some(next) if next != decoded => decoded = next,
                Some(_) => break,
                None => break,
            }
        }
        check_plain(&decoded)?;
        let segments: Vec<&str> = raw.split('/').filter(|it| !it.is_empty() && *it != ".").collect();
        if segments.first() == Some(&RESERVED_ROOT_NAME) || segments.iter().any(|it| it.len() > MAX_SEGMENT_BYTES) {
            return Err(Error::InvalidPath);
        }
        Ok(ArtifactPath(segments.join("/")))
    }

    /// `self/child`, for a child name that is itself validated.
    pub fn join(&self, child: &str) -> Result<ArtifactPath, Error> {
        if self.0.is_empty() { ArtifactPath::parse(child) } else { ArtifactPath::parse(&format!("{}/{child}", self.0)) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The last segment, or the empty string for the root.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }
}

/// Whether `path` starts with a URI scheme (`file:`, `s3:`, `mlflow-artifacts:`): a URI is not a
/// path inside the artifact root, whatever its segments would make of it.
fn is_uri(path: &str) -> bool {
    let first = path.split('/').next().unwrap_or("");
    first.strip_suffix(':').is_some_and(|scheme| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

fn check_plain(path: &str) -> Result<(), Error> {
    let bytes = path.as_bytes();
    let is_drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if path.starts_with('/')
        || is_drive
        || is_uri(path)
        || path.contains('\\')
        || path.contains('#')
        || path.chars().any(|c| c.is_control())
        || path.split('/').any(|seg| seg == "..")
    {
        return Err(Error::InvalidPath);
    }
    Ok(())
}

/// Decodes `%XX` escapes; `None` when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut idx = 0;
    while idx < bytes.len() {
        if bytes[idx] == b'%' && idx + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[idx + 1]), hex(bytes[idx + 2])) {
                out.push((h * 16 + l) as u8);
                idx += 3;
                continue;
            }
        }
        out.push(bytes[idx]);
        idx += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_normalizes() {
        for (raw, want) in [
            ("", ""),
            ("a", "a"),
            ("a/b.txt", "a/b.txt"),
            ("a//b", "a/b"),
            ("./a/./b/", "a/b"),
            ("a b/c%20d", "a b/c%20d"),
            ("..a/b..", "..a/b.."),
            // A colon elsewhere than after a leading scheme is an ordinary character.
            ("a/b:c", "a/b:c"),
            ("1/run/artifacts/x:y.txt", "1/run/artifacts/x:y.txt"),
        ] {
            assert_eq!(ArtifactPath::parse(raw).expect(raw).as_str(), want);
        }
    }

    #[test]
    fn refuses_overlong_segments() {
        assert!(ArtifactPath::parse(&"a".repeat(255)).is_ok());
        assert!(ArtifactPath::parse(&format!("x/{}", "a".repeat(256))).is_err());
    }

    #[test]
    fn refuses_escapes() {
        for raw in [
            "..",
            "../a",
            "a/../../b",
            "a/..",
            "/etc/passwd",
            "\\\\server\\share",
            "a\\..\\b",
            "C:/x",
            "c:\\x",
            "file:///etc/passwd",
            "file:/etc/passwd",
            "s3://bucket/key",
            "mlflow-artifacts:/1/x",
            "file%3A%2F%2F%2Fetc%2Fpasswd",
            "%2e%2e/a",
            "a/%2E%2E",
            "%252e%252e/x",
            "%2fetc",
            "a\0b",
            "a/%00",
            "%5c..%5cx",
            "a#b",
            "a%23b",
        ] {
            assert!(ArtifactPath::parse(raw).is_err(), "{raw:?}");
        }
    }

    proptest! {
        #[test]
        fn never_escapes(raw in "[a-z./%2eE5cC\\\\]{0,24}") {
            if let Ok(p) = ArtifactPath::parse(&raw) {
                prop_assert!(!p.as_str().starts_with('/'));
                prop_assert!(p.is_root() || p.as_str().split('/').all(|seg| seg != ".." && seg != "." && !seg.is_empty()));
                prop_assert!(!p.as_str().contains('\\'));
            }
        }
    }
}
