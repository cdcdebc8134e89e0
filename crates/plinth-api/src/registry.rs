//! MLflow's model registry REST API: one thin handler per endpoint, mounted under both prefixes.

use axum::Json;
use axum::extract::State;
use plinth_core::auth::ResourceKind;
use plinth_core::validation::InvalidParameter;
use plinth_registry::{CreateVersion, SearchRequest};
use serde_json::{Value, json};

use crate::access::{Locate as L, Need as N};
use crate::fields::{Fields, MlflowRequest};
use crate::identity::Caller;
use crate::references::{self, Reference, Scope};
use crate::routes::Routes;
use crate::{ApiError, AppState, json};
use plinth_core::auth::Level::{Edit, Manage, Read};

type Answer = Result<Json<Value>, ApiError>;
type Ext = Option<axum::Extension<plinth_auth::Principal>>;

pub(crate) fn routes() -> Routes {
    Routes::new()
        // Registered models.
        .post("/registered-models/create", N::Create, create_registered_model)
        .get("/registered-models/get", N::Model(Read, L::Field("name")), get_registered_model)
        .post("/registered-models/rename", N::Model(Manage, L::Field("name")), rename_registered_model)
        .patch("/registered-models/update", N::Model(Edit, L::Field("name")), update_registered_model)
        .delete("/registered-models/delete", N::Model(Manage, L::Field("name")), delete_registered_model)
        .get("/registered-models/search", N::SignedIn, search_registered_models)
        .post("/registered-models/get-latest-versions", N::Model(Read, L::Field("name")), get_latest_versions)
        .get("/registered-models/get-latest-versions", N::Model(Read, L::Field("name")), get_latest_versions)
        .post("/registered-models/set-tag", N::Model(Edit, L::Field("name")), set_registered_model_tag)
        .delete("/registered-models/delete-tag", N::Model(Edit, L::Field("name")), delete_registered_model_tag)
        .post("/registered-models/alias", N::Model(Edit, L::Field("name")), set_alias)
        .delete("/registered-models/alias", N::Model(Edit, L::Field("name")), delete_alias)
        .get("/registered-models/alias", N::Model(Read, L::Field("name")), get_by_alias)
        // Model versions.
        .post("/model-versions/create", N::Model(Edit, L::Field("name")), create_model_version)
        .get("/model-versions/get", N::Model(Read, L::Field("name")), get_model_version)
        .patch("/model-versions/update", N::Model(Edit, L::Field("name")), update_model_version)
        .delete("/model-versions/delete", N::Model(Manage, L::Field("name")), delete_model_version)
        .get("/model-versions/search", N::SignedIn, search_model_versions)
        .post("/model-versions/transition-stage", N::Model(Edit, L::Field("name")), transition_stage)
        .get("/model-versions/get-download-uri", N::Model(Read, L::Field("name")), get_download_uri)
        .post("/model-versions/set-tag", N::Model(Edit, L::Field("name")), set_model_version_tag)
        .delete("/model-versions/delete-tag", N::Model(Edit, L::Field("name")), delete_model_version_tag)
}

/// A version number field: a string (what the client sends) or a number.
pub(crate) fn version(f: &Fields, name: &str) -> Result<String, ApiError> {
    if let Ok(Some(s)) = f.opt_str(name) {
        return if s.is_empty() { Err(InvalidParameter::missing(name).into()) } else { Ok(s) };
    }
    Ok(f.i64(name)?.to_string())
}

fn empty() -> Answer {
    Ok(Json(json!({})))
}

fn search(f: &Fields, restrict_to: Option<std::collections::HashSet<String>>) -> Result<SearchRequest, ApiError> {
    Ok(SearchRequest {
        restrict_to: restrict_to.map(|set| set.into_iter().collect()),
        filter: f.opt_str("filter")?,
        order_by: f.str_list("order_by")?,
        max_results: f.opt_i64("max_results")?,
        page_token: f.opt_str("page_token")?,
    })
}

async fn create_registered_model(State(s): State<AppState>, p: Ext, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let m = s.registry.create_registered_model(&actor, &f.str("name")?, f.key_values("tags")?, f.opt_str("description")?).await?;
    crate::auth::grant_creator(&s, p.as_ref().map(|e| &e.0), ResourceKind::RegisteredModel, &m.name).await?;
    Ok(Json(json!({"registered_model": json::registered_model(&m)})))
}

async fn get_registered_model(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let m = s.registry.get_registered_model(&f.str("name")?).await?;
    Ok(Json(json!({"registered_model": json::registered_model(&m)})))
}

async fn rename_registered_model(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let new_name = f.opt_str("new_name")?.unwrap_or_default();
    let old = f.str("name")?;
    let m = s.registry.rename_registered_model(&actor, &old, &new_name).await?;
    // Grants follow the model.
    s.auth.rename_resource(&actor, ResourceKind::RegisteredModel, &old, &m.name).await?;
    Ok(Json(json!({"registered_model": json::registered_model(&m)})))
}

async fn update_registered_model(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let m = s.registry.update_registered_model(&actor, &f.str("name")?, f.opt_str("description")?).await?;
    Ok(Json(json!({"registered_model": json::registered_model(&m)})))
}

