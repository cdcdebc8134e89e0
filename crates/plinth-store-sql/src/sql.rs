//! A small SQL text builder with numbered binds, and the error and transaction plumbing.

use plinth_store::Error;
use sqlx::any::{Any, AnyArguments};
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Connection, Transaction};

use crate::{Dialect, SqlStore};

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    I64(i64),
    F64(f64),
    Text(String),
    NullText,
    NullI64,
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::I64(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Arg {
        Arg::F64(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_owned())
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(v)
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(v.clone())
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        v.map_or(Arg::NullText, Arg::from)
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        v.map_or(Arg::NullI64, Arg::I64)
    }
}

/// Marks a placeholder in `Sql::text`: `MARK`, the bind's index, `MARK_END`. Rendered per dialect.
const MARK: char = '\u{1}';
const MARK_END: char = '\u{2}';

/// SQL text plus its binds. Placeholders are rendered when the statement is built: `$N` for
/// PostgreSQL, anonymous `?` for SQLite, whose named-parameter lookup is linear per parameter
/// (a 9,000-value batch insert would spend most of its time there).
#[derive(Debug, Clone, Default)]
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub(crate) fn new(text: &str) -> Sql {
        Sql { text: text.to_owned(), args: Vec::new() }
    }

    pub(crate) fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    pub(crate) fn bind(&mut self, arg: impl Into<Arg>) -> &mut Sql {
        self.args.push(arg.into());
        let idx = self.args.len() - 1;
        self.push_mark(idx);
        self
    }

    /// Binds a value once; `reuse` writes further placeholders for it.
    pub(crate) fn bind_shared(&mut self, arg: impl Into<Arg>) -> SharedArg {
        self.args.push(arg.into());
        SharedArg(self.args.len() - 1)
    }

    /// A placeholder for a value bound with `bind_shared`.
    pub(crate) fn reuse(&mut self, arg: SharedArg) -> &mut Sql {
        self.push_mark(arg.0);
        self
    }

    fn push_mark(&mut self, idx: usize) {
        self.text.push(MARK);
        self.text.push_str(&idx.to_string());
        self.text.push(MARK_END);
    }

    /// Appends `($a, $b, …)` binding every item.
    pub(crate) fn bind_list<T: Into<Arg> + Clone>(&mut self, items: &[T]) -> &mut Sql {
        self.text.push('(');
        for (idx, it) in items.iter().enumerate() {
            if idx > 0 {
                self.text.push_str(", ");
            }
            self.bind(it.clone());
        }
        self.text.push(')');
        self
    }

    /// Appends ` LIMIT … OFFSET …` for `page`, asking one row more than the page holds, so
    /// `rows::decode_page` learns whether more follow.
    pub(crate) fn push_page(&mut self, page: &plinth_store::tracking::PageRequest) -> &mut Sql {
        self.push(" LIMIT ").bind(page.limit.max(0).saturating_add(1)).push(" OFFSET ").bind(page.offset.max(0))
    }

    /// The statement with its binds, placeholders rendered for `dialect`.
    pub(crate) fn query(self, dialect: Dialect) -> Query<'static, Any, AnyArguments> {
        let mut text = String::with_capacity(self.text.len());
        let mut order: Vec<usize> = Vec::with_capacity(self.args.len());
        let mut rest = self.text.as_str();
        while let Some(start) = rest.find(MARK) {
            text.push_str(&rest[..start]);
            let after = &rest[start + MARK.len_utf8()..];
            let end = after.find(MARK_END).expect("every mark is closed");
            let idx: usize = after[..end].parse().expect("mark holds an index");
            match dialect {
                Dialect::Postgres => {
                    text.push('$');
                    text.push_str(&(idx + 1).to_string());
                }
                Dialect::Sqlite => {
                    text.push('?');
                    order.push(idx);
                }
            }
            rest = &after[end + MARK_END.len_utf8()..];
        }
        text.push_str(rest);
        let args: Vec<Arg> = match dialect {
            Dialect::Postgres => self.args,
            Dialect::Sqlite if order.iter().enumerate().all(|(pos, idx)| pos == *idx) && order.len() == self.args.len() => self.args,
            Dialect::Sqlite => order.iter().map(|idx| self.args[*idx].clone()).collect(),
        };
        let mut q = sqlx::query(AssertSqlSafe(text));
        for arg in args {
            q = match arg {
                Arg::I64(v) => q.bind(v),
                Arg::F64(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::NullText => q.bind(None::<String>),
                Arg::NullI64 => q.bind(None::<i64>),
            };
        }
        q
    }
}

