//! Registered-model and model-version search filters (`plinth-filter` ASTs) rendered as SQL
//! conditions with binds, and their order-by columns.
//!
//! Registered models are aliased `rm`, versions `mv`. Tag conditions test a row with that key, as
//! the tracking filters do for runs (MLflow's SQL store joins the tag table): `tags.k != 'v'`
//! matches entities that have `k` with another value, `IS NULL` entities without `k`.

use plinth_filter::{Attr, Clause, Key, Op, OrderBy};
use plinth_store::{Error, Result};

use crate::filter_sql::{push_number_condition, push_string_condition, unsupported};
use crate::sql::Sql;

pub(crate) fn invalid_order(order: &OrderBy) -> Error {
    Error::invalid(format!("Invalid order_by clause '{order}'"))
}

/// `[NOT] EXISTS (SELECT 1 FROM <table> kv WHERE <join> AND kv.key = ? [AND kv.value OP ?])`.
fn push_tag_condition(sql: &mut Sql, table_and_join: &str, key: &str, clause: &Clause) -> Result<()> {
    let negated = clause.op == Op::IsNull;
    sql.push(if negated { "NOT EXISTS (SELECT 1 FROM " } else { "EXISTS (SELECT 1 FROM " })
        .push(table_and_join)
        .push(" AND kv.key = ")
        .bind(key);
    if !matches!(clause.op, Op::IsNull | Op::IsNotNull) {
        sql.push(" AND ");
        push_string_condition(sql, "kv.value", clause)?;
    }
    sql.push(")");
    Ok(())
}

pub(crate) fn push_model_clause(sql: &mut Sql, clause: &Clause) -> Result<()> {
    match &clause.key {
        Key::Tag(key) => push_tag_condition(sql, "registered_model_tags kv WHERE kv.name = rm.name", key, clause),
        Key::Attribute(Attr::Name) => push_string_condition(sql, "rm.name", clause),
        _ => Err(unsupported(clause)),
    }
}

pub(crate) fn push_version_clause(sql: &mut Sql, clause: &Clause) -> Result<()> {
    match &clause.key {
        Key::Tag(key) => push_tag_condition(sql, "model_version_tags kv WHERE kv.name = mv.name AND kv.version = mv.version", key, clause),
        Key::Attribute(Attr::Name) => push_string_condition(sql, "mv.name", clause),
        Key::Attribute(Attr::RunId) => push_string_condition(sql, "mv.run_id", clause),
        Key::Attribute(Attr::SourcePath) => push_string_condition(sql, "mv.source", clause),
        Key::Attribute(Attr::VersionNumber) => push_number_condition(sql, "mv.version", clause),
        _ => Err(unsupported(clause)),
    }
}

pub(crate) fn model_order_column(order: &OrderBy) -> Option<&'static str> {
    match &order.key {
        Key::Attribute(Attr::Name) => Some("rm.name"),
        Key::Attribute(Attr::CreationTimestamp | Attr::CreationTime) => Some("rm.creation_time"),
        Key::Attribute(Attr::LastUpdatedTimestamp | Attr::LastUpdateTime) => Some("rm.last_updated_time"),
        _ => None,
    }
}

pub(crate) fn version_order_column(order: &OrderBy) -> Option<&'static str> {
    match &order.key {
        Key::Attribute(Attr::Name) => Some("mv.name"),
        Key::Attribute(Attr::VersionNumber) => Some("mv.version"),
        Key::Attribute(Attr::CreationTimestamp | Attr::CreationTime) => Some("mv.creation_time"),
        Key::Attribute(Attr::LastUpdatedTimestamp | Attr::LastUpdateTime) => Some("mv.last_updated_time"),
        _ => None,
    }
}

/// ` AND …` limiting a registry search to the names in `restrict_to` (none: nothing) and, with
/// `exclude_prompts`, leaving out names that carry the prompt tag in `tag_table`.
pub(crate) fn push_scope(sql: &mut Sql, name_column: &str, tag_table: &str, restrict_to: Option<&[String]>, exclude_prompts: bool) {
    match restrict_to {
        Some([]) => {
            sql.push(" AND 1 = 0");
        }
        Some(names) => {
            sql.push(" AND ").push(name_column).push(" IN ").bind_list(names);
        }
        None => {}
    }
    if exclude_prompts {
        sql.push(" AND NOT EXISTS (SELECT 1 FROM ")
            .push(tag_table)
            .push(" p WHERE p.name = ")
            .push(name_column)
            .push(" AND p.key = ")
            .bind(plinth_store::registry::PROMPT_TAG)
            .push(" AND p.value = 'true')");
    }
}

#[cfg(test)]
mod tests {
    use plinth_filter::{Grammar, parse_filter};

    use super::*;
    use crate::Dialect;

    fn render(grammar: Grammar, filter: &str) -> Result<String> {
        let mut sql = Sql::new("");
        for (idx, clause) in parse_filter(grammar, filter).expect("filter").iter().enumerate() {
            if idx > 0 {
                sql.push(" AND ");
            }
            match grammar {
                Grammar::RegisteredModels => push_model_clause(&mut sql, clause)?,
                _ => push_version_clause(&mut sql, clause)?,
            }
        }
        Ok(sqlx::Execute::sql(sql.query(Dialect::Postgres)).as_str().to_owned())
    }

    #[test]
    fn clauses_render_with_binds() {
        assert_eq!(
            render(Grammar::RegisteredModels, "name LIKE 'a%' AND tags.team = 'x'").expect("sql"),
            "rm.name LIKE $1 AND EXISTS (SELECT 1 FROM registered_model_tags kv WHERE kv.name = rm.name AND kv.key = $2 AND kv.value = $3)"
        );
        assert_eq!(
            render(Grammar::ModelVersions, "version_number >= 3 AND run_id IN ('a', 'b')").expect("sql"),
            "mv.version >= $1 AND mv.run_id IN ($2, $3)"
        );
        assert_eq!(render(Grammar::ModelVersions, "source_path = 's'").expect("sql"), "mv.source = $1");
    }
}
