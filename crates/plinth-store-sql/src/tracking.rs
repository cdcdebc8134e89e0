//! `TrackingStore` on SQL: experiments, runs and their children, metric history, logged models.

mod experiments;
mod filter;
mod logged_models;
pub(crate) mod rows;
mod runs;

use async_trait::async_trait;
use plinth_core::ids::{ExperimentId, LoggedModelId, RunId};
use plinth_core::tracking::{
    DatasetInput, Experiment, KeyValue, LifecycleStage, LoggedModel, LoggedModelStatus, Metric, ModelOutput, Run, RunInfo,
};
use plinth_store::audit::Record;
use plinth_store::tracking::{
    DatasetSummary, ExperimentQuery, LoggedModelQuery, NewExperiment, NewLoggedModel, NewRun, PageRequest, Rows, RunQuery, RunUpdate,
    StepRange,
};
use plinth_store::{Result, TrackingStore};

use crate::SqlStore;

#[async_trait]
impl TrackingStore for SqlStore {
    async fn ensure_default_experiment(&self, artifact_location: &str, now: i64) -> Result<()> {
        experiments::ensure_default(self, artifact_location, now).await
    }
    async fn create_experiment(&self, new: NewExperiment, record: Record<'_, ExperimentId>) -> Result<ExperimentId> {
        experiments::create(self, new, &record).await
    }
    async fn get_experiment(&self, experiment_id: &ExperimentId) -> Result<Experiment> {
        experiments::get(self, experiment_id).await
    }
    async fn find_experiment_by_name(&self, name: &str) -> Result<Option<Experiment>> {
        experiments::find_by_name(self, name).await
    }
    async fn search_experiments(&self, query: &ExperimentQuery) -> Result<Rows<Experiment>> {
        experiments::search(self, query).await
    }
    async fn rename_experiment(&self, experiment_id: &ExperimentId, new_name: &str, now: i64, record: Record<'_, ()>) -> Result<()> {
        experiments::rename(self, experiment_id, new_name, now, &record).await
    }
    async fn set_experiment_lifecycle(
        &self,
        experiment_id: &ExperimentId,
        stage: LifecycleStage,
        now: i64,
        record: Record<'_, ()>,
    ) -> Result<()> {
        experiments::set_lifecycle(self, experiment_id, stage, now, &record).await
    }
    async fn set_experiment_tag(&self, experiment_id: &ExperimentId, tag: &KeyValue, record: Record<'_, ()>) -> Result<()> {
        experiments::set_tag(self, experiment_id, tag, &record).await
    }
    async fn delete_experiment_tag(&self, experiment_id: &ExperimentId, key: &str, record: Record<'_, ()>) -> Result<()> {
        experiments::delete_tag(self, experiment_id, key, &record).await
    }
    async fn create_run(&self, new: NewRun, record: Record<'_, Run>) -> Result<Run> {
        runs::create(self, new, &record).await
    }
    async fn get_run(&self, run_id: &RunId) -> Result<Run> {
        runs::get(self, run_id).await
    }
    async fn update_run(&self, run_id: &RunId, update: &RunUpdate, record: Record<'_, RunInfo>) -> Result<RunInfo> {
        runs::update(self, run_id, update, &record).await
    }
    async fn set_run_lifecycle(&self, run_id: &RunId, stage: LifecycleStage, now: i64, record: Record<'_, ()>) -> Result<()> {
        runs::set_lifecycle(self, run_id, stage, now, &record).await
    }
    async fn log_batch(
        &self,
        run_id: &RunId,
        metrics: &[Metric],
        params: &[KeyValue],
        tags: &[KeyValue],
        record: Record<'_, ()>,
    ) -> Result<()> {
        runs::log_batch(self, run_id, metrics, params, tags, &record).await
    }
    async fn delete_run_tag(&self, run_id: &RunId, key: &str, record: Record<'_, ()>) -> Result<()> {
        runs::delete_tag(self, run_id, key, &record).await
    }
    async fn log_inputs(&self, run_id: &RunId, datasets: &[DatasetInput], model_ids: &[String], record: Record<'_, ()>) -> Result<()> {
        runs::log_inputs(self, run_id, datasets, model_ids, &record).await
    }
    async fn log_outputs(&self, run_id: &RunId, outputs: &[ModelOutput], record: Record<'_, ()>) -> Result<()> {
        runs::log_outputs(self, run_id, outputs, &record).await
    }
    async fn search_dataset_summaries(&self, experiment_ids: &[ExperimentId], limit: usize) -> Result<Vec<DatasetSummary>> {
        runs::dataset_summaries(self, experiment_ids, limit).await
    }
    async fn search_runs(&self, query: &RunQuery) -> Result<Rows<Run>> {
        runs::search(self, query).await
    }
    async fn get_metric_history(&self, run_id: &RunId, key: &str, page: PageRequest) -> Result<Rows<Metric>> {
        runs::metric_history(self, run_id, key, page).await
    }
    async fn list_metric_steps(&self, run_id: &RunId, key: &str, range: Option<StepRange>) -> Result<Vec<i64>> {
        runs::metric_steps(self, run_id, key, range).await
    }
    async fn get_metric_points_at_steps(&self, run_id: &RunId, key: &str, steps: &[i64]) -> Result<Vec<Metric>> {
        runs::metric_points_at_steps(self, run_id, key, steps).await
    }
    async fn create_logged_model(&self, new: NewLoggedModel, record: Record<'_, LoggedModel>) -> Result<LoggedModel> {
        logged_models::create(self, new, &record).await
    }
    async fn get_logged_model(&self, model_id: &LoggedModelId, allow_deleted: bool) -> Result<LoggedModel> {
        logged_models::get(self, model_id, allow_deleted).await
    }
    async fn update_logged_model_status(
        &self,
        model_id: &LoggedModelId,
        status: LoggedModelStatus,
        status_message: Option<&str>,
        now: i64,
        record: Record<'_, LoggedModel>,
    ) -> Result<LoggedModel> {
        logged_models::update_status(self, model_id, status, status_message, now, &record).await
    }
    async fn delete_logged_model(&self, model_id: &LoggedModelId, now: i64, record: Record<'_, ()>) -> Result<()> {
        logged_models::delete(self, model_id, now, &record).await
    }
    async fn set_logged_model_tags(&self, model_id: &LoggedModelId, tags: &[KeyValue], now: i64, record: Record<'_, ()>) -> Result<()> {
        logged_models::set_tags(self, model_id, tags, now, &record).await
    }
    async fn delete_logged_model_tag(&self, model_id: &LoggedModelId, key: &str, now: i64, record: Record<'_, ()>) -> Result<()> {
        logged_models::delete_tag(self, model_id, key, now, &record).await
    }
    async fn log_logged_model_params(&self, model_id: &LoggedModelId, params: &[KeyValue], now: i64, record: Record<'_, ()>) -> Result<()> {
        logged_models::log_params(self, model_id, params, now, &record).await
    }
    async fn search_logged_models(&self, query: &LoggedModelQuery) -> Result<Rows<LoggedModel>> {
        logged_models::search(self, query).await
    }
}
