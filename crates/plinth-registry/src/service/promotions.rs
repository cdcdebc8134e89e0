//! Promotion requests: asking, reviewing (approvals and rejections), applying, cancelling, and
//! the expiry loop.

use super::*;

impl RegistryService {
    // Promotion requests.

    pub async fn request_promotion(&self, actor: &Actor, ask: PromotionAsk, viewer: &Viewer) -> Result<PromotionOutcome> {
        let PromotionAsk { model, version, target, reason, ttl_secs } = ask;
        let (model, version, target) = (model.as_str(), version.as_str(), target.as_str());
        let event = AuditEvent::new(actor, "promotion.request", "promotion", format!("{model}@{target}"));
        let res = async {
            r::validate_model_name("name", model)?;
            r::validate_alias(target)?;
            let number = r::parse_version(version)?;
            if let Some(reason) = &reason {
                check_length("reason", r::MAX_COMMENT_LENGTH, reason)?;
            }
            let ttl = ttl_secs.unwrap_or(self.config.promotion_ttl_secs);
            if ttl <= 0 || ttl > self.config.max_promotion_ttl_secs {
                return Err(Error::invalid(format!("ttl_secs must be between 1 and {} (got {ttl})", self.config.max_promotion_ttl_secs)));
            }
            let now = now_millis();
            // The request's id is allocated in the transaction that records it.
            let record = Record::of(|request: &PromotionRequest| {
                let mut e = event.clone().with_change(Change::set("request", format!("{model} version {number} -> {target}")));
                e.resource_id = request.id.to_string();
                e
            });
            let new = NewPromotion {
                model: model.to_owned(),
                version: number,
                target: target.to_owned(),
                requester: actor.name.clone(),
                reason,
                now,
                expires_at: now.saturating_add(ttl.saturating_mul(1000)),
            };
            Ok(self.store.create_promotion(new, record).await?)
        }
        .await;
        let request = self.audited(event, res).await?;
        self.outbox.emit(Event::promotion("created", &request, actor, None)).await;
        self.try_apply(actor, request, viewer).await
    }

    /// The request alone, as stored (what a permission check needs to find its model).
    pub async fn get_promotion_request(&self, id: i64) -> Result<PromotionRequest> {
        Ok(self.store.get_promotion(id).await?)
    }

    /// The request as it stands; the gate's report on it for `viewer`.
    pub async fn get_promotion(&self, id: i64, viewer: &Viewer) -> Result<PromotionOutcome> {
        let request = shown(self.store.get_promotion(id).await?);
        let report = self.report_for(&request, viewer).await?;
        Ok(PromotionOutcome { request, report })
    }

    pub async fn list_promotions(
        &self,
        model: Option<String>,
        status: Option<PromotionStatus>,
        max_results: Option<i64>,
        token: Option<&str>,
    ) -> Result<Page<PromotionRequest>> {
        let page = page(max_results, 100, 1000, token)?;
        let mut rows = self.store.list_promotions(&PromotionQuery { model, status, page }).await?;
        // Overdue requests read as EXPIRED before the expiry loop records it.
        rows.items = rows.items.into_iter().map(shown).filter(|r| status.is_none_or(|s| s == r.status)).collect();
        Ok(rows.into_page(page))
    }