async fn delete_registered_model(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let name = f.str("name")?;
    s.registry.delete_registered_model(&actor, &name).await?;
    // A later model of the same name must not inherit the old one's grants.
    s.auth.forget_resource(&actor, ResourceKind::RegisteredModel, &name).await?;
    empty()
}

async fn search_registered_models(State(s): State<AppState>, p: Ext, MlflowRequest(f): MlflowRequest) -> Answer {
    // With auth on, the search itself is limited to what the caller may read.
    let readable = crate::auth::readable(&s, p.as_ref().map(|e| &e.0), ResourceKind::RegisteredModel).await?;
    let page = s.registry.search_registered_models(search(&f, readable)?).await?;
    Ok(Json(json::page("registered_models", page.items.iter().map(json::registered_model).collect(), page.next_page_token)))
}

async fn get_latest_versions(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let versions = s.registry.get_latest_versions(&f.str("name")?, &f.str_list("stages")?).await?;
    Ok(Json(json!({"model_versions": versions.iter().map(json::model_version).collect::<Vec<_>>()})))
}

async fn set_registered_model_tag(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    s.registry.set_registered_model_tag(&actor, &f.str("name")?, &f.str("key")?, &f.str_allow_empty("value")?).await?;
    empty()
}

async fn delete_registered_model_tag(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    s.registry.delete_registered_model_tag(&actor, &f.str("name")?, &f.str("key")?).await?;
    empty()
}

async fn set_alias(State(s): State<AppState>, Caller(actor): Caller, Scope(viewer): Scope, MlflowRequest(f): MlflowRequest) -> Answer {
    s.registry.set_alias(&actor, &f.str("name")?, &f.str_allow_empty("alias")?, &version(&f, "version")?, &viewer).await?;
    empty()
}

async fn delete_alias(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    s.registry.delete_alias(&actor, &f.str("name")?, &f.str_allow_empty("alias")?).await?;
    empty()
}

async fn get_by_alias(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let v = s.registry.get_version_by_alias(&f.str("name")?, &f.str("alias")?).await?;
    Ok(Json(json!({"model_version": json::model_version(&v)})))
}

async fn create_model_version(State(s): State<AppState>, p: Ext, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let refs = Reference::of_version(
        &f.opt_str("source")?.unwrap_or_default(),
        f.opt_str("run_id")?.as_deref(),
        f.opt_str("model_id")?.as_deref(),
    );
    references::require_readable(&s, p.as_ref().map(|e| &e.0), refs).await?;
    let req = CreateVersion {
        name: f.str("name")?,
        source: f.str("source")?,
        run_id: f.opt_str("run_id")?,
        run_link: f.opt_str("run_link")?,
        model_id: f.opt_str("model_id")?,
        description: f.opt_str("description")?,
        tags: f.key_values("tags")?,
    };
    let v = s.registry.create_model_version(&actor, req).await?;
    Ok(Json(json!({"model_version": json::model_version(&v)})))
}

async fn get_model_version(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let v = s.registry.get_model_version(&f.str("name")?, &version(&f, "version")?).await?;
    Ok(Json(json!({"model_version": json::model_version(&v)})))
}

async fn update_model_version(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    let v = s.registry.update_model_version(&actor, &f.str("name")?, &version(&f, "version")?, f.opt_str("description")?).await?;
    Ok(Json(json!({"model_version": json::model_version(&v)})))
}

async fn delete_model_version(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    s.registry.delete_model_version(&actor, &f.str("name")?, &version(&f, "version")?).await?;
    empty()
}

async fn search_model_versions(State(s): State<AppState>, p: Ext, MlflowRequest(f): MlflowRequest) -> Answer {
    let readable = crate::auth::readable(&s, p.as_ref().map(|e| &e.0), ResourceKind::RegisteredModel).await?;
    let page = s.registry.search_model_versions(search(&f, readable)?).await?;
    Ok(Json(json::page("model_versions", page.items.iter().map(json::model_version).collect(), page.next_page_token)))
}

async fn transition_stage(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Scope(viewer): Scope,
    MlflowRequest(f): MlflowRequest,
) -> Answer {
    let archive = f.opt_bool("archive_existing_versions")?.ok_or_else(|| InvalidParameter::missing("archive_existing_versions"))?;
    let v = s.registry.transition_stage(&actor, &f.str("name")?, &version(&f, "version")?, &f.str("stage")?, archive, &viewer).await?;
    Ok(Json(json!({"model_version": json::model_version(&v)})))
}

async fn get_download_uri(State(s): State<AppState>, MlflowRequest(f): MlflowRequest) -> Answer {
    let uri = s.registry.get_download_uri(&f.str("name")?, &version(&f, "version")?).await?;
    Ok(Json(json!({"artifact_uri": uri})))
}

async fn set_model_version_tag(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    s.registry
        .set_model_version_tag(&actor, &f.str("name")?, &version(&f, "version")?, &f.str("key")?, &f.str_allow_empty("value")?)
        .await?;
    empty()
}

async fn delete_model_version_tag(State(s): State<AppState>, Caller(actor): Caller, MlflowRequest(f): MlflowRequest) -> Answer {
    s.registry.delete_model_version_tag(&actor, &f.str("name")?, &version(&f, "version")?, &f.str("key")?).await?;
    empty()
}
