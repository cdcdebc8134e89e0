//! `RegistryStore` on SQL: registered models, versions, tags, aliases, stages, gates, promotion requests.
//!
//! Locking: every write under a model locks the model's row first (`FOR UPDATE` on PostgreSQL; the
//! version-creating `UPDATE` of the counter takes the same row lock), then touches its rows. The
//! model row is the per-model lock that makes version numbering, alias compare-and-set and stage
//! transitions race-free; promotion-request writes lock the request row, after the model row when
//! both are needed. On SQLite the single writer connection serializes every write.

mod aliases;
mod filter;
mod gates;
mod models;
mod promotions;
pub(crate) mod rows;
mod versions;

use async_trait::async_trait;
use plinth_core::registry::{Gate, ModelVersion, PromotionRequest, PromotionStatus, RegisteredModel, Review, Stage};
use plinth_core::tracking::KeyValue;
use plinth_store::audit::Record;
use plinth_store::registry::{
    AliasMove, ModelVersionQuery, NewModelVersion, NewPromotion, NewRegisteredModel, PromotionQuery, RegisteredModelQuery, StageMove,
    StageMoved,
};
use plinth_store::tracking::Rows;
use plinth_store::{RegistryStore, Result};

use crate::SqlStore;

#[async_trait]
impl RegistryStore for SqlStore {
    async fn create_registered_model(&self, new: NewRegisteredModel, record: Record<'_, RegisteredModel>) -> Result<RegisteredModel> {
        models::create(self, new, &record).await
    }
    async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        models::get(self, name).await
    }
    async fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
        now: i64,
        record: Record<'_, RegisteredModel>,
    ) -> Result<RegisteredModel> {
        models::rename(self, name, new_name, now, &record).await
    }
    async fn update_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
        now: i64,
        record: Record<'_, RegisteredModel>,
    ) -> Result<RegisteredModel> {
        models::update(self, name, description, now, &record).await
    }
    async fn delete_registered_model(&self, name: &str, record: Record<'_, ()>) -> Result<()> {
        models::delete(self, name, &record).await
    }
    async fn search_registered_models(&self, query: &RegisteredModelQuery) -> Result<Rows<RegisteredModel>> {
        models::search(self, query).await
    }
    /// Like MLflow, setting or deleting a tag leaves the model's `last_updated_timestamp` alone.
    async fn set_registered_model_tag(&self, name: &str, tag: &KeyValue, _now: i64, record: Record<'_, ()>) -> Result<()> {
        models::set_tag(self, name, tag, &record).await
    }
    async fn delete_registered_model_tag(&self, name: &str, key: &str, record: Record<'_, ()>) -> Result<()> {
        models::delete_tag(self, name, key, &record).await
    }

    async fn create_model_version(&self, new: NewModelVersion, record: Record<'_, ModelVersion>) -> Result<ModelVersion> {
        versions::create(self, new, &record).await
    }
    async fn get_model_version(&self, name: &str, version: i64) -> Result<ModelVersion> {
        versions::get(self, name, version).await
    }
    async fn update_model_version(
        &self,
        name: &str,
        version: i64,
        description: Option<&str>,
        now: i64,
        record: Record<'_, ModelVersion>,
    ) -> Result<ModelVersion> {
        versions::update(self, name, version, description, now, &record).await
    }
    async fn delete_model_version(&self, name: &str, version: i64, now: i64, record: Record<'_, ModelVersion>) -> Result<ModelVersion> {
        versions::delete(self, name, version, now, &record).await
    }
    async fn search_model_versions(&self, query: &ModelVersionQuery) -> Result<Rows<ModelVersion>> {
        versions::search(self, query).await
    }
    /// Like MLflow, setting or deleting a tag leaves the version's `last_updated_timestamp` alone.
    async fn set_model_version_tag(&self, name: &str, version: i64, tag: &KeyValue, _now: i64, record: Record<'_, ()>) -> Result<()> {
        versions::set_tag(self, name, version, tag, &record).await
    }
    async fn delete_model_version_tag(&self, name: &str, version: i64, key: &str, record: Record<'_, ()>) -> Result<()> {
        versions::delete_tag(self, name, version, key, &record).await
    }
    async fn transition_stage(&self, change: &StageMove, record: Record<'_, StageMoved>) -> Result<StageMoved> {
        versions::transition_stage(self, change, &record).await
    }
    async fn stage_holder(&self, name: &str, stage: Stage, except: i64) -> Result<Option<i64>> {
        versions::stage_holder(self, name, stage, except).await
    }

    async fn get_alias(&self, name: &str, alias: &str) -> Result<Option<i64>> {
        aliases::get(self, name, alias).await
    }
    async fn move_alias(&self, change: &AliasMove, record: Record<'_, Option<i64>>) -> Result<Option<i64>> {
        aliases::move_alias(self, change, &record).await
    }
    /// Like MLflow, alias changes leave the model's `last_updated_timestamp` alone.
    async fn delete_alias(&self, name: &str, alias: &str, _now: i64, record: Record<'_, Option<i64>>) -> Result<Option<i64>> {
        aliases::delete(self, name, alias, &record).await
    }

    async fn put_gate(&self, gate: &Gate, record: Record<'_, Option<Gate>>) -> Result<Option<Gate>> {
        gates::put(self, gate, &record).await
    }
    async fn get_gate(&self, model: &str, target: &str) -> Result<Option<Gate>> {
        gates::get(self, model, target).await
    }
    async fn list_gates(&self, model: &str) -> Result<Vec<Gate>> {
        gates::list(self, model).await
    }
    async fn delete_gate(&self, model: &str, target: &str, record: Record<'_, Option<Gate>>) -> Result<Option<Gate>> {
        gates::delete(self, model, target, &record).await
    }

    async fn create_promotion(&self, new: NewPromotion, record: Record<'_, PromotionRequest>) -> Result<PromotionRequest> {
        promotions::create(self, new, &record).await
    }
    async fn get_promotion(&self, id: i64) -> Result<PromotionRequest> {
        promotions::get(self, id).await
    }
    async fn list_promotions(&self, query: &PromotionQuery) -> Result<Rows<PromotionRequest>> {
        promotions::list(self, query).await
    }
    async fn add_review(&self, id: i64, review: &Review, record: Record<'_, PromotionRequest>) -> Result<PromotionRequest> {
        promotions::add_review(self, id, review, &record).await
    }
    async fn set_promotion_status(
        &self,
        id: i64,
        from: PromotionStatus,
        to: PromotionStatus,
        now: i64,
        record: Record<'_, PromotionRequest>,
    ) -> Result<PromotionRequest> {
        promotions::set_status(self, id, from, to, now, &record).await
    }
    async fn expire_promotions(&self, now: i64, record: Record<'_, Vec<PromotionRequest>>) -> Result<Vec<PromotionRequest>> {
        promotions::expire(self, now, &record).await
    }
}
