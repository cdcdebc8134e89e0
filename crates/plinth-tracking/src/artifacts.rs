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
}
