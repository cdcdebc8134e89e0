//! Plans and applies of repositories against the applied definitions, and reading them back.

use std::collections::BTreeMap;

use plinth_core::audit::{Actor, AuditEvent, Change};
use plinth_core::tracking::Page;
use plinth_store::audit::{Record, append_detached, append_failure};
use plinth_store::features::{DefinitionChange, FeatureApply, FeatureDefinition, FeatureKind};

use super::{ChangeOp, FeatureService, Plan, PlannedChange, Snapshot, list_page};
use crate::error::{Error, Result};
use crate::repo::Repository;

/// How many times an apply re-plans after losing a race with another apply.
const APPLY_ATTEMPTS: usize = 8;

impl FeatureService {
    /// Validates `desired` whole (structure, then every source against its data) and diffs it
    /// against the applied definitions. Changes nothing.
    pub async fn plan(&self, desired: &Repository) -> Result<Plan> {
        desired.validate()?;
        let notes = self.engine.check(desired).await?;
        let heads = self.store.feature_heads().await?;
        Ok(Plan { changes: diff(desired, &heads).0, notes })
    }

    /// Makes the applied definitions equal `desired`: a new version of every changed object, a
    /// deletion of every applied object it no longer has, all in one transaction. Re-plans and
    /// retries when another apply commits in between, so concurrent applies serialize.
    pub async fn apply(&self, actor: &Actor, desired: &Repository) -> Result<(Plan, FeatureApply)> {
        let event = AuditEvent::new(actor, "feature_definitions.apply", "feature_repository", "default");
        let res = self.apply_inner(actor, desired, &event).await;
        if let Ok((_, applied)) = &res
            && applied.id == 0
        {
            // Nothing to change, so no transaction recorded it: the apply is recorded on its own.
            append_detached(&self.audit, event.clone()).await?;
        }
        append_failure(&self.audit, event, res).await
    }

    async fn apply_inner(&self, actor: &Actor, desired: &Repository, event: &AuditEvent) -> Result<(Plan, FeatureApply)> {
        desired.validate()?;
        let notes = self.engine.check(desired).await?;
        let mut last_conflict = None;
        for _ in 0..APPLY_ATTEMPTS {
            let heads = self.store.feature_heads().await?;
            let (changes, writes) = diff(desired, &heads);
            let changed: Vec<Change> = changes
                .iter()
                .filter(|c| c.op != ChangeOp::Unchanged)
                .map(|c| {
                    Change::new(
                        format!("{}:{}", c.kind.as_str(), c.name),
                        Some(c.from_version.to_string()),
                        c.to_version.map(|v| v.to_string()),
                    )
                })
                .collect();
            let record = Record::of(|applied: &FeatureApply| {
                let mut e = event.clone().with_changes(changed.clone());
                e.message = Some(format!("apply {}", applied.id));
                e
            });
            match self.store.apply_feature_changes(&writes, &actor.name, plinth_core::time::now_millis(), record).await {
                Ok(applied) => {
                    self.refresh().await?;
                    return Ok((Plan { changes, notes }, applied));
                }
                Err(plinth_store::Error::Conflict { message }) => last_conflict = Some(message),
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Store(plinth_store::Error::Conflict {
            message: format!("other applies kept changing the definitions; try again ({})", last_conflict.unwrap_or_default()),
        }))
    }

    pub async fn heads(&self) -> Result<Vec<FeatureDefinition>> {
        Ok(self.store.feature_heads().await?)
    }

    pub async fn definition(&self, kind: FeatureKind, name: &str, version: Option<i64>) -> Result<FeatureDefinition> {
        Ok(self.store.feature_definition(kind, name, version).await?)
    }

    pub async fn history(&self, kind: FeatureKind, name: &str) -> Result<Vec<FeatureDefinition>> {
        let history = self.store.feature_history(kind, name).await?;
        if history.is_empty() {
            return Err(plinth_store::Error::Features(plinth_store::FeaturesError::FeatureDefinitionNotFound {
                kind: kind.as_str(),
                name: name.to_owned(),
                version: None,
            })
            .into());
        }
        Ok(history)
    }

    /// Applies, newest first, a page at a time (100 by default, at most 1,000).
    pub async fn applies(&self, max_results: Option<i64>, page_token: Option<&str>) -> Result<Page<FeatureApply>> {
        let page = list_page(max_results, page_token)?;
        Ok(self.store.feature_applies(page).await?.into_page(page))
    }

    /// Resolves `features` (references) or `service` into (view, feature) pairs, in order.
    pub fn resolve(&self, snap: &Snapshot, features: &[String], service: Option<&str>) -> Result<Vec<(String, String)>> {
        match (service, features.is_empty()) {
            (Some(name), true) => {
                let service =
                    snap.repo.service(name).ok_or_else(|| Error::not_found(format!("feature service '{name}' is not defined")))?;
                snap.repo.resolve_refs(&service.features)
            }
            (None, false) => snap.repo.resolve_refs(features).map_err(|e| match e {
                Error::Problems(p) if p.iter().all(|m| m.contains("is not defined") || m.contains("has no feature")) => {
                    Error::NotFound { message: p.join("; ") }
                }
                other => other,
            }),
            (Some(_), false) => Err(Error::invalid("give either features or a feature service, not both")),
            (None, true) => Err(Error::invalid("no features requested: give feature references (view:feature) or a feature service")),
        }
    }
}

/// The plan of `desired` against `heads`, and the changes to write.
fn diff(desired: &Repository, heads: &[FeatureDefinition]) -> (Vec<PlannedChange>, Vec<DefinitionChange>) {
    let current: BTreeMap<(FeatureKind, &str), &FeatureDefinition> = heads.iter().map(|h| ((h.kind, h.name.as_str()), h)).collect();
    let wanted = desired.canonical();
    let mut plan = Vec::new();
    let mut writes = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for c in &wanted {
        seen.insert((c.kind, c.name.as_str()));
        let head = current.get(&(c.kind, c.name.as_str()));
        let from = head.map_or(0, |h| h.version);
        let op = match head {
            None => ChangeOp::Create,
            Some(h) if h.is_deleted() => ChangeOp::Create,
            Some(h) if h.digest.as_deref() == Some(c.digest.as_str()) => ChangeOp::Unchanged,
            Some(_) => ChangeOp::Update,
        };
        let to = (op != ChangeOp::Unchanged).then_some(from + 1);
        if op != ChangeOp::Unchanged {
            writes.push(DefinitionChange {
                kind: c.kind,
                name: c.name.clone(),
                expected_version: from,
                spec: Some(c.spec.clone()),
                digest: Some(c.digest.clone()),
            });
        }
        plan.push(PlannedChange { kind: c.kind, name: c.name.clone(), op, from_version: from, to_version: to });
    }
    for h in heads {
        if h.is_deleted() || seen.contains(&(h.kind, h.name.as_str())) {
            continue;
        }
        writes.push(DefinitionChange { kind: h.kind, name: h.name.clone(), expected_version: h.version, spec: None, digest: None });
        plan.push(PlannedChange {
            kind: h.kind,
            name: h.name.clone(),
            op: ChangeOp::Delete,
            from_version: h.version,
            to_version: Some(h.version + 1),
        });
    }
    plan.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    writes.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    (plan, writes)
}
