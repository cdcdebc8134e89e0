//! Model version sources: the one parser of `runs:/`, `models:/` and plain URIs.
//!
//! The registry uses it to find where a version's files are; the HTTP layer uses the same parse
//! to find what a caller must be allowed to read before it may store the reference. Both reading
//! one parse means the permission check and the behaviour cannot drift apart.
//!
//! ```text
//! source := 'runs:/' run_id ['/' path]          a run's artifacts (no host)
//!         | 'models:/m-' id                      a logged model
//!         | 'models:/' name '/' version          a registered model version (a copy)
//!         | 'file:' path | path                  a path on the server's file system
//!         | scheme ':' rest                      any other URI, stored as given
//! ```
//!
//! Schemes are case-insensitive. Every source is refused when, after repeated percent-decoding,
//! it holds a `..` segment or a NUL byte (MLflow's rule).

use plinth_core::ids::{LoggedModelId, RunId};

use crate::{Error, Result};

/// What a model version's `source` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSource {
    /// `runs:/<run_id>[/<path>]`: `path` without its surrounding slashes, possibly empty.
    Run { run_id: RunId, path: String },
    /// `models:/m-<id>`.
    LoggedModel(LoggedModelId),
    /// `models:/<name>/<version>`: the new version copies this one.
    ModelVersion { name: String, version: i64 },
    /// A `file:` URI or a bare path: `path` is the file-system path it names.
    LocalPath { path: String },
    /// Any other URI, stored as given; `scheme` is lowercased.
    Uri { scheme: String },
}

impl VersionSource {
    /// Parses a source as given by a client.
    pub fn parse(source: &str) -> Result<VersionSource> {
        validate_source_path(source)?;
        let bad = |why: &str| Error::invalid(format!("Invalid model version source: '{source}'. {why}"));
        let Some(scheme) = scheme(source) else {
            return Ok(VersionSource::LocalPath { path: source.to_owned() });
        };
        let rest = after_scheme(source);
        Ok(match scheme.as_str() {
            "models" => {
                if rest.starts_with("//") {
                    return Err(bad("Registered model sources must use the active model registry."));
                }
                let rest = rest.trim_start_matches('/');
                if rest.starts_with("m-") && !rest.contains('/') {
                    VersionSource::LoggedModel(LoggedModelId::parse(rest)?)
                } else {
                    let (name, version) =
                        rest.split_once('/').ok_or_else(|| bad("Use models:/<name>/<version> or models:/m-<model id>."))?;
                    let version =
                        version.parse::<i64>().map_err(|_| bad("Only models:/<name>/<version> (a version number) may be a source."))?;
                    VersionSource::ModelVersion { name: name.to_owned(), version }
                }
            }
            "runs" => {
                if rest.starts_with("//") {
                    return Err(bad("A runs:/ source may not name a host."));
                }
                let rest = rest.trim_start_matches('/');
                let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
                VersionSource::Run { run_id: RunId::parse(run_id)?, path: path.trim_matches('/').to_owned() }
            }
            "file" => {
                // `file://host/path` names another machine's file system: say so, rather than
                // treat `host/path` as a relative path.
                if let Some(authority) = rest.strip_prefix("//").map(|r| r.split('/').next().unwrap_or(""))
                    && !authority.is_empty()
                    && !authority.eq_ignore_ascii_case("localhost")
                {
                    return Err(bad(&format!(
                        "A file: source may not name a remote host ('{authority}'); the server reads only its own file system (file:///path)."
                    )));
                }
                let path = rest.strip_prefix("//localhost").or_else(|| rest.strip_prefix("//")).unwrap_or(rest);
                VersionSource::LocalPath { path: path.to_owned() }
            }
            _ => VersionSource::Uri { scheme },
        })
    }
}

/// Decodes `+` and percent-escapes repeatedly (Python's `unquote_plus` until nothing changes, as
/// MLflow does), so `%252e%252e` is seen as `..`. Each round shortens the text, so this ends.
fn fully_unescaped(source: &str) -> String {
    let mut current = source.to_owned();
    loop {
        let decoded = percent_encoding::percent_decode_str(&current.replace('+', " ")).decode_utf8_lossy().into_owned();
        if decoded == current {
            return current;
        }
        current = decoded;
    }
}

