//! Materialization (full range, incremental, scheduled), freshness and the metrics computed at
//! scrape time.

use std::sync::Arc;

use plinth_core::audit::{Actor, AuditEvent, Change};
use plinth_store::audit::Record;
use plinth_store::features::{FeatureKind, MaterializationRun};

use super::{FeatureService, Materialized};
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::online::{OnlineRecord, entity_key, value_at};
use crate::repo::ViewSpec;

/// Rows per online-store write (one transaction each).
const WRITE_BATCH: usize = 10_000;

impl FeatureService {
    /// Writes the newest row per entity of each view (all online views when `views` is empty)
    /// with event times in `[start, end]` to the online store, then records the run and moves the
    /// view's watermark to `end`. `incremental` starts after the watermark (everything when there
    /// is none). The watermark moves only after the writes commit; a rerun rewrites the same rows.
    pub async fn materialize(&self, actor: &Actor, views: &[String], incremental: bool, end_ns: Option<i64>) -> Result<Vec<Materialized>> {
        self.materialize_range(actor, views, incremental, None, end_ns).await
    }

    /// `materialize` with an explicit start (Feast's `materialize(start, end)`): rows with event
    /// times in `[start, end]`; `start_ns` is ignored when `incremental`.
    pub async fn materialize_range(
        &self,
        actor: &Actor,
        views: &[String],
        incremental: bool,
        start_ns: Option<i64>,
        end_ns: Option<i64>,
    ) -> Result<Vec<Materialized>> {
        let online = self.online_store()?.clone();
        let snap = self.refresh().await?;
        let end = end_ns.unwrap_or_else(|| plinth_core::time::now_millis().saturating_mul(1_000_000));
        let chosen: Vec<&ViewSpec> = if views.is_empty() {
            snap.repo.feature_views.iter().filter(|v| v.online).collect()
        } else {
            let mut out = Vec::new();
            for name in views {
                let view = snap.repo.view(name).ok_or_else(|| Error::not_found(format!("feature view '{name}' is not defined")))?;
                if !view.online {
                    return Err(Error::invalid(format!("feature view '{name}' is not online (online = false)")));
                }
                out.push(view);
            }
            out
        };
        let states = self.store.view_states().await?;
        let mut done = Vec::new();
        for view in chosen {
            let started_at = plinth_core::time::now_millis();
            let timer = std::time::Instant::now();
            let start = if incremental { states.iter().find(|s| s.view == view.name).and_then(|s| s.watermark_ns) } else { start_ns };
            let latest = self.engine.latest(&snap.repo, view, start, end).await?;
            let keys = snap.repo.join_keys(view);
            let mut outcome = crate::online::WriteOutcome::default();
            let rows = latest.rows.num_rows();
            let mut batch = Vec::with_capacity(WRITE_BATCH.min(rows));
            for row in 0..rows {
                let mut key = Vec::with_capacity(keys.len());
                for (i, k) in keys.iter().enumerate() {
                    key.push(value_at(latest.rows.column(i).as_ref(), row, k.value_type)?);
                }
                let mut values = Vec::with_capacity(view.features.len());
                for (i, f) in view.features.iter().enumerate() {
                    values.push(value_at(latest.rows.column(latest.key_count + i).as_ref(), row, f.value_type)?);
                }
                batch.push((entity_key(&key), OnlineRecord::new(latest.event_ts[row], latest.created_ts[row], &values)));
                if batch.len() == WRITE_BATCH {
                    let w = online.write(&view.name, std::mem::take(&mut batch)).await?;
                    outcome.written += w.written;
                    outcome.skipped_older += w.skipped_older;
                }
            }
            if !batch.is_empty() {
                let w = online.write(&view.name, batch).await?;
                outcome.written += w.written;
                outcome.skipped_older += w.skipped_older;
            }
            let newest = latest.event_ts.iter().copied().max();
            let run = MaterializationRun {
                id: 0,
                view: view.name.clone(),
                view_version: snap.version(FeatureKind::FeatureView, &view.name).unwrap_or(0),
                start_ns: start,
                end_ns: end,
                rows: rows as i64,
                newest_event_ns: newest,
                started_at,
                finished_at: plinth_core::time::now_millis(),
                actor: actor.name.clone(),
            };
            // Each view's run is recorded, with its audit record, in one transaction.
            let event = AuditEvent::new(actor, "feature_view.materialize", "feature_view", view.name.clone())
                .with_change(Change::set("rows", rows.to_string()))
                .with_change(Change::set("window", format!("{}..{end}", start.map_or_else(|| "start".to_owned(), |s| s.to_string()))));
            self.store.record_materialization(&run, Record::event(event)).await?;
            metrics::counter!(m::MATERIALIZED_ROWS, "view" => view.name.clone()).increment(outcome.written as u64);
            metrics::histogram!(m::MATERIALIZE_SECONDS, "view" => view.name.clone()).record(timer.elapsed().as_secs_f64());
            done.push(Materialized {
                view: view.name.clone(),
                start_ns: start,
                end_ns: end,
                rows,
                skipped_older: outcome.skipped_older,
                newest_event_ns: newest,
            });
        }
        Ok(done)
    }

