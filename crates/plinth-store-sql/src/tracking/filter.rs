//! Search-filter clauses (`plinth-filter` ASTs) rendered as SQL conditions with binds.
//!
//! Runs are aliased `r`, experiments `e`, logged models `lm`. Metric conditions compare the
//! latest value and never match NaN; param and tag conditions test a row with that key, so
//! `!=` matches entities that have the key with another value (MLflow's semantics) and
//! `IS NULL` matches entities without the key.

use plinth_core::tracking::ViewType;
use plinth_filter::{Attr, Clause, DatasetField, Key, Op, Value};
use plinth_store::Result;

use crate::filter_sql::{push_number_condition, push_string_condition, unsupported};
use crate::sql::{Sql, comparator};

pub(crate) fn push_lifecycle(sql: &mut Sql, column: &str, view: ViewType) {
    let stages = view_stages(view);
    sql.push(column).push(" IN ").bind_list(stages);
}

/// A condition on a key/value child table (params, tags): `EXISTS`/`NOT EXISTS` a row with the key.
fn push_key_value_condition(sql: &mut Sql, table: &str, parent_column: &str, parent: &str, key: &str, clause: &Clause) -> Result<()> {
    let exists = |sql: &mut Sql, negated: bool| {
        sql.push(if negated { "NOT EXISTS (SELECT 1 FROM " } else { "EXISTS (SELECT 1 FROM " })
            .push(table)
            .push(" kv WHERE kv.")
            .push(parent_column)
            .push(" = ")
            .push(parent)
            .push(" AND kv.key = ")
            .bind(key);
    };
    match clause.op {
        Op::IsNull => exists(sql, true),
        Op::IsNotNull => exists(sql, false),
        _ => {
            exists(sql, false);
            sql.push(" AND ");
            push_string_condition(sql, "kv.value", clause)?;
        }
    }
    sql.push(")");
    Ok(())
}

fn push_metric_condition(sql: &mut Sql, table: &str, parent_column: &str, parent: &str, key: &str, clause: &Clause) -> Result<()> {
    sql.push("EXISTS (SELECT 1 FROM ")
        .push(table)
        .push(" m WHERE m.")
        .push(parent_column)
        .push(" = ")
        .push(parent)
        .push(" AND m.key = ")
        .bind(key)
        .push(" AND m.is_nan = 0 AND ");
    let Value::Number(n) = clause.value else { return Err(unsupported(clause)) };
    let cmp = comparator(clause.op).ok_or_else(|| unsupported(clause))?;
    sql.push("m.value").push(cmp).bind(n).push(")");
    Ok(())
}

/// A metric comparison on an already joined latest-metric row (`alias.value OP number`), for a metric
/// the query also orders by; equivalent to the `EXISTS` form since the join requires a non-NaN value.
pub(crate) fn push_metric_on_alias(sql: &mut Sql, alias: &str, clause: &Clause) -> Result<()> {
    let Value::Number(n) = clause.value else { return Err(unsupported(clause)) };
    let cmp = comparator(clause.op).ok_or_else(|| unsupported(clause))?;
    sql.push(alias).push(".value").push(cmp).bind(n);
    Ok(())
}

pub(crate) fn push_experiment_clause(sql: &mut Sql, clause: &Clause) -> Result<()> {
    match &clause.key {
        Key::Tag(key) => push_key_value_condition(sql, "experiment_tags", "experiment_id", "e.experiment_id", key, clause),
        Key::Attribute(Attr::Name) => push_string_condition(sql, "e.name", clause),
        Key::Attribute(Attr::CreationTime) => push_number_condition(sql, "e.creation_time", clause),
        Key::Attribute(Attr::LastUpdateTime) => push_number_condition(sql, "e.last_update_time", clause),
        Key::Attribute(Attr::ExperimentId) => {
            // Ids are integers in SQL; an id that is not an integer matches nothing.
            let ids = |items: &[String]| items.iter().filter_map(|it| it.parse::<i64>().ok()).collect::<Vec<_>>();
            match (&clause.op, &clause.value) {
                (Op::Eq | Op::Ne, Value::String(s)) => match s.parse::<i64>() {
                    Ok(id) => {
                        sql.push("e.experiment_id").push(if clause.op == Op::Eq { " = " } else { " <> " }).bind(id);
                    }
                    Err(_) => {
                        sql.push(if clause.op == Op::Eq { "1 = 0" } else { "1 = 1" });
                    }
                },
                (Op::Eq | Op::Ne, Value::Number(_)) => push_number_condition(sql, "e.experiment_id", clause)?,
                (Op::In | Op::NotIn, Value::List(items)) => {
                    let ids = ids(items);
                    if ids.is_empty() {
                        sql.push(if clause.op == Op::In { "1 = 0" } else { "1 = 1" });
                    } else {
                        sql.push("e.experiment_id").push(if clause.op == Op::In { " IN " } else { " NOT IN " }).bind_list(&ids);
                    }
                }
                _ => return Err(unsupported(clause)),
            }
            Ok(())
        }
        _ => Err(unsupported(clause)),
    }
}

