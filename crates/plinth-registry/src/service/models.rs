//! Registered models and model versions: MLflow's registry semantics, version sources resolved
//! to storage locations (`crate::source`), every change audited.

use super::*;

impl RegistryService {
    // Registered models.

    pub async fn create_registered_model(
        &self,
        actor: &Actor,
        name: &str,
        tag_list: Vec<KeyValue>,
        desc: Option<String>,
    ) -> Result<RegisteredModel> {
        let event = AuditEvent::new(actor, "registered_model.create", "registered_model", name);
        let res = async {
            r::validate_model_name("name", name)?;
            tags(&tag_list)?;
            let desc = description(desc)?;
            let model = self
                .store
                .create_registered_model(
                    NewRegisteredModel { name: name.to_owned(), description: desc, tags: tag_list, now: now_millis() },
                    Record::event(event.clone()),
                )
                .await?;
            Ok(model)
        }
        .await;
        let res = self.audited(event, res).await?;
        self.outbox
            .emit(Event::RegisteredModelCreated { name: res.name.clone(), tags: res.tags.clone(), description: res.description.clone() })
            .await;
        Ok(res)
    }

    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        r::validate_model_name("name", name)?;
        Ok(self.store.get_registered_model(name).await?)
    }

    pub async fn rename_registered_model(&self, actor: &Actor, name: &str, new_name: &str) -> Result<RegisteredModel> {
        let event = AuditEvent::new(actor, "registered_model.rename", "registered_model", name).with_change(Change::new(
            "name",
            Some(name.to_owned()),
            Some(new_name.to_owned()),
        ));
        let res = async {
            r::validate_model_name("name", name)?;
            if new_name.trim().is_empty() {
                return Err(InvalidParameter::missing("new_name").into());
            }
            r::validate_model_name("new_name", new_name)?;
            Ok(self.store.rename_registered_model(name, new_name, now_millis(), Record::event(event.clone())).await?)
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn update_registered_model(&self, actor: &Actor, name: &str, desc: Option<String>) -> Result<RegisteredModel> {
        let mut event = AuditEvent::new(actor, "registered_model.update", "registered_model", name);
        let res = async {
            r::validate_model_name("name", name)?;
            let desc = description(desc)?;
            let before = self.store.get_registered_model(name).await?;
            event.changes.push(Change::new("description", before.description, desc.clone()));
            Ok(self.store.update_registered_model(name, desc.as_deref(), now_millis(), Record::event(event.clone())).await?)
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn delete_registered_model(&self, actor: &Actor, name: &str) -> Result<()> {
        let mut event = AuditEvent::new(actor, "registered_model.delete", "registered_model", name);
        let res = async {
            r::validate_model_name("name", name)?;
            let before = self.store.get_registered_model(name).await?;
            for a in &before.aliases {
                event.changes.push(Change::new(format!("alias.{}", a.alias), Some(a.version.to_string()), None));
            }
            self.store.delete_registered_model(name, Record::event(event.clone())).await?;
            Ok(())
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn search_registered_models(&self, req: SearchRequest) -> Result<Page<RegisteredModel>> {
        let page = page(req.max_results, r::DEFAULT_REGISTERED_MODELS_PAGE, r::MAX_REGISTERED_MODELS_PAGE, req.page_token.as_deref())?;
        let filter = parse_filter(Grammar::RegisteredModels, req.filter.as_deref().unwrap_or(""))?;
        check_search(req.order_by.len(), filter.len())?;
        let order_by = req.order_by.iter().map(|it| parse_order_by(Grammar::RegisteredModels, it)).collect::<Result<Vec<_>, _>>()?;
        let (filter, exclude_prompts) = prompt_scope(filter);
        let rows = self
            .store
            .search_registered_models(&RegisteredModelQuery { restrict_to: req.restrict_to, filter, exclude_prompts, order_by, page })
            .await?;
        Ok(rows.into_page(page))
    }

    pub async fn set_registered_model_tag(&self, actor: &Actor, name: &str, key: &str, value: &str) -> Result<()> {
        let event = AuditEvent::new(actor, "registered_model.tag.set", "registered_model", name)
            .with_change(Change::set(format!("tags.{key}"), value));
        let res = async {
            r::validate_model_name("name", name)?;
            r::validate_registry_tag(key, value)?;
            let tag = KeyValue { key: key.to_owned(), value: value.to_owned() };
            Ok(self.store.set_registered_model_tag(name, &tag, now_millis(), Record::event(event.clone())).await?)
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn delete_registered_model_tag(&self, actor: &Actor, name: &str, key: &str) -> Result<()> {
        let event = AuditEvent::new(actor, "registered_model.tag.delete", "registered_model", name).with_change(Change::new(
            format!("tags.{key}"),
            None,
            None,
        ));
        let res = async {
            r::validate_model_name("name", name)?;
            if key.is_empty() {
                return Err(InvalidParameter::missing("key").into());
            }
            Ok(self.store.delete_registered_model_tag(name, key, Record::event(event.clone())).await?)
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn get_latest_versions(&self, name: &str, stages: &[String]) -> Result<Vec<ModelVersion>> {
        r::validate_model_name("name", name)?;
        let wanted = stages
            .iter()
            .map(|s| {
                Stage::parse(s).ok_or_else(|| {
                    Error::invalid(format!("Invalid Model Version stage: {s}. Value must be one of None, Staging, Production, Archived."))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let model = self.store.get_registered_model(name).await?;
        Ok(model.latest_versions.into_iter().filter(|v| wanted.is_empty() || wanted.contains(&v.current_stage)).collect())
    }

    // Model versions.

    pub async fn create_model_version(&self, actor: &Actor, req: CreateVersion) -> Result<ModelVersion> {
        let event = AuditEvent::new(actor, "model_version.create", "model_version", format!("{}/?", req.name));
        let record = Record::of(|v: &ModelVersion| {
            let mut e = event.clone();
            e.resource_id = format!("{}/{}", v.name, v.version);
            e.with_change(Change::set("source", v.source.clone())).with_changes(v.run_id.clone().map(|run| Change::set("run_id", run)))
        });
        let res = self.create_model_version_inner(actor, req, record).await;
        let v = self.audited(event, res).await?;
        self.outbox
            .emit(Event::ModelVersionCreated {
                name: v.name.clone(),
                version: v.version,
                source: v.source.clone(),
                run_id: v.run_id.clone(),
                tags: v.tags.clone(),
                description: v.description.clone(),
            })
            .await;
        Ok(v)
    }

    pub(super) async fn create_model_version_inner(
        &self,
        actor: &Actor,
        req: CreateVersion,
        record: Record<'_, ModelVersion>,
    ) -> Result<ModelVersion> {
        r::validate_model_name("name", &req.name)?;
        if req.source.is_empty() {
            return Err(InvalidParameter::missing("source").into());
        }
        check_length("source", r::MAX_SOURCE_LENGTH, &req.source)?;
        tags(&req.tags)?;
        let description = description(req.description)?;
        let mut run_id = req.run_id.filter(|it| !it.is_empty());
        let mut model_id = req.model_id.filter(|it| !it.is_empty());
        if let Some(id) = &run_id {
            RunId::parse(id)?;
        }
        let storage_location = match VersionSource::parse(&req.source)? {
            VersionSource::LoggedModel(id) => {
                if model_id.as_deref().is_some_and(|given| given != id.as_str()) {
                    return Err(Error::invalid(format!(
                        "Invalid model version source: '{}'. The model_id request parameter must match the logged model of the source.",
                        req.source
                    )));
                }
                let model = self.tracking.get_logged_model(&id, false).await?;
                let model_run = model.source_run_id.as_ref().map(|r| r.as_str().to_owned());
                if run_id.is_some() && model_run.is_some() && run_id != model_run {
                    return Err(Error::invalid(format!(
                        "Invalid model version source: '{}'. The run_id request parameter must be the logged model's source run.",
                        req.source
                    )));
                }
                run_id = run_id.or(model_run);
                model_id = Some(id.as_str().to_owned());
                model.artifact_location
            }
            VersionSource::ModelVersion { name, version } => {
                let from = self.store.get_model_version(&name, version).await?;
                if (run_id.is_some() && run_id != from.run_id) || (model_id.is_some() && model_id != from.model_id) {
                    return Err(Error::invalid(format!(
                        "Invalid model version source: '{}'. The run_id and model_id request parameters must match the referenced model version.",
                        req.source
                    )));
                }
                run_id = from.run_id.clone();
                model_id = model_id.or(from.model_id.clone());
                from.storage_location
            }
            VersionSource::Run { run_id: rid, path } => {
                if run_id.as_deref().is_some_and(|given| given != rid.as_str()) {
                    return Err(Error::invalid(format!(
                        "Invalid model version source: '{}'. The run ID in the source does not match the run_id request parameter.",
                        req.source
                    )));
                }
                run_id = Some(rid.as_str().to_owned());
                match self.tracking.get_run(&rid).await {
                    Ok(run) => {
                        let base = run.info.artifact_uri.trim_end_matches('/');
                        if path.is_empty() { base.to_owned() } else { format!("{base}/{path}") }
                    }
                    // A run this server does not have (a registry copied from another server, a run
                    // tracked elsewhere): stored as given, as MLflow does. Nothing links the version
                    // to a run here, so its gate conditions over run facts fail closed.
                    Err(plinth_store::Error::Tracking(plinth_store::TrackingError::RunNotFound { .. })) => req.source.clone(),
                    Err(e) => return Err(e.into()),
                }
            }
            VersionSource::LocalPath { path: src_path } => {
                // A path on the server's file system: only inside the named run's own artifact directory.
                let allowed = match &run_id {
                    Some(rid) => {
                        let run = self.tracking.get_run(&RunId::parse(rid)?).await?;
                        let root = run.info.artifact_uri.trim_end_matches('/').to_owned();
                        let root_path = root.strip_prefix("file://").unwrap_or(&root).to_owned();
                        (root.starts_with('/') || root.starts_with("file:"))
                            && (src_path == root_path || src_path.starts_with(&format!("{root_path}/")))
                    }
                    None => false,
                };
                if !allowed {
                    return Err(Error::invalid(format!(
                        "Invalid model version source: '{}'. To use a local path as a model version source, the run_id request parameter has to be specified and the local path has to be contained within the artifact directory of the run specified by the run_id.",
                        req.source
                    )));
                }
                req.source.clone()
            }
            VersionSource::Uri { .. } => req.source.clone(),
        };
        if model_id.is_some() && run_id.is_none() {
            let id = LoggedModelId::parse(model_id.as_deref().unwrap_or_default())?;
            run_id = self.tracking.get_logged_model(&id, false).await?.source_run_id.map(|r| r.as_str().to_owned());
        }
        let user_id = (actor.name != Actor::ANONYMOUS).then(|| actor.name.clone());
        let version = self
            .store
            .create_model_version(
                NewModelVersion {
                    name: req.name.clone(),
                    source: req.source,
                    storage_location,
                    run_id,
                    run_link: req.run_link.filter(|it| !it.is_empty()),
                    model_id: model_id.clone(),
                    description,
                    user_id,
                    tags: req.tags,
                    now: now_millis(),
                },
                record,
            )
            .await?;
        if let Some(id) = &model_id {
            self.link_logged_model(id, &version).await;
        }
        Ok(version)
    }

    /// Appends `{"name", "version"}` to the logged model's `mlflow.modelVersions` tag, as MLflow's server does.
    pub(super) async fn link_logged_model(&self, model_id: &str, version: &ModelVersion) {
        let Ok(id) = LoggedModelId::parse(model_id) else { return };
        let Ok(model) = self.tracking.get_logged_model(&id, false).await else { return };
        let mut list: Vec<serde_json::Value> = model
            .tags
            .iter()
            .find(|t| t.key == "mlflow.modelVersions")
            .and_then(|t| serde_json::from_str(&t.value).ok())
            .unwrap_or_default();
        let entry = serde_json::json!({"name": version.name, "version": version.version.to_string()});
        if list.contains(&entry) {
            return;
        }
        list.push(entry);
        let tag = KeyValue { key: "mlflow.modelVersions".into(), value: serde_json::Value::Array(list).to_string() };
        // Bookkeeping MLflow's server does on registration; the version's own record names the link.
        if let Err(e) = self.tracking.set_logged_model_tags(&id, &[tag], now_millis(), Record::none()).await {
            tracing::warn!(error = %e, model_id, "could not link the logged model to its registered version");
        }
    }

    pub async fn get_model_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        r::validate_model_name("name", name)?;
        Ok(self.store.get_model_version(name, r::parse_version(version)?).await?)
    }

    pub async fn update_model_version(&self, actor: &Actor, name: &str, version: &str, desc: Option<String>) -> Result<ModelVersion> {
        let mut event = AuditEvent::new(actor, "model_version.update", "model_version", format!("{name}/{version}"));
        let res = async {
            r::validate_model_name("name", name)?;
            let number = r::parse_version(version)?;
            let desc = description(desc)?;
            let before = self.store.get_model_version(name, number).await?;
            event.changes.push(Change::new("description", before.description, desc.clone()));
            Ok(self.store.update_model_version(name, number, desc.as_deref(), now_millis(), Record::event(event.clone())).await?)
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn delete_model_version(&self, actor: &Actor, name: &str, version: &str) -> Result<()> {
        let event = AuditEvent::new(actor, "model_version.delete", "model_version", format!("{name}/{version}"));
        let res = async {
            r::validate_model_name("name", name)?;
            let number = r::parse_version(version)?;
            let current = self.store.get_model_version(name, number).await?;
            for alias in &current.aliases {
                if self.store.get_gate(name, alias).await?.is_some() {
                    return Err(Error::GatedAliasRemoval {
                        model: name.to_owned(),
                        alias: alias.clone(),
                        what: format!("removed by deleting version {number}, which it points at"),
                    });
                }
            }
            // What the version held (its source, the aliases the delete removes) is read under the delete's own locks.
            let record = Record::of(|before: &ModelVersion| {
                event
                    .clone()
                    .with_change(Change::new("source", Some(before.source.clone()), None))
                    .with_changes(before.aliases.iter().map(|alias| Change::new(format!("alias.{alias}"), Some(number.to_string()), None)))
            });
            self.store.delete_model_version(name, number, now_millis(), record).await?;
            Ok(())
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn search_model_versions(&self, req: SearchRequest) -> Result<Page<ModelVersion>> {
        let page = page(req.max_results, r::DEFAULT_MODEL_VERSIONS_PAGE, r::MAX_MODEL_VERSIONS_PAGE, req.page_token.as_deref())?;
        let filter = parse_filter(Grammar::ModelVersions, req.filter.as_deref().unwrap_or(""))?;
        check_search(req.order_by.len(), filter.len())?;
        let order_by = req.order_by.iter().map(|it| parse_order_by(Grammar::ModelVersions, it)).collect::<Result<Vec<_>, _>>()?;
        let (filter, exclude_prompts) = prompt_scope(filter);
        let rows = self
            .store
            .search_model_versions(&ModelVersionQuery { restrict_to: req.restrict_to, filter, exclude_prompts, order_by, page })
            .await?;
        Ok(rows.into_page(page))
    }

    pub async fn set_model_version_tag(&self, actor: &Actor, name: &str, version: &str, key: &str, value: &str) -> Result<()> {
        let event = AuditEvent::new(actor, "model_version.tag.set", "model_version", format!("{name}/{version}"))
            .with_change(Change::set(format!("tags.{key}"), value));
        let res = async {
            r::validate_model_name("name", name)?;
            let number = r::parse_version(version)?;
            r::validate_registry_tag(key, value)?;
            let tag = KeyValue { key: key.to_owned(), value: value.to_owned() };
            self.store.set_model_version_tag(name, number, &tag, now_millis(), Record::event(event.clone())).await?;
            Ok(number)
        }
        .await;
        let number = self.audited(event, res).await?;
        self.outbox
            .emit(Event::ModelVersionTagSet { name: name.to_owned(), version: number, key: key.to_owned(), value: value.to_owned() })
            .await;
        Ok(())
    }

    pub async fn delete_model_version_tag(&self, actor: &Actor, name: &str, version: &str, key: &str) -> Result<()> {
        let event = AuditEvent::new(actor, "model_version.tag.delete", "model_version", format!("{name}/{version}"))
            .with_change(Change::new(format!("tags.{key}"), None, None));
        let res = async {
            r::validate_model_name("name", name)?;
            let number = r::parse_version(version)?;
            if key.is_empty() {
                return Err(InvalidParameter::missing("key").into());
            }
            self.store.delete_model_version_tag(name, number, key, Record::event(event.clone())).await?;
            Ok(number)
        }
        .await;
        let number = self.audited(event, res).await?;
        self.outbox.emit(Event::ModelVersionTagDeleted { name: name.to_owned(), version: number, key: key.to_owned() }).await;
        Ok(())
    }

    pub async fn get_download_uri(&self, name: &str, version: &str) -> Result<String> {
        let v = self.get_model_version(name, version).await?;
        Ok(if v.storage_location.is_empty() { v.source } else { v.storage_location })
    }
}
