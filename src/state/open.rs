//! Opening the store: SQLite in the state directory, or PostgreSQL at the state URL, the
//! schema brought up to date either way; alone, or under the run lock.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::exec::{self, Exec, Value};
use super::lock::{self, RunLock};
use super::pg::{self, Pg};
use super::{DB_FILE, Place, Store, describe, schema};

/// The advisory-lock key that makes hosts bring a new schema up to date one at a time.
const MIGRATION_KEY: &str = "7017559792787746157";

impl Store {
    /// Opens (creating) the store: SQLite in the state directory, or PostgreSQL when a
    /// URL is set; the schema is brought up to date either way.
    pub fn open<'a>(place: impl Into<Place<'a>>) -> Result<Self> {
        let place = place.into();
        let name = describe(place);
        let x: Box<dyn Exec> = match place.url {
            Some(url) => Box::new(migrated(Pg::connect(url, place.timeout)?, place.timeout)?),
            None => Box::new(sqlite(place.dir)?),
        };
        Ok(Store::of(x, name, None))
    }

    /// Takes the run lock, waiting up to `wait` for a run in progress to finish (exit 6
    /// when it stays held), and opens the store under it. In PostgreSQL the lock is
    /// held by the store's own connection: a run that loses that connection loses the
    /// lock and the store together, so its next store call fails (exit 4) instead of
    /// the run going on unlocked beside another host's.
    pub fn locked<'a>(place: impl Into<Place<'a>>, wait: Duration) -> Result<Self> {
        let place = place.into();
        let name = describe(place);
        match place.url {
            Some(url) => {
                let pg = migrated(pg::lock(url, wait, place.timeout)?, place.timeout)?;
                Ok(Store::of(Box::new(pg), name, None))
            }
            None => {
                let held = lock::lock(place, wait)?;
                Ok(Store::of(Box::new(sqlite(place.dir)?), name, Some(held)))
            }
        }
    }

    fn of(x: Box<dyn Exec>, place: String, lock: Option<RunLock>) -> Store {
        Store {
            x: Mutex::new(x),
            place,
            _lock: lock,
        }
    }
}

/// The schema brought up to date on this connection. Two hosts opening a new database
/// at once: one migrates at a time; a host stuck mid-migration holds the others no
/// longer than `timeout` (a poll on this host's clock, not the server's `lock_timeout`).
fn migrated(mut pg: Pg, timeout: Duration) -> Result<Pg> {
    let start = Instant::now();
    let take = format!("SELECT pg_try_advisory_lock({MIGRATION_KEY})::int");
    while pg
        .query(&take, &[])?
        .first()
        .and_then(|r| r.first().and_then(Value::int))
        != Some(1)
    {
        if start.elapsed() >= timeout {
            anyhow::bail!(
                "another host has been bringing the state schema in PostgreSQL up to date for over {}s; try again, or see who holds advisory lock {MIGRATION_KEY} (pg_locks)",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = schema::migrate(&mut pg);
    pg.execute(&format!("SELECT pg_advisory_unlock({MIGRATION_KEY})"), &[])?;
    done.context("bringing the state schema in PostgreSQL up to date")?;
    Ok(pg)
}

/// The SQLite journal in the state directory, created private (0700, 0600) and brought
/// up to date.
fn sqlite(dir: &Path) -> Result<exec::Sqlite> {
    super::private::state_dir(dir)
        .with_context(|| format!("creating state directory {}", dir.display()))?;
    let path = dir.join(DB_FILE);
    super::private::state_file(&path).with_context(|| format!("creating {}", path.display()))?;
    let db =
        rusqlite::Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut db = exec::Sqlite::new(db, Duration::from_secs(30), true)?;
    schema::migrate(&mut db).context("creating the state tables")?;
    Ok(db)
}
