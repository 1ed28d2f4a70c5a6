//! The one seam between the store's queries and a database: a value type both backends
//! bind and read, the [`Exec`] trait each backend implements, and SQLite's.
//!
//! Every query is written once, in the SQL both SQLite and PostgreSQL accept, with
//! numbered placeholders `?1`, `?2`, ...; the PostgreSQL backend turns them into `$1`,
//! `$2` ([`numbered_to_dollar`]). Integers are `BIGINT` (i64), reals `DOUBLE PRECISION`
//! (f64), everything else `TEXT`; booleans are stored as 0 and 1.

use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::types::{ToSqlOutput, ValueRef};

/// A value bound to a placeholder or read from a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer (`BIGINT`).
    Int(i64),
    /// A real (`DOUBLE PRECISION`).
    Real(f64),
    /// Text.
    Text(String),
}

impl Value {
    /// The integer, if it is one (a real is truncated).
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            #[allow(clippy::cast_possible_truncation)]
            Value::Real(r) => Some(*r as i64),
            _ => None,
        }
    }

    /// The real, if it is a number.
    pub fn real(&self) -> Option<f64> {
        match self {
            #[allow(clippy::cast_precision_loss)]
            Value::Int(n) => Some(*n as f64),
            Value::Real(r) => Some(*r),
            _ => None,
        }
    }

    /// The text, if it is text.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Text(t) => Some(t.clone()),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(t: &str) -> Self {
        Value::Text(t.to_string())
    }
}

impl From<String> for Value {
    fn from(t: String) -> Self {
        Value::Text(t)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<f64> for Value {
    fn from(r: f64) -> Self {
        Value::Real(r)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Int(i64::from(b))
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// One row: its columns in order.
pub type Row = Vec<Value>;

/// Which SQL dialect a backend speaks, for the few statements that differ (the
/// catalogue look-ups, and `CREATE TABLE` of a table ordered by `rowid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite, in the state directory.
    Sqlite,
    /// PostgreSQL, at `--state-url`.
    Postgres,
}

/// What a backend does; every query of the store is written once over it.
pub trait Exec: Send {
    /// The backend's dialect.
    fn dialect(&self) -> Dialect;
    /// Runs one statement; returns the rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64>;
    /// Runs one query; returns its rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    /// Runs one statement once per parameter row, all in one transaction.
    fn execute_all(&mut self, sql: &str, rows: &[Vec<Value>]) -> Result<u64>;
    /// Runs statements in order, all in one transaction; returns the rows each changed.
    fn execute_each(&mut self, stmts: &[(&'static str, Vec<Value>)]) -> Result<Vec<u64>>;
}

/// `?N` placeholders as PostgreSQL's `$N` (outside quoted text).
pub fn numbered_to_dollar(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => quoted = !quoted,
            '?' if !quoted => {
                out.push('$');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// SQLite in one file.
pub struct Sqlite {
    db: rusqlite::Connection,
}

impl Sqlite {
    /// Wraps an open connection: WAL and `synchronous = FULL` (a commit is on disk when
    /// it returns, before the mail is acked), and a wait of `busy` for another writer.
    pub fn new(db: rusqlite::Connection, busy: Duration, write: bool) -> Result<Self> {
        db.busy_timeout(busy)?;
        if write {
            db.pragma_update(None, "journal_mode", "WAL")?;
            db.pragma_update(None, "synchronous", "FULL")?;
        }
        Ok(Sqlite { db })
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(n) => ToSqlOutput::Borrowed(ValueRef::Integer(*n)),
            Value::Real(r) => ToSqlOutput::Borrowed(ValueRef::Real(*r)),
            Value::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}

fn sqlite_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Int(n),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into()),
    }
}

impl Exec for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut stmt = self.db.prepare_cached(sql)?;
        let n = stmt.execute(rusqlite::params_from_iter(params))?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut stmt = self.db.prepare_cached(sql)?;
        let width = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(sqlite_value(row.get_ref(i)?));
            }
            out.push(values);
        }
        Ok(out)
    }

    fn execute_all(&mut self, sql: &str, rows: &[Vec<Value>]) -> Result<u64> {
        let tx = self.db.transaction().context("starting a transaction")?;
        let mut n = 0;
        {
            let mut stmt = tx.prepare_cached(sql)?;
            for row in rows {
                n += stmt.execute(rusqlite::params_from_iter(row))?;
            }
        }
        tx.commit()?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    fn execute_each(&mut self, stmts: &[(&'static str, Vec<Value>)]) -> Result<Vec<u64>> {
        let tx = self.db.transaction().context("starting a transaction")?;
        let mut changed = Vec::with_capacity(stmts.len());
        for (sql, params) in stmts {
            let n = tx
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params))?;
            changed.push(u64::try_from(n).unwrap_or(u64::MAX));
        }
        tx.commit()?;
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_the_postgres_way_outside_quotes() {
        assert_eq!(
            numbered_to_dollar("SELECT '?1', x FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?1', x FROM t WHERE a = $1 AND b = $12"
        );
    }
}
