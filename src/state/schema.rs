//! The store's schema, as ordered migrations written once for both backends.
//!
//! Every step is idempotent (`CREATE ... IF NOT EXISTS`, a column added only when it is
//! missing), so a journal made by any earlier version, before the schema was numbered,
//! is brought up to date by running every step; `schema_version` then records how far
//! it got, and later opens skip what is done. To change the schema, append a migration
//! to [`MIGRATIONS`] (never edit one that shipped) and add a test that opens a store of
//! the schema before it.

use anyhow::{Context, Result};

use super::exec::{Dialect, Exec, Value};

/// One idempotent step.
pub enum Step {
    /// SQL both dialects accept.
    Sql(&'static str),
    /// The same table in each dialect: PostgreSQL has no implicit `rowid`, so tables read
    /// in insertion order get a `rowid BIGSERIAL` column there.
    Each {
        /// For SQLite.
        sqlite: &'static str,
        /// For PostgreSQL.
        postgres: &'static str,
    },
    /// `ALTER TABLE table ADD COLUMN column ty`, when the column is missing.
    AddColumn(&'static str, &'static str, &'static str),
}

/// The migrations in order; the schema's version is how many have run.
pub const MIGRATIONS: &[&[Step]] = &[
    // 1: the journal, tallies and counters (0.1).
    &[Step::Sql(
        "CREATE TABLE IF NOT EXISTS sent (
             identity TEXT PRIMARY KEY, brevo_id TEXT NOT NULL, template BIGINT NOT NULL,
             recipient TEXT NOT NULL, sent_at TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS attempts (
             identity TEXT PRIMARY KEY, first_at TEXT NOT NULL, count BIGINT NOT NULL,
             open_since TEXT);
         CREATE TABLE IF NOT EXISTS tally (
             day TEXT NOT NULL, kind TEXT NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (day, kind));
         CREATE TABLE IF NOT EXISTS queue_tally (
             queue TEXT NOT NULL, day TEXT NOT NULL, kind TEXT NOT NULL, n BIGINT NOT NULL,
             PRIMARY KEY (queue, day, kind));
         CREATE TABLE IF NOT EXISTS counters (
             name TEXT NOT NULL, labels TEXT NOT NULL, value DOUBLE PRECISION NOT NULL,
             PRIMARY KEY (name, labels));
         CREATE TABLE IF NOT EXISTS parked (identity TEXT PRIMARY KEY, parked_at TEXT NOT NULL);",
    )],
    // 2: an attempt's unseen outcome is remembered (0.2).
    &[
        Step::AddColumn("attempts", "uncertain_since", "TEXT"),
        Step::AddColumn("attempts", "last_at", "TEXT"),
    ],
    // 3: the credits each run saw, to learn Brevo's daily reset (crate::day).
    &[
        Step::Each {
            sqlite: "CREATE TABLE IF NOT EXISTS credit_seen (
                 at BIGINT NOT NULL, credits DOUBLE PRECISION NOT NULL, plan TEXT NOT NULL,
                 limited BIGINT NOT NULL, command TEXT NOT NULL)",
            postgres: "CREATE TABLE IF NOT EXISTS credit_seen (rowid BIGSERIAL PRIMARY KEY,
                 at BIGINT NOT NULL, credits DOUBLE PRECISION NOT NULL, plan TEXT NOT NULL,
                 limited BIGINT NOT NULL, command TEXT NOT NULL)",
        },
        Step::Sql("CREATE INDEX IF NOT EXISTS credit_seen_at ON credit_seen (at)"),
    ],
    // 4: when the credits were asked for (NULL in older histories: taken as instant).
    &[Step::AddColumn("credit_seen", "asked", "BIGINT")],
    // 5: doctor's idempotency probe (made on first use before the schema was numbered).
    &[Step::Each {
        sqlite: "CREATE TABLE IF NOT EXISTS idempotency_probe (
             at TEXT NOT NULL, passed BIGINT NOT NULL, detail TEXT NOT NULL)",
        postgres: "CREATE TABLE IF NOT EXISTS idempotency_probe (rowid BIGSERIAL PRIMARY KEY,
             at TEXT NOT NULL, passed BIGINT NOT NULL, detail TEXT NOT NULL)",
    }],
    // 6: delivery events (`acaso-mail events`, crate::state::delivery).
    &[Step::Sql(super::delivery::TABLES)],
];

/// Whether `table` exists.
pub fn has_table(x: &mut dyn Exec, table: &str) -> Result<bool> {
    let sql = match x.dialect() {
        Dialect::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        Dialect::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_name = ?1"
        }
    };
    count(x, sql, &[table.into()])
}

fn has_column(x: &mut dyn Exec, table: &str, column: &str) -> Result<bool> {
    let sql = match x.dialect() {
        Dialect::Sqlite => "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
        Dialect::Postgres => {
            "SELECT COUNT(*) FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = ?1 AND column_name = ?2"
        }
    };
    count(x, sql, &[table.into(), column.into()])
}

fn count(x: &mut dyn Exec, sql: &str, params: &[Value]) -> Result<bool> {
    let rows = x.query(sql, params)?;
    Ok(rows.first().and_then(|r| r.first()).and_then(Value::int) > Some(0))
}

/// The schema's version: how many migrations have run (0 for a store from before they
/// were numbered, or a new one).
pub fn version(x: &mut dyn Exec) -> Result<usize> {
    if !has_table(x, "schema_version")? {
        return Ok(0);
    }
    let rows = x.query("SELECT MAX(version) FROM schema_version", &[])?;
    let v = rows.first().and_then(|r| r.first()).and_then(Value::int);
    Ok(v.and_then(|v| usize::try_from(v).ok()).unwrap_or(0))
}

/// Brings the schema up to date. The caller keeps other runs out meanwhile (the
/// PostgreSQL backend holds a lock for it; SQLite runs it inside its run lock or
/// with a file that only one host reaches).
pub fn migrate(x: &mut dyn Exec) -> Result<()> {
    let from = version(x)?;
    if from >= MIGRATIONS.len() {
        return Ok(());
    }
    x.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
        &[],
    )?;
    for (i, steps) in MIGRATIONS.iter().enumerate().skip(from) {
        for step in *steps {
            apply(x, step).with_context(|| format!("applying schema migration {}", i + 1))?;
        }
    }
    let to = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    x.execute("DELETE FROM schema_version", &[])?;
    x.execute(
        "INSERT INTO schema_version (version) VALUES (?1)",
        &[Value::Int(to)],
    )?;
    Ok(())
}

fn apply(x: &mut dyn Exec, step: &Step) -> Result<()> {
    let sql = match (step, x.dialect()) {
        (Step::Sql(sql), _) | (Step::Each { sqlite: sql, .. }, Dialect::Sqlite) => *sql,
        (Step::Each { postgres, .. }, Dialect::Postgres) => *postgres,
        (Step::AddColumn(table, column, ty), _) => {
            if !has_column(x, table, column)? {
                x.execute(
                    &format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"),
                    &[],
                )?;
            }
            return Ok(());
        }
    };
    for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        x.execute(statement, &[])?;
    }
    Ok(())
}
