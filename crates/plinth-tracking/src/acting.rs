//! Changes on behalf of an actor, each recorded in the audit trail with its outcome.
//!
//! The HTTP layer reaches every tracking change through `TrackingService::acting`; the raw
//! mutating methods are crate-private, so a change cannot skip the audit trail. Metric and param
//! logging is data, not a change of an entity, and is not audited (the run's history is its own
//! record); tags set through a batch are.

use plinth_blob::{ArtifactPath, ByteStream, CompletedPart};
use plinth_core::audit::{Actor, AuditEvent, Change};
use plinth_core::ids::ExperimentId;
use plinth_core::tracking::{KeyValue, LoggedModel, LoggedModelStatus, Run, RunInfo, RunStatus};
use plinth_store::audit::Record;

use crate::service::{CreateLoggedModel, CreateRun, LogBatch};
use crate::{Result, TrackingService};

/// The tracking service acting for one caller.
pub struct Acting<'a> {
    service: &'a TrackingService,
    actor: &'a Actor,
}

impl TrackingService {
    pub fn acting<'a>(&'a self, actor: &'a Actor) -> Acting<'a> {
        Acting { service: self, actor }
    }
}

impl Acting<'_> {
    fn event(&self, action: &str, resource_type: &str, id: impl Into<String>) -> AuditEvent {
        AuditEvent::new(self.actor, action, resource_type, id)
    }

    /// Records a change that did not happen (its refusal or failure); a change that happened was
    /// recorded by the store in its own transaction, from the `Record` each method passes down.
    async fn audited<T>(&self, event: AuditEvent, res: Result<T>) -> Result<T> {
        plinth_store::audit::append_failure(self.service.audit_log(), event, res).await
    }

    pub async fn create_experiment(&self, name: &str, artifact_location: Option<&str>, tags: Vec<KeyValue>) -> Result<ExperimentId> {
        let event = self.event("experiment.create", "experiment", "?").with_change(Change::set("name", name));
        // The id is allocated in the transaction that records it.
        let record = Record::of(|id: &ExperimentId| AuditEvent { resource_id: id.as_str().to_owned(), ..event.clone() });
        let res = self.service.create_experiment(name, artifact_location, tags, record).await;
        self.audited(event, res).await
    }

    pub async fn rename_experiment(&self, id: &str, new_name: &str) -> Result<()> {
        let before = self.service.get_experiment(id).await.ok().map(|e| e.name);
        let event = self.event("experiment.rename", "experiment", id).with_change(Change::new("name", before, Some(new_name.to_owned())));
        let res = self.service.rename_experiment(id, new_name, Record::event(event.clone())).await;
        self.audited(event, res).await
    }

    pub async fn delete_experiment(&self, id: &str) -> Result<()> {
        let event = self.event("experiment.delete", "experiment", id).with_change(Change::new(
            "lifecycle_stage",
            Some("active".into()),
            Some("deleted".into()),
        ));
        let res = self.service.delete_experiment(id, Record::event(event.clone())).await;
        self.audited(event, res).await
    }

    pub async fn restore_experiment(&self, id: &str) -> Result<()> {
        let event = self.event("experiment.restore", "experiment", id).with_change(Change::new(
            "lifecycle_stage",
            Some("deleted".into()),
            Some("active".into()),
        ));
        let res = self.service.restore_experiment(id, Record::event(event.clone())).await;
        self.audited(event, res).await
    }

    pub async fn set_experiment_tag(&self, id: &str, key: &str, value: &str) -> Result<()> {
        let event = self.event("experiment.tag.set", "experiment", id).with_change(Change::set(format!("tags.{key}"), value));
        let res = self.service.set_experiment_tag(id, key, value, Record::event(event.clone())).await;
        self.audited(event, res).await
    }

    pub async fn delete_experiment_tag(&self, id: &str, key: &str) -> Result<()> {
        let event = self.event("experiment.tag.delete", "experiment", id).with_change(Change::new(format!("tags.{key}"), None, None));
        let res = self.service.delete_experiment_tag(id, key, Record::event(event.clone())).await;
        self.audited(event, res).await
    }

    pub async fn create_run(&self, req: CreateRun) -> Result<Run> {
        let experiment = req.experiment_id.clone().unwrap_or_else(|| "0".into());
        let event = self.event("run.create", "run", "?").with_change(Change::set("experiment_id", experiment));
        let record = Record::of(|run: &Run| {
            AuditEvent { resource_id: run.info.run_id.as_str().to_owned(), ..event.clone() }
                .with_change(Change::set("run_name", run.info.run_name.clone()))
        });
        let res = self.service.create_run(req, record).await;
        self.audited(event, res).await
    }

    pub async fn update_run(
        &self,
        id: &str,
        status: Option<RunStatus>,
        end_time: Option<i64>,
        run_name: Option<String>,
    ) -> Result<RunInfo> {
        let before = self.service.get_run(id).await.ok().map(|r| r.info);
        let mut event = self.event("run.update", "run", id);
        if let Some(s) = status {
            event.changes.push(Change::new("status", before.as_ref().map(|b| b.status.as_str().to_owned()), Some(s.as_str().to_owned())));
        }
        if let Some(n) = &run_name {
            event.changes.push(Change::new("run_name", before.as_ref().map(|b| b.run_name.clone()), Some(n.clone())));
        }
        let res = self.service.update_run(id, status, end_time, run_name, Record::event(event.clone())).await;
        self.audited(event, res).await
    }

    pub async fn delete_run(&self, id: &str) -> Result<()> {
        let event =
            self.event("run.delete", "run", id).with_change(Change::new("lifecycle_stage", Some("active".into()), Some("deleted".into())));
        let res = self.service.delete_run(id, Record::event(event.clone())).await;
        self.audited(event, res).await
    }

    pub async fn restore_run(&self, id: &str) -> Result<()> {
        let event =
            self.event("run.restore", "run", id).with_change(Change::new("lifecycle_stage", Some("deleted".into()), Some("active".into())));
        let res = self.service.restore_run(id, Record::event(event.clone())).await;
        self.audited(event, res).await
    }

    /// Metrics and params are not audited; tags in the batch are.
    pub async fn log_batch(&self, id: &str, batch: LogBatch) -> Result<()> {
        if batch.tags.is_empty() {
            return self.service.log_batch(id, batch, Record::none()).await;
        }
        let event = self
            .event("run.tag.set", "run", id)
            .with_changes(batch.tags.iter().map(|t| Change::set(format!("tags.{}", t.key), t.value.clone())));
        let res = self.service.log_batch(id, batch, Record::event(event.clone())).await;
        self.audited(event, res).await
    }

    pub async fn delete_run_tag(&self, id: &str, key: &str) -> Result<()> {
        let event = self.event("run.tag.delete", "run", id).with_change(Change::new(format!("tags.{key}"), None, None));
        let res = self.service.delete_run_tag(id, key, Record::event(event.clone())).await;
        self.audited(event, res).await
    }

    pub async fn create_logged_model(&self, req: CreateLoggedModel) -> Result<LoggedModel> {
        let event =
            self.event("logged_model.create", "logged_model", "?").with_change(Change::set("experiment_id", req.experiment_id.clone()));
        let record = Record::of(|m: &LoggedModel| AuditEvent { resource_id: m.model_id.as_str().to_owned(), ..event.clone() });
        let res = self.service.create_logged_model(req, record).await;
        self.audited(event, res).await
    }

    pub async fn finalize_logged_model(&self, id: &str, status: LoggedModelStatus) -> Result<LoggedModel> {
        let event = self.event("logged_model.finalize", "logged_model", id).with_change(Change::set("status", status.as_str()));
        let res = self.service.finalize_logged_model(id, status, Record::event(event.clone())).await;
        self.audited(event, res).await
    }

    pub async fn delete_logged_model(&self, id: &str) -> Result<()> {
        let event = self.event("logged_model.delete", "logged_model", id);
        let res = self.service.delete_logged_model(id, Record::event(event.clone())).await;
        self.audited(event, res).await
    }

    pub async fn set_logged_model_tags(&self, id: &str, tags: Vec<KeyValue>) -> Result<LoggedModel> {
        let event = self
            .event("logged_model.tag.set", "logged_model", id)
            .with_changes(tags.iter().map(|t| Change::set(format!("tags.{}", t.key), t.value.clone())));
        let res = self.service.set_logged_model_tags(id, tags, Record::event(event.clone())).await;
        self.audited(event, res).await
    }

    pub async fn delete_logged_model_tag(&self, id: &str, key: &str) -> Result<()> {
        let event = self.event("logged_model.tag.delete", "logged_model", id).with_change(Change::new(format!("tags.{key}"), None, None));
        let res = self.service.delete_logged_model_tag(id, key, Record::event(event.clone())).await;
        self.audited(event, res).await
    }

    // Artifacts. A file system shares no transaction with the trail, so these are recorded after
    // the file is in place (or gone): the record can only be missing if the process dies between
    // the two (ADR 0007).

    /// Stores an artifact (the artifact proxy's upload); returns its size.
    pub async fn upload_artifact(&self, path: &ArtifactPath, body: ByteStream) -> Result<u64> {
        let event = self.event("artifact.upload", "artifact", path.as_str());
        let res = self.service.blobs().put(path, body).await.map_err(crate::Error::from);
        self.after_file(event, res, |size| Change::set("size", size.to_string())).await
    }

    /// Stores a file among a run's artifacts (a job's output kept with its run).
    pub async fn upload_run_artifact(&self, id: &str, path: &str, body: ByteStream) -> Result<u64> {
        let full = self.service.run_artifact_path(id, path).await?;
        self.upload_artifact(&full, body).await
    }

    /// Assembles a multipart upload's parts into the artifact.
    pub async fn complete_multipart(&self, upload_id: &str, path: &ArtifactPath, parts: &[CompletedPart]) -> Result<()> {
        let event = self.event("artifact.upload", "artifact", path.as_str());
        let res = self.service.blobs().complete_multipart(upload_id, path, parts).await.map_err(crate::Error::from);
        self.after_file(event, res, |()| Change::set("parts", parts.len().to_string())).await
    }

    pub async fn delete_artifact(&self, path: &ArtifactPath) -> Result<()> {
        let event = self.event("artifact.delete", "artifact", path.as_str());
        let res = self.service.blobs().delete(path).await.map_err(crate::Error::from);
        self.after_file(event, res, |()| Change::new("path", Some(path.as_str().to_owned()), None)).await
    }

    /// Appends the record of a file operation that is done (with `change`) or failed.
    async fn after_file<T>(&self, event: AuditEvent, res: Result<T>, change: impl FnOnce(&T) -> Change) -> Result<T> {
        let event = match &res {
            Ok(value) => event.with_change(change(value)),
            Err(_) => event.concluded(&res),
        };
        plinth_store::audit::append_detached(self.service.audit_log(), event).await?;
        res
    }
}
