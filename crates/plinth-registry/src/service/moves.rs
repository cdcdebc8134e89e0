//! Moving a target: stage transitions and aliases, each through the target's promotion gate as
//! a compare-and-set on the current holder; the gates themselves and their evaluation.

use super::*;

impl RegistryService {
    // Stages.

    pub async fn transition_stage(
        &self,
        actor: &Actor,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing: bool,
        viewer: &Viewer,
    ) -> Result<ModelVersion> {
        let event = AuditEvent::new(actor, "model_version.stage", "model_version", format!("{name}/{version}"));
        let res = async {
            r::validate_model_name("name", name)?;
            let number = r::parse_version(version)?;
            let target = Stage::parse(stage).ok_or_else(|| {
                Error::invalid(format!("Invalid Model Version stage: {stage}. Value must be one of None, Staging, Production, Archived."))
            })?;
            if archive_existing && !target.is_active() {
                return Err(Error::invalid(format!(
                    "Model version transition cannot archive existing model versions because '{stage}' is not an Active stage. Valid stages are ['Staging', 'Production']"
                )));
            }
            let event = &event;
            gated_move(move || async move {
                let gate = self.store.get_gate(name, &target.gate_target()).await?;
                let gate_stamp = Some(gate.as_ref().map(|g| g.updated_at));
                let expect = match &gate {
                    None => Expect::Anything,
                    Some(gate) => {
                        let holder = self.store.stage_holder(name, target, number).await?;
                        let refuse = |required| Error::StageApprovalRequired {
                            model: name.to_owned(),
                            stage: target.as_str().to_owned(),
                            required,
                        };
                        self.judge_direct_move(name, target.as_str(), gate, number, holder, viewer, refuse).await?;
                        Expect::Holder(holder)
                    }
                };
                let change =
                    StageMove { name: name.to_owned(), version: number, stage: target, archive_existing, expect, gate_stamp, now: now_millis() };
                // The previous stage and the versions archived are read under the move's own locks.
                let record = Record::of(|moved: &StageMoved| {
                    event.clone().with_change(Change::new("stage", Some(moved.previous_stage.as_str().to_owned()), Some(target.as_str().to_owned()))).with_changes(
                        moved.archived.iter().map(|v| Change::new(format!("versions.{v}.stage"), Some(target.as_str().to_owned()), Some("Archived".into()))),
                    )
                });
                Ok(match Attempt::of(self.store.transition_stage(&change, record).await)? {
                    Attempt::Done(moved) => Attempt::Done(moved.version),
                    Attempt::Raced(message) => Attempt::Raced(message),
                })
            })
            .await
        }
        .await;
        self.audited(event, res).await
    }

    // Aliases.

    pub async fn get_version_by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion> {
        r::validate_model_name("name", name)?;
        if alias.eq_ignore_ascii_case("latest") {
            let model = self.store.get_registered_model(name).await?;
            return model
                .latest_versions
                .into_iter()
                .max_by_key(|v| v.version)
                .ok_or_else(|| Error::NoLatestVersion { name: name.to_owned() });
        }
        match self.store.get_alias(name, alias).await? {
            Some(version) => Ok(self.store.get_model_version(name, version).await?),
            None => Err(Error::invalid(format!("Registered model alias {alias} not found."))),
        }
    }

    /// MLflow's alias endpoint: moves the alias, subject to its gate (last writer wins when there is none).
    pub async fn set_alias(&self, actor: &Actor, name: &str, alias: &str, version: &str, viewer: &Viewer) -> Result<()> {
        self.move_alias(actor, name, alias, version, Expect::Anything, viewer).await.map(|_| ())
    }

    /// Plinth's promote: like `set_alias`, and with `Expect::Holder(h)` the move only happens if
    /// the alias still points at `h` (`None`: unset); otherwise `RESOURCE_CONFLICT`.
    pub async fn promote(
        &self,
        actor: &Actor,
        name: &str,
        alias: &str,
        version: &str,
        expected_current: Expect,
        viewer: &Viewer,
    ) -> Result<GateReport> {
        self.move_alias(actor, name, alias, version, expected_current, viewer).await
    }