/// MLflow's rule against sources that walk out of their location (`..` segments, NUL bytes).
fn validate_source_path(source: &str) -> Result<()> {
    let unescaped = fully_unescaped(source);
    if unescaped.contains('\0') || unescaped.split(['/', '\\']).any(|seg| seg == "..") {
        return Err(Error::invalid(format!(
            "Invalid model version source: '{source}'. If supplying a source as an http, https, local file path, ftp, objectstore, or mlflow-artifacts uri, an absolute path must be provided without relative path references present. Please provide an absolute path."
        )));
    }
    Ok(())
}

/// The URI scheme, lowercased (schemes are case-insensitive: `FILE:` is `file:`); `None` for a
/// bare path (a one-letter "scheme" is a Windows drive, not a scheme).
fn scheme(uri: &str) -> Option<String> {
    let (scheme, _) = uri.split_once(':')?;
    let ok = scheme.len() > 1
        && scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    ok.then(|| scheme.to_ascii_lowercase())
}

/// The part of a URI after its scheme and colon.
fn after_scheme(uri: &str) -> &str {
    uri.split_once(':').map_or(uri, |(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "0123456789abcdef0123456789abcdef";

    fn check_valid(source: &str, expected: VersionSource) {
        assert_eq!(VersionSource::parse(source).expect(source), expected, "{source}");
    }

    fn check_invalid(source: &str, message_part: &str) {
        let err = VersionSource::parse(source).expect_err(source).to_string();
        assert!(err.contains(message_part), "{source}: {err}");
    }

    #[test]
    fn valid_sources() {
        let run = || RunId::parse(RUN).expect("run id");
        check_valid(&format!("runs:/{RUN}/model"), VersionSource::Run { run_id: run(), path: "model".into() });
        check_valid(&format!("RUNS:/{RUN}"), VersionSource::Run { run_id: run(), path: String::new() });
        check_valid(&format!("runs:/{RUN}/a/b/"), VersionSource::Run { run_id: run(), path: "a/b".into() });
        check_valid(
            "models:/m-0123456789abcdef0123456789abcdef",
            VersionSource::LoggedModel(LoggedModelId::parse("m-0123456789abcdef0123456789abcdef").expect("id")),
        );
        check_valid("models:/churn/3", VersionSource::ModelVersion { name: "churn".into(), version: 3 });
        check_valid("Models:/churn/3", VersionSource::ModelVersion { name: "churn".into(), version: 3 });
        check_valid("file:///srv/a", VersionSource::LocalPath { path: "/srv/a".into() });
        check_valid("file://localhost/srv/a", VersionSource::LocalPath { path: "/srv/a".into() });
        check_valid("/srv/a", VersionSource::LocalPath { path: "/srv/a".into() });
        check_valid("C:/models/a", VersionSource::LocalPath { path: "C:/models/a".into() });
        check_valid("s3://b/models/m1", VersionSource::Uri { scheme: "s3".into() });
        check_valid("mlflow-artifacts:/1/models/m-1/artifacts", VersionSource::Uri { scheme: "mlflow-artifacts".into() });
        check_valid("s3://b/a..b/c", VersionSource::Uri { scheme: "s3".into() });
    }

    #[test]
    fn invalid_sources() {
        for bad in
            ["s3://b/m/../../x", "mlflow-artifacts:/1/%2e%2e/2", "file:///a/%252e%252e/b", "http://h/a/..%2f..%2fetc", "s3://b/x%00y"]
        {
            check_invalid(bad, "without relative path references");
        }
        check_invalid("models://other/churn/1", "active model registry");
        check_invalid("models:/churn", "models:/<name>/<version>");
        check_invalid("models:/churn/champion", "a version number");
        check_invalid(&format!("runs://host/{RUN}/model"), "may not name a host");
        check_invalid("runs:/", "run_id");
        check_invalid("models:/m-!!", "m-!!");
        check_invalid("file://fileserver/models/a", "may not name a remote host ('fileserver')");
    }

    #[test]
    fn unescaping() {
        assert_eq!(fully_unescaped("a%2520b+c"), "a b c");
        assert_eq!(scheme("FILE:///etc/passwd").as_deref(), Some("file"));
        assert_eq!(scheme("/local/path"), None);
    }
}
