//! The state as `doctor` reads it (read-only: a check changes nothing), and the record
//! of the idempotency probe: whether Brevo refused a repeated key on this account.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};

use super::exec::{Exec, Sqlite, Value};
use super::{DB_FILE, Place, Store, describe, pg, schema};

/// The last idempotency probe's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// When it ran.
    pub at: DateTime<Utc>,
    /// Whether Brevo refused the repeated key (`duplicate_parameter`).
    pub passed: bool,
    /// What happened, in words.
    pub detail: String,
}

impl Store {
    /// Opens an existing store for reading only, creating nothing; `None` when there is
    /// no store there yet.
    pub fn open_read_only<'a>(place: impl Into<Place<'a>>) -> Result<Option<Store>> {
        let place = place.into();
        let mut x: Box<dyn Exec> = match place.url {
            Some(url) => {
                let mut pg = pg::Pg::connect(url, place.timeout)?;
                pg.execute("SET default_transaction_read_only = on", &[])?;
                Box::new(pg)
            }
            None => {
                let path = place.dir.join(DB_FILE);
                if !path.exists() {
                    return Ok(None);
                }
                let db = Connection::open_with_flags(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .with_context(|| format!("opening {} to read it", path.display()))?;
                Box::new(Sqlite::new(db, Duration::from_secs(5), false)?)
            }
        };
        if place.url.is_some() && !schema::has_table(x.as_mut(), "sent")? {
            return Ok(None);
        }
        Ok(Some(Store {
            x: Mutex::new(x),
            place: describe(place),
            _lock: None,
        }))
    }

    /// Records an idempotency probe's result.
    pub fn record_probe(&self, at: DateTime<Utc>, passed: bool, detail: &str) -> Result<()> {
        self.run(
            "INSERT INTO idempotency_probe (at, passed, detail) VALUES (?1, ?2, ?3)",
            &[at.to_rfc3339().into(), passed.into(), detail.into()],
        )?;
        Ok(())
    }

    /// The last idempotency probe's result, if one ran.
    pub fn last_probe(&self) -> Result<Option<ProbeResult>> {
        // A store read before its schema was brought up to date may lack the table.
        if !schema::has_table(self.x().as_mut(), "idempotency_probe")? {
            return Ok(None);
        }
        let row = self.first(
            "SELECT at, passed, detail FROM idempotency_probe ORDER BY rowid DESC LIMIT 1",
            &[],
        )?;
        Ok(row.and_then(|r| {
            let at = DateTime::parse_from_rfc3339(&r.first()?.text()?)
                .ok()?
                .to_utc();
            let passed = r.get(1).and_then(Value::int)? != 0;
            let detail = r.get(2).and_then(Value::text)?;
            Some(ProbeResult { at, passed, detail })
        }))
    }

    /// Whether the drain may rely on Brevo's idempotency key: not when the last probe
    /// showed Brevo accepting a repeated key (no probe: the documented behaviour).
    pub fn key_trusted(&self) -> Result<bool> {
        Ok(self.last_probe()?.is_none_or(|p| p.passed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_probe_is_remembered_and_read_without_writing() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(Store::open_read_only(dir.path()).expect("read").is_none());
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.last_probe().expect("none"), None);
        assert!(store.key_trusted().expect("trusted"));
        let t = |s: &str| DateTime::parse_from_rfc3339(s).expect("t").to_utc();
        store
            .record_probe(t("2026-12-01T10:00:00Z"), true, "refused")
            .expect("record");
        store
            .record_probe(t("2026-12-02T10:00:00Z"), false, "accepted twice")
            .expect("record");
        let ro = Store::open_read_only(dir.path())
            .expect("read")
            .expect("a store");
        let last = ro.last_probe().expect("read").expect("a probe");
        assert_eq!((last.at, last.passed), (t("2026-12-02T10:00:00Z"), false));
        assert!(!ro.key_trusted().expect("read"));
        assert!(
            ro.record_probe(t("2026-12-03T10:00:00Z"), true, "x")
                .is_err()
        );
    }
}