    /// Runs the scheduled materializations: every `tick`, each online view with
    /// `materialize_every` whose last run is that old (or that never ran) is materialized
    /// incrementally. Failures are logged and retried at the next tick. Concurrent runs of one
    /// view (a manual one, another server) are safe: writes never replace newer events and the
    /// watermark never moves back.
    pub async fn run_schedule(self: Arc<Self>, tick: std::time::Duration, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    if let Err(e) = self.flush_pushed().await {
                        tracing::warn!(error = %e, "cannot record the newest pushed event times at shutdown");
                    }
                    return;
                }
                () = tokio::time::sleep(tick) => {},
            }
            if let Err(e) = self.flush_pushed().await {
                tracing::warn!(error = %e, "cannot record the newest pushed event times; retrying at the next tick");
            }
            match self.due_views().await {
                Ok(due) if !due.is_empty() => {
                    if let Err(e) = self.materialize(&Actor::system(), &due, true, None).await {
                        tracing::warn!(error = %e, views = ?due, "scheduled materialization failed");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the materialization schedule"),
            }
        }
    }

    /// Online views whose scheduled materialization is due now.
    pub async fn due_views(&self) -> Result<Vec<String>> {
        let snap = self.snapshot().await?;
        if !snap.repo.feature_views.iter().any(|v| v.online && v.materialize_every_secs.is_some()) {
            return Ok(Vec::new());
        }
        let states = self.store.view_states().await?;
        let now = plinth_core::time::now_millis();
        Ok(snap
            .repo
            .feature_views
            .iter()
            .filter(|v| v.online)
            .filter_map(|v| {
                let every = v.materialize_every_secs? as i64 * 1000;
                let last = states.iter().find(|s| s.view == v.name).and_then(|s| s.last_run_at);
                last.is_none_or(|last| now - last >= every).then(|| v.name.clone())
            })
            .collect())
    }

    /// Per online view: the materialization watermark, the newest event time written online (by
    /// materialization or push) and its age now. Views never materialized nor pushed have none.
    pub async fn freshness(&self) -> Result<Vec<(String, Option<plinth_store::features::ViewState>)>> {
        let snap = self.snapshot().await?;
        let states = self.store.view_states().await?;
        let pending = self.pushed_newest.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        Ok(snap
            .repo
            .feature_views
            .iter()
            .filter(|v| v.online)
            .map(|v| {
                let mut state = states.iter().find(|s| s.view == v.name).cloned();
                if let Some(&pushed) = pending.get(&v.name) {
                    let s = state.get_or_insert_with(|| plinth_store::features::ViewState {
                        view: v.name.clone(),
                        watermark_ns: None,
                        newest_event_ns: None,
                        last_run_at: None,
                        updated_at: 0,
                    });
                    s.newest_event_ns = Some(s.newest_event_ns.map_or(pushed, |n| n.max(pushed)));
                }
                (v.name.clone(), state)
            })
            .collect())
    }

    /// Records the newest pushed event times held in memory in the metadata store (raising, never
    /// lowering). What cannot be written stays pending for the next call.
    pub async fn flush_pushed(&self) -> Result<()> {
        let pending = std::mem::take(&mut *self.pushed_newest.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let now = plinth_core::time::now_millis();
        let mut failed = None;
        for (view, newest) in &pending {
            if failed.is_some() {
                self.note_pushed(view, *newest);
                continue;
            }
            if let Err(e) = self.store.raise_newest_event(view, *newest, now, Record::none()).await {
                self.note_pushed(view, *newest);
                failed = Some(e);
            }
        }
        failed.map_or(Ok(()), |e| Err(e.into()))
    }

    pub(super) fn note_pushed(&self, view: &str, newest: i64) {
        let mut pending = self.pushed_newest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = pending.entry(view.to_owned()).or_insert(newest);
        *slot = (*slot).max(newest);
    }

    /// Sets the freshness gauges (newest event, its age now, watermark) of every online view, for
    /// a scrape of `/metrics`.
    pub async fn publish_metrics(&self) -> Result<()> {
        let now = plinth_core::time::now_millis().saturating_mul(1_000_000);
        for (view, state) in self.freshness().await? {
            let Some(state) = state else { continue };
            if let Some(newest) = state.newest_event_ns {
                metrics::gauge!(m::NEWEST_EVENT, "view" => view.clone()).set(m::ns_to_secs(newest));
                metrics::gauge!(m::FRESHNESS_AGE, "view" => view.clone()).set(m::ns_to_secs(now.saturating_sub(newest)));
            }
            if let Some(watermark) = state.watermark_ns {
                metrics::gauge!(m::WATERMARK, "view" => view).set(m::ns_to_secs(watermark));
            }
        }
        Ok(())
    }
}
