//! The state as `doctor` reads it (read-only: a check changes nothing), and the record
//! of the idempotency probe: whether Brevo refused a repeated key on this account.

use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{DB_FILE, Store};

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

const CREATE: &str = "CREATE TABLE IF NOT EXISTS idempotency_probe (
     at     TEXT NOT NULL,
     passed INTEGER NOT NULL,
     detail TEXT NOT NULL
 )";

impl Store {
    /// Opens an existing store for reading only, creating nothing; `None` when `dir`
    /// holds no store yet.
    pub fn open_read_only(dir: &Path) -> Result<Option<Store>> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let db = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {} to read it", path.display()))?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Some(Store { db }))
    }

    /// Records an idempotency probe's result (the table is made on first use).
    pub fn record_probe(&self, at: DateTime<Utc>, passed: bool, detail: &str) -> Result<()> {
        self.db
            .execute_batch(CREATE)
            .context("creating the probe table")?;
        self.db.execute(
            "INSERT INTO idempotency_probe (at, passed, detail) VALUES (?1, ?2, ?3)",
            params![at.to_rfc3339(), passed, detail],
        )?;
        Ok(())
    }

    /// The last idempotency probe's result, if one ran.
    pub fn last_probe(&self) -> Result<Option<ProbeResult>> {
        let has: i64 = self.db.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'idempotency_probe'",
            [],
            |r| r.get(0),
        )?;
        if has == 0 {
            return Ok(None);
        }
        let row: Option<(String, bool, String)> = self
            .db
            .query_row(
                "SELECT at, passed, detail FROM idempotency_probe ORDER BY rowid DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(row.and_then(|(at, passed, detail)| {
            let at = DateTime::parse_from_rfc3339(&at).ok()?.to_utc();
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