    pub(super) async fn move_alias(
        &self,
        actor: &Actor,
        name: &str,
        alias: &str,
        version: &str,
        expected: Expect,
        viewer: &Viewer,
    ) -> Result<GateReport> {
        let event = AuditEvent::new(actor, "alias.set", "alias", format!("{name}@{alias}"));
        let res = async {
            r::validate_model_name("name", name)?;
            r::validate_alias(alias)?;
            let number = r::parse_version(version)?;
            let event = &event;
            gated_move(move || async move {
                let gate = self.store.get_gate(name, alias).await?;
                let holder = self.store.get_alias(name, alias).await?;
                if let Expect::Holder(want) = expected
                    && want != holder
                {
                    return Err(alias_moved(name, alias, want, holder));
                }
                let mut report = GateReport {
                    target: alias.to_owned(),
                    version: number,
                    current: holder,
                    checks: vec![],
                    approvals_required: 0,
                    approvals: vec![],
                };
                if holder == Some(number) {
                    // Already there (a retried request): nothing to judge or move. The version must still be live.
                    self.store.get_model_version(name, number).await?;
                    self.record(&event.clone().with_change(Change::new("version", Some(number.to_string()), Some(number.to_string()))))
                        .await?;
                    return Ok(Attempt::Done(report));
                }
                let expect = match &gate {
                    // No gate: MLflow's last-writer-wins, unless the caller pinned the holder.
                    None => expected,
                    Some(gate) => {
                        let refuse = |required| Error::ApprovalRequired { model: name.to_owned(), target: alias.to_owned(), required };
                        report = self.judge_direct_move(name, alias, gate, number, holder, viewer, refuse).await?;
                        Expect::Holder(holder)
                    }
                };
                let change = AliasMove {
                    name: name.to_owned(),
                    alias: alias.to_owned(),
                    version: number,
                    expect,
                    gate_stamp: Some(gate.as_ref().map(|g| g.updated_at)),
                    promotion_id: None,
                    now: now_millis(),
                };
                // The previous holder is read under the move's own lock (it may differ from `holder` under last-writer-wins).
                let record = Record::of(|previous: &Option<i64>| {
                    event.clone().with_change(Change::new("version", previous.map(|v| v.to_string()), Some(number.to_string())))
                });
                match Attempt::of(self.store.move_alias(&change, record).await)? {
                    Attempt::Done(_) => Ok(Attempt::Done(report)),
                    // A caller that pinned the holder it expected is not judged again.
                    Attempt::Raced(message) if matches!(expected, Expect::Holder(_)) => Err(Error::Conflict { message }),
                    Attempt::Raced(message) => Ok(Attempt::Raced(message)),
                }
            })
            .await
        }
        .await;
        let report = self.audited(event, res).await?;
        self.outbox.emit(Event::AliasSet { name: name.to_owned(), alias: alias.to_owned(), version: report.version }).await;
        Ok(report)
    }