fn run_attribute_column(attr: Attr) -> Option<&'static str> {
    Some(match attr {
        Attr::RunId => "r.run_uuid",
        Attr::RunName => "r.name",
        Attr::UserId => "r.user_id",
        Attr::Status => "r.status",
        Attr::ArtifactUri => "r.artifact_uri",
        Attr::LifecycleStage => "r.lifecycle_stage",
        Attr::StartTime => "r.start_time",
        Attr::EndTime => "r.end_time",
        _ => return None,
    })
}

pub(crate) fn push_run_clause(sql: &mut Sql, clause: &Clause) -> Result<()> {
    match &clause.key {
        Key::Metric(key) => push_metric_condition(sql, "latest_metrics", "run_uuid", "r.run_uuid", key, clause),
        Key::Param(key) => push_key_value_condition(sql, "params", "run_uuid", "r.run_uuid", key, clause),
        Key::Tag(key) => push_key_value_condition(sql, "run_tags", "run_uuid", "r.run_uuid", key, clause),
        Key::Attribute(attr) => {
            let column = run_attribute_column(*attr).ok_or_else(|| unsupported(clause))?;
            if attr.is_numeric() { push_number_condition(sql, column, clause) } else { push_string_condition(sql, column, clause) }
        }
        Key::Dataset(field) => {
            sql.push("EXISTS (SELECT 1 FROM run_dataset_inputs di WHERE di.run_uuid = r.run_uuid AND ");
            match field {
                DatasetField::Name => push_string_condition(sql, "di.dataset_name", clause)?,
                DatasetField::Digest => push_string_condition(sql, "di.dataset_digest", clause)?,
                DatasetField::Context => {
                    sql.push(
                        "EXISTS (SELECT 1 FROM run_dataset_input_tags dt WHERE dt.run_uuid = di.run_uuid \
                         AND dt.dataset_name = di.dataset_name AND dt.dataset_digest = di.dataset_digest AND dt.key = 'mlflow.data.context' AND ",
                    );
                    push_string_condition(sql, "dt.value", clause)?;
                    sql.push(")");
                }
            }
            sql.push(")");
            Ok(())
        }
    }
}

fn logged_model_attribute_column(attr: Attr) -> Option<&'static str> {
    Some(match attr {
        Attr::ModelId => "lm.model_id",
        Attr::Name => "lm.name",
        Attr::ModelType => "lm.model_type",
        Attr::Status => "lm.status",
        Attr::SourceRunId => "lm.source_run_id",
        Attr::CreationTimestamp | Attr::CreationTime => "lm.creation_timestamp",
        Attr::LastUpdatedTimestamp | Attr::LastUpdateTime => "lm.last_updated_timestamp",
        _ => return None,
    })
}

pub(crate) fn push_logged_model_clause(sql: &mut Sql, clause: &Clause) -> Result<()> {
    match &clause.key {
        Key::Metric(key) => push_metric_condition(sql, "logged_model_metrics", "model_id", "lm.model_id", key, clause),
        Key::Param(key) => push_key_value_condition(sql, "logged_model_params", "model_id", "lm.model_id", key, clause),
        Key::Tag(key) => push_key_value_condition(sql, "logged_model_tags", "model_id", "lm.model_id", key, clause),
        Key::Attribute(attr) => {
            let column = logged_model_attribute_column(*attr).ok_or_else(|| unsupported(clause))?;
            if attr.is_numeric() { push_number_condition(sql, column, clause) } else { push_string_condition(sql, column, clause) }
        }
        Key::Dataset(_) => Err(unsupported(clause)),
    }
}

pub(crate) fn run_order_column(attr: Attr) -> Option<&'static str> {
    run_attribute_column(attr)
}

pub(crate) fn logged_model_order_column(attr: Attr) -> Option<&'static str> {
    logged_model_attribute_column(attr)
}

/// `view_type` as a lifecycle condition; shared by the experiment and run searches.
pub(crate) fn view_stages(view: ViewType) -> &'static [&'static str] {
    match view {
        ViewType::ActiveOnly => &["active"],
        ViewType::DeletedOnly => &["deleted"],
        ViewType::All => &["active", "deleted"],
    }
}