    pub async fn review_promotion(
        &self,
        actor: &Actor,
        id: i64,
        decision: ReviewDecision,
        comment: Option<String>,
        viewer: &Viewer,
    ) -> Result<PromotionOutcome> {
        let verb = match decision {
            ReviewDecision::Approve => "promotion.approve",
            ReviewDecision::Reject => "promotion.reject",
        };
        let event = AuditEvent::new(actor, verb, "promotion", id.to_string());
        let res = async {
            self.expire().await?;
            if let Some(c) = &comment {
                check_length("comment", r::MAX_COMMENT_LENGTH, c)?;
            }
            let request = self.store.get_promotion(id).await?;
            if request.requester == actor.name {
                return Err(Error::Forbidden {
                    message: format!("{} requested promotion {id} and cannot review it; another person must", actor.name),
                });
            }
            if request.status != PromotionStatus::Pending {
                return Err(Error::Conflict { message: format!("Promotion request {id} is {}, not PENDING", request.status.as_str()) });
            }
            // A review stands as given: a second one by the same person would silently replace it.
            if let Some(earlier) = request.reviews.iter().find(|r| r.reviewer == actor.name) {
                return Err(Error::Conflict {
                    message: format!(
                        "{} already reviewed promotion {id} ({}); a review cannot be changed or repeated",
                        actor.name,
                        earlier.decision.as_str()
                    ),
                });
            }
            let review = Review { reviewer: actor.name.clone(), decision, comment: comment.clone(), created_at: now_millis() };
            // A rejection ends the request in the same transaction.
            Ok(self.store.add_review(id, &review, Record::event(event.clone())).await?)
        }
        .await;
        let request = self.audited(event, res).await?;
        let action = match decision {
            ReviewDecision::Approve => "approved",
            ReviewDecision::Reject => "rejected",
        };
        self.outbox.emit(Event::promotion(action, &request, actor, comment.as_deref())).await;
        if decision == ReviewDecision::Reject {
            let report = self.report_for(&request, viewer).await?;
            return Ok(PromotionOutcome { request, report });
        }
        self.try_apply(actor, request, viewer).await
    }

    /// Re-checks a pending request and moves the alias if it passes now (a condition may have
    /// failed when the last approval came in).
    pub async fn apply_promotion(&self, actor: &Actor, id: i64, viewer: &Viewer) -> Result<PromotionOutcome> {
        self.expire().await?;
        let request = self.store.get_promotion(id).await?;
        if request.status != PromotionStatus::Pending {
            return Err(Error::Conflict { message: format!("Promotion request {id} is {}, not PENDING", request.status.as_str()) });
        }
        self.try_apply(actor, request, viewer).await
    }

    pub async fn cancel_promotion(&self, actor: &Actor, id: i64) -> Result<PromotionRequest> {
        let event = AuditEvent::new(actor, "promotion.cancel", "promotion", id.to_string());
        let res = async {
            let request = self.store.get_promotion(id).await?;
            if request.requester != actor.name {
                return Err(Error::Forbidden { message: format!("only the requester ({}) may cancel promotion {id}", request.requester) });
            }
            let record = Record::event(event.clone());
            Ok(self.store.set_promotion_status(id, PromotionStatus::Pending, PromotionStatus::Cancelled, now_millis(), record).await?)
        }
        .await;
        self.audited(event, res).await
    }

    pub(super) async fn report_for(&self, request: &PromotionRequest, viewer: &Viewer) -> Result<GateReport> {
        Ok(self.judge(request, viewer).await?.0)
    }

    /// The gate's verdict on a request, and the gate's stamp (`updated_at`, `None` without a gate).
    /// The registry's judgement counts every fact; `viewer` only decides which values the report shows.
    pub(super) async fn judge(&self, request: &PromotionRequest, viewer: &Viewer) -> Result<(GateReport, Option<i64>)> {
        let approvals: Vec<String> = request.approvers().into_iter().map(str::to_owned).collect();
        let gate = self.store.get_gate(&request.model, &request.target).await?;
        let holder = self.store.get_alias(&request.model, &request.target).await?;
        let stamp = gate.as_ref().map(|g| g.updated_at);
        let report = match gate {
            // The alias already points at the version: the conditions have nothing left to decide.
            Some(gate) if holder == Some(request.version) => GateReport {
                target: request.target.clone(),
                version: request.version,
                current: holder,
                checks: vec![],
                approvals_required: gate.spec.approvals_required,
                approvals,
            },
            Some(gate) => self.evaluate(&gate, request.version, holder, &approvals, viewer, Judge::Registry).await?,
            None => GateReport {
                target: request.target.clone(),
                version: request.version,
                current: holder,
                checks: vec![],
                approvals_required: 0,
                approvals,
            },
        };
        Ok((report, stamp))
    }