    /// The gate's verdict on moving `target` (an alias, or a stage's name) onto `number` directly,
    /// as aliases and stages are moved outside promotion requests: a gate that requires approvals
    /// refuses it (`approvals_required`, which words the refusal for the target's kind), and so
    /// does any failed condition; a pass answers the report (the caller then pins `holder`).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn judge_direct_move(
        &self,
        model: &str,
        target: &str,
        gate: &Gate,
        number: i64,
        holder: Option<i64>,
        viewer: &Viewer,
        approvals_required: impl FnOnce(u32) -> Error,
    ) -> Result<GateReport> {
        if gate.spec.approvals_required > 0 {
            return Err(approvals_required(gate.spec.approvals_required));
        }
        let report = self.evaluate(gate, number, holder, &[], viewer, Judge::Registry).await?;
        if !report.conditions_pass() {
            return Err(Error::GateFailed {
                model: model.to_owned(),
                target: target.to_owned(),
                version: number,
                failures: report.failures(),
            });
        }
        Ok(report)
    }

    pub async fn delete_alias(&self, actor: &Actor, name: &str, alias: &str) -> Result<()> {
        let event = AuditEvent::new(actor, "alias.delete", "alias", format!("{name}@{alias}"));
        let res = async {
            r::validate_model_name("name", name)?;
            r::validate_alias(alias)?;
            if self.store.get_gate(name, alias).await?.is_some() {
                return Err(Error::GatedAliasRemoval { model: name.to_owned(), alias: alias.to_owned(), what: "deleted".into() });
            }
            let record = Record::of(|previous: &Option<i64>| {
                event.clone().with_change(Change::new("version", previous.map(|v| v.to_string()), None))
            });
            self.store.delete_alias(name, alias, now_millis(), record).await?;
            Ok(())
        }
        .await;
        self.audited(event, res).await?;
        self.outbox.emit(Event::AliasDeleted { name: name.to_owned(), alias: alias.to_owned() }).await;
        Ok(())
    }

    // Gates.

    pub async fn put_gate(&self, actor: &Actor, model: &str, spec: GateSpec) -> Result<Gate> {
        let event = AuditEvent::new(actor, "gate.put", "gate", format!("{model}@{}", spec.target));
        let res = async {
            r::validate_model_name("name", model)?;
            let spec = validate_gate(spec)?;
            let gate = Gate { model: model.to_owned(), spec, updated_by: actor.name.clone(), updated_at: now_millis() };
            let record = Record::of(|previous: &Option<Gate>| {
                event.clone().with_change(Change::new("gate", previous.as_ref().map(describe_gate), Some(describe_gate(&gate))))
            });
            self.store.put_gate(&gate, record).await?;
            Ok(gate)
        }
        .await;
        self.audited(event, res).await
    }

    pub async fn get_gate(&self, model: &str, target: &str) -> Result<Gate> {
        r::validate_model_name("name", model)?;
        self.store.get_registered_model(model).await?;
        let target = gate_target(target)?;
        self.store.get_gate(model, &target).await?.ok_or_else(|| no_gate(model, &target))
    }

    pub async fn list_gates(&self, model: &str) -> Result<Vec<Gate>> {
        r::validate_model_name("name", model)?;
        self.store.get_registered_model(model).await?;
        Ok(self.store.list_gates(model).await?)
    }

    pub async fn delete_gate(&self, actor: &Actor, model: &str, target: &str) -> Result<()> {
        let event = AuditEvent::new(actor, "gate.delete", "gate", format!("{model}@{target}"));
        let res = async {
            r::validate_model_name("name", model)?;
            self.store.get_registered_model(model).await?;
            // No gate, nothing deleted: no record in the transaction (the failure is recorded below).
            let record = Record::many(|previous: &Option<Gate>| {
                previous.iter().map(|p| event.clone().with_change(Change::new("gate", Some(describe_gate(p)), None))).collect()
            });
            match self.store.delete_gate(model, &gate_target(target)?, record).await? {
                Some(_) => Ok(()),
                None => Err(no_gate(model, target)),
            }
        }
        .await;
        self.audited(event, res).await
    }

    /// Evaluates `gate` for `version` against `holder`, counting `approvals`.
    pub(super) async fn evaluate(
        &self,
        gate: &Gate,
        version: i64,
        holder: Option<i64>,
        approvals: &[String],
        viewer: &Viewer,
        judge: Judge,
    ) -> Result<GateReport> {
        let candidate = self.subject(&gate.model, version, viewer).await?;
        let current = match holder {
            Some(h) if h != version => Some(self.subject(&gate.model, h, viewer).await?),
            Some(_) => Some(candidate.clone()),
            None => None,
        };
        let mut checks = Vec::new();
        for tag in &gate.spec.required_tags {
            let present = candidate.version_tags.iter().any(|t| &t.key == tag && !t.value.trim().is_empty());
            checks.push(Check {
                condition: format!("required tag '{tag}'"),
                passed: present,
                detail: if present {
                    format!("version {version} carries it")
                } else {
                    format!("version {version} does not carry tag '{tag}'")
                },
            });
        }
        for text in &gate.spec.conditions {
            match gate::parse(text) {
                Ok(cond) => checks.push(gate::evaluate(&cond, &candidate, current.as_ref(), judge)),
                Err(e) => checks.push(Check { condition: text.clone(), passed: false, detail: format!("cannot be parsed: {e}") }),
            }
        }
        Ok(GateReport {
            target: gate.spec.target.clone(),
            version,
            current: holder,
            checks,
            approvals_required: gate.spec.approvals_required,
            approvals: approvals.to_vec(),
        })
    }

    /// The facts a gate reads about a version: its tags, and its source run's metrics, params and
    /// tags (marked hidden when `viewer` may not read the run).
    pub(super) async fn subject(&self, model: &str, version: i64, viewer: &Viewer) -> Result<Subject> {
        let v = self.store.get_model_version(model, version).await?;
        let mut subject = Subject { version, version_tags: v.tags, ..Subject::default() };
        if let Some(rid) = v.run_id.as_deref().and_then(|it| RunId::parse(it).ok()) {
            match self.tracking.get_run(&rid).await {
                Ok(run) => {
                    // A run's facts count only when the version's artifacts provably came from it: they lie
                    // under the run's artifact root, or they are a logged model of that run. A run_id merely
                    // claimed next to an unrelated source must not lend the version the run's metrics.
                    let root = run.info.artifact_uri.trim_end_matches('/');
                    let location = v.storage_location.trim_end_matches('/');
                    let mut verified = location == root || location.starts_with(&format!("{root}/"));
                    if !verified && let Some(mid) = v.model_id.as_deref().and_then(|it| LoggedModelId::parse(it).ok()) {
                        match self.tracking.get_logged_model(&mid, true).await {
                            Ok(m) => {
                                verified = m.source_run_id.as_ref().is_some_and(|r| r.as_str() == rid.as_str())
                                    && m.artifact_location.trim_end_matches('/') == location;
                            }
                            Err(plinth_store::Error::Tracking(plinth_store::TrackingError::LoggedModelNotFound { .. })) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    if verified {
                        subject.hidden = !viewer.may_read_experiment(run.info.experiment_id.as_str());
                        subject.run_id = Some(rid.as_str().to_owned());
                        subject.metrics = run.data.metrics;
                        subject.params = run.data.params;
                        subject.run_tags = run.data.tags;
                    } else {
                        subject.unverified_run = Some(rid.as_str().to_owned());
                    }
                }
                Err(plinth_store::Error::Tracking(plinth_store::TrackingError::RunNotFound { .. })) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(subject)
    }

    /// What the gate of `target` would say about `version` now, for `viewer`, without moving
    /// anything: conditions over runs the viewer may not read fail closed.
    pub async fn check_gate(&self, model: &str, target: &str, version: &str, viewer: &Viewer) -> Result<GateReport> {
        r::validate_model_name("name", model)?;
        let number = r::parse_version(version)?;
        let target = gate_target(target)?;
        let gate = self.store.get_gate(model, &target).await?.ok_or_else(|| no_gate(model, &target))?;
        let holder = match Stage::from_gate_target(&target) {
            Some(stage) => self.store.stage_holder(model, stage, number).await?,
            None => self.store.get_alias(model, &target).await?,
        };
        self.evaluate(&gate, number, holder, &[], viewer, Judge::Caller).await
    }
}

pub(super) fn alias_moved(name: &str, alias: &str, want: Option<i64>, have: Option<i64>) -> Error {
    let show = |v: Option<i64>| v.map_or("unset".to_owned(), |v| format!("version {v}"));
    Error::Conflict {
        message: format!(
            "Alias '{alias}' of registered model '{name}' is {} now, not {} as expected; re-read and retry",
            show(have),
            show(want)
        ),
    }
}

pub(super) fn no_gate(model: &str, target: &str) -> Error {
    Error::GateNotFound { model: model.to_owned(), target: target.to_owned() }
}

pub(super) fn describe_gate(gate: &Gate) -> String {
    format!(
        "conditions={:?} required_tags={:?} approvals_required={}",
        gate.spec.conditions, gate.spec.required_tags, gate.spec.approvals_required
    )
}

/// A gate target as stored: an alias as spelled (validated), or `stage:<stage>` in lowercase.
pub(super) fn gate_target(raw: &str) -> Result<String> {
    if let Some(stage) = Stage::from_gate_target(raw) {
        return Ok(stage.gate_target());
    }
    if raw.len() >= r::STAGE_TARGET_PREFIX.len() && raw[..r::STAGE_TARGET_PREFIX.len()].eq_ignore_ascii_case(r::STAGE_TARGET_PREFIX) {
        return Err(Error::invalid(format!(
            "Invalid gate target '{raw}': use stage:staging, stage:production, stage:archived or stage:none"
        )));
    }
    r::validate_alias(raw)?;
    Ok(raw.to_owned())
}

pub(super) fn validate_gate(mut spec: GateSpec) -> Result<GateSpec> {
    // A bare stage name would make an alias gate that looks like a stage gate and guards nothing
    // of the stage: refuse it, naming both spellings.
    if Stage::parse(&spec.target).is_some() {
        return Err(Error::invalid(format!(
            "Invalid gate target '{0}': '{0}' is a stage name. Use stage:{1} for the gate on the {1} stage (plinth models gate set NAME --stage {1}); an alias gate cannot be named after a stage",
            spec.target,
            spec.target.to_ascii_lowercase()
        )));
    }
    spec.target = gate_target(&spec.target)?;
    if spec.conditions.len() > r::MAX_GATE_CONDITIONS {
        return Err(Error::invalid(format!("A gate has at most {} conditions, got {}", r::MAX_GATE_CONDITIONS, spec.conditions.len())));
    }
    let mut problems = Vec::new();
    for c in &spec.conditions {
        check_length("condition", r::MAX_GATE_CONDITION_LENGTH, c)?;
        if let Err(e) = gate::parse(c) {
            problems.push(format!("'{c}': {e}"));
        }
    }
    if !problems.is_empty() {
        return Err(Error::invalid(format!("Invalid gate condition(s): {}", problems.join("; "))));
    }
    if spec.required_tags.len() > r::MAX_GATE_REQUIRED_TAGS {
        return Err(Error::invalid(format!(
            "A gate requires at most {} tags, got {}",
            r::MAX_GATE_REQUIRED_TAGS,
            spec.required_tags.len()
        )));
    }
    for t in &spec.required_tags {
        r::validate_registry_tag(t, "")?;
    }
    if spec.approvals_required > r::MAX_GATE_APPROVALS {
        return Err(Error::invalid(format!("approvals_required is at most {}, got {}", r::MAX_GATE_APPROVALS, spec.approvals_required)));
    }
    spec.description = description(spec.description)?;
    Ok(spec)
}