/// A value bound once and referenced by several placeholders.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SharedArg(usize);

/// An error inside a write transaction: a domain error, or a database error that may be retried.
#[derive(Debug)]
pub(crate) enum TxError {
    Store(Error),
    Sql(sqlx::Error),
}

impl From<Error> for TxError {
    fn from(e: Error) -> TxError {
        TxError::Store(e)
    }
}

impl From<sqlx::Error> for TxError {
    fn from(e: sqlx::Error) -> TxError {
        TxError::Sql(e)
    }
}

impl TxError {
    /// PostgreSQL's deadlock and serialization failures, and SQLite's busy errors: a retry may win.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            TxError::Sql(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("40001" | "40P01" | "5" | "6" | "517"))
            }
            _ => false,
        }
    }

    pub(crate) fn into_store(self) -> Error {
        match self {
            TxError::Store(e) => e,
            TxError::Sql(e) => sql_error(e),
        }
    }
}

/// The storage fault a database error reports: SQLite's `SQLITE_FULL` and `SQLITE_READONLY` (any
/// extended code of them), PostgreSQL's `disk_full`.
fn storage_fault(db: &dyn sqlx::error::DatabaseError) -> Option<plinth_core::StorageFault> {
    let code = db.code();
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // Extended result codes keep the primary code in their low byte.
        return match code.and_then(|c| c.parse::<i64>().ok()).map(|n| n & 0xff) {
            Some(13) => Some(plinth_core::StorageFault::Full),
            Some(8) => Some(plinth_core::StorageFault::Unwritable),
            _ => None,
        };
    }
    (code.as_deref() == Some("53100")).then_some(plinth_core::StorageFault::Full)
}

/// PostgreSQL going away under a request: the connection-exception class (`08…`) and the
/// shutdown codes (`57P01` admin shutdown, `57P02` crash shutdown, `57P03` cannot connect now).
fn is_server_gone(db: &dyn sqlx::error::DatabaseError) -> bool {
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_none()
        && db.code().is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03"))
}

/// Maps a database error that no caller handled to the port's error.
pub(crate) fn sql_error(e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &e
        && let Some(fault) = storage_fault(db.as_ref())
    {
        return Error::Unavailable { source: Box::new(fault) };
    }
    if let sqlx::Error::Database(db) = &e
        && is_server_gone(db.as_ref())
    {
        return Error::Unavailable { source: Box::new(e) };
    }
    if let sqlx::Error::Database(db) = &e {
        // SQLSTATE class 22 (data exception: a NUL byte in text, a LIKE pattern ending in the
        // escape character, a value out of range) is a problem with the request's values.
        if db.code().is_some_and(|c| c.starts_with("22")) {
            return Error::invalid(format!("a value in the request cannot be stored or compared: {}", db.message()));
        }
    }
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => Error::Unavailable { source: Box::new(e) },
        sqlx::Error::Io(_) => Error::Unavailable { source: Box::new(e) },
        other => Error::internal(other),
    }
}

pub(crate) fn is_unique_violation(e: &TxError) -> bool {
    match e {
        TxError::Sql(sqlx::Error::Database(db)) => db.is_unique_violation(),
        _ => false,
    }
}

pub(crate) type Tx = Transaction<'static, Any>;

impl SqlStore {
    pub(crate) async fn begin_write(&self) -> Result<Tx, TxError> {
        let statement = match self.dialect {
            Dialect::Sqlite => Some(sqlx::SqlSafeStr::into_sql_str("BEGIN IMMEDIATE")),
            Dialect::Postgres => None,
        };
        let conn = clean_connection(&self.writer).await?;
        Ok(Transaction::begin(conn, statement).await?)
    }

