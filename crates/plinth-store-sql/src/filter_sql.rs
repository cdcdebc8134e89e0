//! Filter conditions both searches render the same way (tracking's runs, experiments and logged
//! models; the registry's models and versions). Which comparators reach them is `plinth-filter`'s
//! grammar's decision; these render what it accepted.

use plinth_filter::{Clause, Op, Value};
use plinth_store::{Error, Result};

use crate::sql::{Sql, comparator, push_like};

pub(crate) fn unsupported(clause: &Clause) -> Error {
    Error::invalid(format!("Invalid clause '{clause}': unsupported comparison for this entity"))
}

/// `column OP value` for a string-valued column (`=`, `!=`, `LIKE`, `ILIKE`, `IN`, `NOT IN`).
pub(crate) fn push_string_condition(sql: &mut Sql, column: &str, clause: &Clause) -> Result<()> {
    match (&clause.op, &clause.value) {
        (Op::Like, Value::String(p)) => push_like(sql, column, p, false),
        (Op::ILike, Value::String(p)) => push_like(sql, column, p, true),
        (Op::In, Value::List(items)) => {
            sql.push(column).push(" IN ").bind_list(items);
        }
        (Op::NotIn, Value::List(items)) => {
            sql.push(column).push(" NOT IN ").bind_list(items);
        }
        (op, Value::String(s)) => {
            let cmp = comparator(*op).ok_or_else(|| unsupported(clause))?;
            sql.push(column).push(cmp).bind(s.as_str());
        }
        _ => return Err(unsupported(clause)),
    }
    Ok(())
}

/// `column OP number` for an integer-valued column.
pub(crate) fn push_number_condition(sql: &mut Sql, column: &str, clause: &Clause) -> Result<()> {
    let Value::Number(n) = clause.value else { return Err(unsupported(clause)) };
    let cmp = comparator(clause.op).ok_or_else(|| unsupported(clause))?;
    sql.push(column).push(cmp);
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        sql.bind(n as i64);
    } else {
        sql.bind(n);
    }
    Ok(())
}