    /// Moves the alias if the request has its approvals and the conditions pass; otherwise leaves it pending.
    pub(super) async fn try_apply(&self, actor: &Actor, request: PromotionRequest, viewer: &Viewer) -> Result<PromotionOutcome> {
        let event = AuditEvent::new(actor, "promotion.apply", "promotion", request.id.to_string());
        let (request, event_ref) = (&request, &event);
        let res = gated_move(move || async move {
            let event = event_ref;
            let (mut report, stamp) = self.judge(request, viewer).await?;
            if !report.approved() {
                return Ok(Attempt::Done(PromotionOutcome { request: request.clone(), report }));
            }
            if !report.conditions_pass() {
                let refusal = Error::GateFailed {
                    model: request.model.clone(),
                    target: request.target.clone(),
                    version: request.version,
                    failures: report.failures(),
                };
                self.record(&event.clone().with_outcome(Outcome::Refused, refusal.to_string())).await?;
                return Ok(Attempt::Done(PromotionOutcome { request: request.clone(), report }));
            }
            let change = AliasMove {
                name: request.model.clone(),
                alias: request.target.clone(),
                version: request.version,
                expect: Expect::Holder(report.current),
                gate_stamp: Some(stamp),
                promotion_id: Some(request.id),
                now: now_millis(),
            };
            // The request's history and the alias's own both show the move, with the previous holder
            // read under the move's lock.
            let record = Record::many(|previous: &Option<i64>| {
                let (before, after) = (previous.map(|v| v.to_string()), Some(request.version.to_string()));
                vec![
                    event.clone().with_change(Change::new(format!("alias.{}", request.target), before.clone(), after.clone())),
                    AuditEvent::new(actor, "alias.set", "alias", format!("{}@{}", request.model, request.target))
                        .with_change(Change::new("version", before, after))
                        .with_change(Change::set("promotion", request.id.to_string())),
                ]
            });
            match Attempt::of(self.store.move_alias(&change, record).await)? {
                Attempt::Done(_) => {
                    let applied = self.store.get_promotion(request.id).await?;
                    self.outbox
                        .emit(Event::AliasSet { name: request.model.clone(), alias: request.target.clone(), version: request.version })
                        .await;
                    // The answer shows the alias as it now is.
                    report.current = Some(request.version);
                    Ok(Attempt::Done(PromotionOutcome { request: applied, report }))
                }
                Attempt::Raced(message) => {
                    let fresh = self.store.get_promotion(request.id).await?;
                    if fresh.status == PromotionStatus::Applied {
                        // A concurrent approval applied it: this caller's approval is in, the outcome is the same.
                        let report = self.report_for(&fresh, viewer).await?;
                        return Ok(Attempt::Done(PromotionOutcome { request: fresh, report }));
                    }
                    if fresh.status != PromotionStatus::Pending {
                        return Err(Error::Conflict { message });
                    }
                    Ok(Attempt::Raced(message))
                }
            }
        })
        .await;
        self.audited(event, res).await
    }

    /// Expires overdue requests every `interval` until `shutdown`.
    pub async fn run_expiry(self: Arc<Self>, interval: std::time::Duration, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(e) = self.expire().await {
                tracing::warn!(error = %e, "expiring promotion requests failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {},
            }
        }
    }

    /// Marks overdue requests expired (and records it).
    pub async fn expire(&self) -> Result<()> {
        let record = Record::many(|expired: &Vec<PromotionRequest>| {
            expired
                .iter()
                .map(|request| {
                    AuditEvent::new(&Actor::system(), "promotion.expire", "promotion", request.id.to_string()).with_change(Change::new(
                        "status",
                        Some("PENDING".into()),
                        Some("EXPIRED".into()),
                    ))
                })
                .collect()
        });
        let expired = self.store.expire_promotions(now_millis(), record).await?;
        for request in expired {
            self.outbox.emit(Event::promotion("expired", &request, &Actor::system(), None)).await;
        }
        Ok(())
    }
}

/// A request as readers see it: a pending one past its expiry reads as `EXPIRED` (the expiry loop records it).
pub(super) fn shown(mut request: PromotionRequest) -> PromotionRequest {
    if request.status == PromotionStatus::Pending && request.expires_at < now_millis() {
        request.status = PromotionStatus::Expired;
    }
    request
}
