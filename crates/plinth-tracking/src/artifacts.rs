//! Where artifacts live: the default artifact root, and mapping artifact URIs onto the blob store.

use plinth_blob::ArtifactPath;

use crate::Error;

/// The URI scheme of proxied artifacts: the client sends them through the server.
pub(crate) const PROXY_SCHEME: &str = "mlflow-artifacts:";

/// The root under which new experiments get their artifact location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactRoot {
    /// `mlflow-artifacts:/<experiment_id>`: clients upload through the server's proxy, which stores
    /// the files in the blob store (MLflow's `--serve-artifacts`).
    Proxied,
    /// `<uri>/<experiment_id>`: clients write there themselves; the server only records the URI.
    Direct(String),
}

impl ArtifactRoot {
    pub fn uri(&self) -> String {
        match self {
            ArtifactRoot::Proxied => format!("{PROXY_SCHEME}/"),
            ArtifactRoot::Direct(uri) => uri.clone(),
        }
    }

    /// The location of the experiment with the given id.
    pub fn experiment_location(&self, experiment_id: &str) -> String {
        format!("{}/{experiment_id}", self.uri().trim_end_matches('/'))
    }

    /// For a URI inside the server's artifact tree, the experiment whose tree it is in (the first
    /// segment under the root; empty for the root itself); `None` for a URI elsewhere. Proxied
    /// URIs (`mlflow-artifacts:`) are always inside; with a direct root, URIs under it are.
    pub fn experiment_of(&self, uri: &str) -> Option<String> {
        let under_root = match uri.get(..PROXY_SCHEME.len()) {
            Some(prefix) if prefix.eq_ignore_ascii_case(PROXY_SCHEME) => {
                let rest = &uri[PROXY_SCHEME.len()..];
                match rest.strip_prefix("//") {
                    Some(with_authority) => with_authority.split_once('/').map_or("", |(_, path)| path),
                    None => rest,
                }
            }
            _ => match self {
                ArtifactRoot::Proxied => return None,
                ArtifactRoot::Direct(root) => {
                    let root = root.trim_end_matches('/');
                    match uri.strip_prefix(root) {
                        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
                        _ => return None,
                    }
                }
            },
        };
        let first = under_root.split('/').find(|seg| !seg.is_empty()).unwrap_or("");
        Some(percent_encoding::percent_decode_str(first).decode_utf8_lossy().into_owned())
    }
}

/// The blob-store path of a proxied artifact URI (`mlflow-artifacts:/a/b`, `mlflow-artifacts://host/a/b`),
/// or `None` for a URI the server does not store.
pub(crate) fn proxied_path(uri: &str) -> Option<Result<ArtifactPath, Error>> {
    let rest = uri.strip_prefix(PROXY_SCHEME)?;
    let path = match rest.strip_prefix("//") {
        Some(with_authority) => with_authority.split_once('/').map_or("", |(_, path)| path),
        None => rest,
    };
    Some(ArtifactPath::parse(path.trim_start_matches('/')).map_err(Error::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(ArtifactRoot::Proxied.experiment_location("7"), "mlflow-artifacts:/7");
        assert_eq!(ArtifactRoot::Direct("s3://b/p/".into()).experiment_location("7"), "s3://b/p/7");
        assert_eq!(
            proxied_path("mlflow-artifacts:/1/r/artifacts").map(|p| p.expect("ok").as_str().to_owned()),
            Some("1/r/artifacts".into())
        );
        assert_eq!(proxied_path("mlflow-artifacts://host:5000/1/r").map(|p| p.expect("ok").as_str().to_owned()), Some("1/r".into()));
        assert!(proxied_path("s3://bucket/x").is_none());
        assert!(proxied_path("mlflow-artifacts:/../etc").expect("proxied").is_err());
    }

    #[test]
    fn experiments_of_uris() {
        let proxied = ArtifactRoot::Proxied;
        let direct = ArtifactRoot::Direct("s3://bucket/mlruns/".into());
        for (root, uri, expected) in [
            (&proxied, "mlflow-artifacts:/7/abc/artifacts", Some("7")),
            (&proxied, "MLFLOW-ARTIFACTS://host:5000/7/abc", Some("7")),
            (&proxied, "mlflow-artifacts:///12", Some("12")),
            (&proxied, "mlflow-artifacts:/", Some("")),
            (&proxied, "mlflow-artifacts:/%37/x", Some("7")),
            (&proxied, "s3://bucket/mlruns/7", None),
            (&direct, "s3://bucket/mlruns/7/abc", Some("7")),
            (&direct, "s3://bucket/mlruns", Some("")),
            (&direct, "s3://bucket/mlruns-other/7", None),
            (&direct, "mlflow-artifacts:/3/x", Some("3")),
            (&direct, "file:///etc", None),
        ] {
            assert_eq!(root.experiment_of(uri).as_deref(), expected, "{root:?} {uri}");
        }
    }
}