    pub(crate) async fn read_conn(&self) -> Result<PoolConnection<Any>, Error> {
        clean_connection(&self.reader).await.map_err(sql_error)
    }

    /// `FOR SHARE` on PostgreSQL (keeps the row from changing under the transaction); nothing on SQLite,
    /// whose single writer already excludes concurrent writes.
    pub(crate) fn for_share(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR SHARE",
        }
    }

    pub(crate) fn for_update(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }
}

/// A pooled connection inside no transaction. A transaction that failed leaves its connection
/// with a queued rollback; when that rollback cannot run (SQLite already rolled back by itself
/// after a failed COMMIT, as it may on a full disk) the connection would stay "inside" a
/// transaction forever and refuse every BEGIN. Such a connection is closed here, and the pool
/// opens a fresh one: no failure wedges the store until a restart.
async fn clean_connection(pool: &sqlx::AnyPool) -> Result<PoolConnection<Any>, sqlx::Error> {
    const ATTEMPTS: usize = 4;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let mut conn = pool.acquire().await?;
        if !conn.is_in_transaction() {
            return Ok(conn);
        }
        // A round trip runs whatever the connection has queued (the rollback) first.
        match conn.ping().await {
            Ok(()) if !conn.is_in_transaction() => return Ok(conn),
            Ok(()) => last = Some(sqlx::Error::InvalidSavePointStatement),
            Err(e) => last = Some(e),
        }
        tracing::warn!("closing a database connection left inside a failed transaction; the pool opens a fresh one");
        conn.close_on_drop();
    }
    Err(last.unwrap_or(sqlx::Error::PoolTimedOut))
}

/// Runs a write transaction, retrying it (a few times, with a short backoff) when the database
/// reports a deadlock or serialization failure. `$body` is an expression using `$tx: &mut Tx`
/// that evaluates to `Result<T, TxError>`. With a `$record` (a `plinth_store::audit::Record<T>`),
/// the change's audit events are built from the body's value and inserted in the same
/// transaction, just before `COMMIT`: the change commits with its record or not at all.
macro_rules! write_tx {
    ($store:expr, |$tx:ident| $body:expr) => {{ $crate::sql::write_tx!($store, &plinth_store::audit::Record::none(), |$tx| $body) }};
    ($store:expr, $record:expr, |$tx:ident| $body:expr) => {{
        let mut attempt: u32 = 0;
        loop {
            let res: Result<_, $crate::sql::TxError> = async {
                let mut guard = $store.begin_write().await?;
                let value = {
                    let $tx: &mut $crate::sql::Tx = &mut guard;
                    $body
                }?;
                for event in $record.events(&value) {
                    $crate::audit::insert(&mut guard, &event).await?;
                }
                guard.commit().await?;
                Ok(value)
            }
            .await;
            match res {
                Err(e) if e.is_retryable() && attempt < 8 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(2u64 << attempt)).await;
                }
                other => break other.map_err($crate::sql::TxError::into_store),
            }
        }
    }};
}
pub(crate) use write_tx;

/// The SQL operator of a filter comparison (`=`, `<>`, `<`, …); `None` for LIKE, IN and the null tests.
pub(crate) fn comparator(op: plinth_filter::Op) -> Option<&'static str> {
    use plinth_filter::Op;
    Some(match op {
        Op::Eq => " = ",
        Op::Ne => " <> ",
        Op::Gt => " > ",
        Op::Ge => " >= ",
        Op::Lt => " < ",
        Op::Le => " <= ",
        _ => return None,
    })
}

/// Escapes nothing: LIKE patterns are the user's, as in MLflow. Case-insensitive matching lowers both sides.
pub(crate) fn push_like(sql: &mut Sql, column: &str, pattern: &str, case_insensitive: bool) {
    if case_insensitive {
        sql.push("LOWER(").push(column).push(") LIKE LOWER(").bind(pattern).push(")");
    } else {
        sql.push(column).push(" LIKE ").bind(pattern);
    }
}
