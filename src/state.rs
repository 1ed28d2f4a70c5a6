//! The local state under `--state-dir`: a SQLite journal of every mail Brevo accepted
//! (written before the mail is acked, so a redelivered mail is never sent twice), the
//! per-day tallies that `stats` shows, and the lock that keeps runs from overlapping.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Failure;

mod delivery;
mod probe;

pub use delivery::{EVENTS_COUNTER, ReadPosition, Recorded, Suppression};
pub use probe::ProbeResult;

/// The journal's file name in the state directory.
pub const DB_FILE: &str = "state.sqlite3";

/// The sent-mail journal and tallies.
pub struct Store {
    db: Connection,
}

/// What the journal knows of earlier sends of a mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prior {
    /// How many sends were started before this one.
    pub attempts: u32,
    /// When the first attempt whose outcome nobody saw started (the run died, or the
    /// connection broke after the request went out): Brevo may have accepted it then.
    /// A later definite refusal does not clear it: it does not prove that attempt failed.
    pub uncertain_since: Option<DateTime<Utc>>,
    /// When the latest earlier attempt started: Brevo's log lists a mail only some
    /// minutes after it accepted it.
    pub last_at: Option<DateTime<Utc>>,
}

/// Since when a mail is uncertain, and when its latest attempt started.
pub type Uncertainty = (DateTime<Utc>, Option<DateTime<Utc>>);

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its answer was seen (accepted, refused, or it never left).
    Known,
    /// It may or may not have reached Brevo (a timeout, a connection broken mid-way).
    Unknown,
}

/// Per-day tallies.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct DayTally {
    /// Mails Brevo accepted.
    pub sent: u64,
    /// Sends that failed (retried or parked).
    pub failed: u64,
    /// Mails set aside because their deadline passed.
    pub expired: u64,
    /// Mails parked for any reason (including expired).
    pub parked: u64,
}

impl Store {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        // Security hook: 0700 directory, 0600 files (crate::private).
        crate::private::state_dir(dir)
            .with_context(|| format!("creating state directory {}", dir.display()))?;
        let path = dir.join(DB_FILE);
        crate::private::state_file(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        let db = Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        db.busy_timeout(Duration::from_secs(30))?;
        // WAL + FULL: a commit is on disk when it returns, before we ack the mail.
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS sent (
                 identity   TEXT PRIMARY KEY,
                 brevo_id   TEXT NOT NULL,
                 template   INTEGER NOT NULL,
                 recipient  TEXT NOT NULL,
                 sent_at    TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS attempts (
                 identity   TEXT PRIMARY KEY,
                 first_at   TEXT NOT NULL,
                 count      INTEGER NOT NULL,
                 open_since TEXT
             );
             CREATE TABLE IF NOT EXISTS tally (
                 day   TEXT NOT NULL,
                 kind  TEXT NOT NULL,
                 n     INTEGER NOT NULL,
                 PRIMARY KEY (day, kind)
             );
             CREATE TABLE IF NOT EXISTS queue_tally (
                 queue TEXT NOT NULL,
                 day   TEXT NOT NULL,
                 kind  TEXT NOT NULL,
                 n     INTEGER NOT NULL,
                 PRIMARY KEY (queue, day, kind)
             );
             CREATE TABLE IF NOT EXISTS counters (
                 name   TEXT NOT NULL,
                 labels TEXT NOT NULL,
                 value  REAL NOT NULL,
                 PRIMARY KEY (name, labels)
             );
             CREATE TABLE IF NOT EXISTS parked (
                 identity  TEXT PRIMARY KEY,
                 parked_at TEXT NOT NULL
             );",
        )
        .context("creating the state tables")?;
        // Journals from before 0.2 lack the column that remembers an unseen outcome.
        for column in ["uncertain_since", "last_at"] {
            let has: bool = db.query_row(
                "SELECT COUNT(*) FROM pragma_table_info('attempts') WHERE name = ?1",
                [column],
                |r| r.get::<_, i64>(0),
            )? > 0;
            if !has {
                db.execute_batch(&format!("ALTER TABLE attempts ADD COLUMN {column} TEXT"))
                    .with_context(|| format!("adding {column} to the journal"))?;
            }
        }
        // Brevo's day (crate::day): the credits each run saw, to learn when they reset.
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS credit_seen (
                 at      INTEGER NOT NULL,
                 credits REAL NOT NULL,
                 plan    TEXT NOT NULL,
                 limited INTEGER NOT NULL,
                 command TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS credit_seen_at ON credit_seen (at);",
        )
        .context("creating the credit history")?;
        // When the request for the credits went out (`at` is when Brevo answered); a
        // history from before it has NULL there: the reading is taken as instant.
        let has_asked: bool = db.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('credit_seen') WHERE name = 'asked'",
            [],
            |r| r.get::<_, i64>(0),
        )? > 0;
        if !has_asked {
            db.execute_batch("ALTER TABLE credit_seen ADD COLUMN asked INTEGER")
                .context("adding asked to the credit history")?;
        }
        Ok(Store { db })
    }

    /// Whether Brevo already accepted the mail with this identity.
    pub fn is_sent(&self, identity: &str) -> Result<bool> {
        Ok(self
            .db
            .query_row("SELECT 1 FROM sent WHERE identity = ?1", [identity], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    /// Notes, durably, that a send of this identity is about to start, and returns what
    /// is known of the earlier ones. The attempt stays *open* until [`Store::end_send`]:
    /// an attempt still open when the mail comes back is one whose outcome nobody saw
    /// (the run died), and from then on the mail is uncertain.
    pub fn begin_send(&self, identity: &str, now: DateTime<Utc>) -> Result<Prior> {
        type Row = (u32, Option<String>, Option<String>, Option<String>);
        let before: Option<Row> = self
            .db
            .query_row(
                "SELECT count, open_since, uncertain_since, COALESCE(last_at, first_at)
                 FROM attempts WHERE identity = ?1",
                [identity],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let (attempts, open, uncertain, last) = before.unwrap_or((0, None, None, None));
        // The first unseen outcome is kept: Brevo's window counts from its acceptance.
        let uncertain = uncertain.or(open);
        self.db.execute(
            "INSERT INTO attempts (identity, first_at, count, open_since, uncertain_since, last_at)
             VALUES (?1, ?2, 1, ?2, ?3, ?2)
             ON CONFLICT(identity) DO UPDATE SET count = count + 1, last_at = excluded.last_at,
                 open_since = excluded.open_since, uncertain_since = excluded.uncertain_since",
            params![identity, now.to_rfc3339(), uncertain],
        )?;
        let time = |t: Option<String>| {
            t.as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.to_utc())
        };
        Ok(Prior {
            attempts,
            uncertain_since: time(uncertain),
            last_at: time(last),
        })
    }

    /// Closes the attempt. An [`Outcome::Unknown`] one makes the mail uncertain from the
    /// time the attempt started (unless it already was, from an earlier time).
    pub fn end_send(&self, identity: &str, outcome: Outcome) -> Result<()> {
        let sql = match outcome {
            Outcome::Known => "UPDATE attempts SET open_since = NULL WHERE identity = ?1",
            Outcome::Unknown => {
                "UPDATE attempts SET uncertain_since = COALESCE(uncertain_since, open_since),
                     open_since = NULL WHERE identity = ?1"
            }
        };
        self.db.execute(sql, [identity])?;
        Ok(())
    }

    /// When an attempt of this mail whose answer nobody saw started, if one did (an
    /// attempt still open counts: its run died), and when the latest attempt started.
    pub fn uncertainty(&self, identity: &str) -> Result<Option<Uncertainty>> {
        let row: Option<(Option<String>, Option<String>)> = self
            .db
            .query_row(
                "SELECT COALESCE(uncertain_since, open_since), COALESCE(last_at, first_at)
                 FROM attempts WHERE identity = ?1",
                [identity],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let time = |t: Option<String>| {
            t.as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.to_utc())
        };
        Ok(row.and_then(|(since, last)| time(since).map(|s| (s, time(last)))))
    }

    /// Makes the mail uncertain from `since` (unless it already was): Brevo refused its
    /// key as a repeat, so some attempt may have been accepted.
    pub fn mark_uncertain(&self, identity: &str, since: DateTime<Utc>) -> Result<()> {
        self.db.execute(
            "UPDATE attempts SET uncertain_since = COALESCE(uncertain_since, ?2) WHERE identity = ?1",
            params![identity, since.to_rfc3339()],
        )?;
        Ok(())
    }

    /// Forgets that an earlier attempt's outcome was unknown (Brevo's log showed it was
    /// not sent).
    pub fn clear_uncertain(&self, identity: &str) -> Result<()> {
        self.db.execute(
            "UPDATE attempts SET uncertain_since = NULL WHERE identity = ?1",
            [identity],
        )?;
        Ok(())
    }

    /// Records an accepted send, durably. Call before acking the mail.
    pub fn record_sent(
        &self,
        identity: &str,
        brevo_id: &str,
        template: u32,
        recipient: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.db
            .execute(
                "INSERT OR IGNORE INTO sent (identity, brevo_id, template, recipient, sent_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![identity, brevo_id, template, recipient, now.to_rfc3339()],
            )
            .context("recording a sent mail in the state store")?;
        Ok(())
    }

    /// Adds `n` to a queue's tally of `kind` (sent, failed, expired, parked) for a day.
    /// (The table `tally` of older versions counted every queue together; it is left
    /// as it was and no longer read.)
    pub fn add_tally(&self, queue: &str, day: NaiveDate, kind: &str, n: u64) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.db.execute(
            "INSERT INTO queue_tally (queue, day, kind, n) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(queue, day, kind) DO UPDATE SET n = n + excluded.n",
            params![
                queue,
                day.to_string(),
                kind,
                i64::try_from(n).unwrap_or(i64::MAX)
            ],
        )?;
        Ok(())
    }

    /// A queue's tallies for a day.
    pub fn tally(&self, queue: &str, day: NaiveDate) -> Result<DayTally> {
        let mut stmt = self
            .db
            .prepare("SELECT kind, n FROM queue_tally WHERE queue = ?1 AND day = ?2")?;
        let mut t = DayTally::default();
        let rows = stmt.query_map(params![queue, day.to_string()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (kind, n) = row?;
            let n = u64::try_from(n).unwrap_or(0);
            match kind.as_str() {
                "sent" => t.sent = n,
                "failed" => t.failed = n,
                "expired" => t.expired = n,
                "parked" => t.parked = n,
                _ => {}
            }
        }
        Ok(t)
    }

    /// Adds to a cumulative counter (metrics that must not reset between runs).
    pub fn add_counter(&self, name: &str, labels: &str, by: f64) -> Result<()> {
        self.db.execute(
            "INSERT INTO counters (name, labels, value) VALUES (?1, ?2, ?3)
             ON CONFLICT(name, labels) DO UPDATE SET value = value + excluded.value",
            params![name, labels, by],
        )?;
        Ok(())
    }

    /// Sets a stored value outright (a gauge that must outlive the run, such as the
    /// last success time).
    pub fn set_value(&self, name: &str, labels: &str, value: f64) -> Result<()> {
        self.db.execute(
            "INSERT INTO counters (name, labels, value) VALUES (?1, ?2, ?3)
             ON CONFLICT(name, labels) DO UPDATE SET value = excluded.value",
            params![name, labels, value],
        )?;
        Ok(())
    }

    /// Every stored counter and value: (name, labels, value).
    pub fn counters(&self) -> Result<Vec<(String, String, f64)>> {
        let mut stmt = self
            .db
            .prepare("SELECT name, labels, value FROM counters ORDER BY name, labels")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Records, durably, that a copy of each of these mails is about to be published to
    /// the parking queue: from then on, a copy *may* be parked. A run that dies before
    /// acking the original leaves it in its queue; the next run that meets it checks the
    /// parking queue ([`Store::may_be_parked`] first) and drops it when a copy is there.
    pub fn record_parking<'a>(
        &self,
        identities: impl IntoIterator<Item = &'a str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let tx = self.db.unchecked_transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO parked (identity, parked_at) VALUES (?1, ?2)",
            )?;
            let at = at.to_rfc3339();
            for id in identities {
                insert.execute(params![id, at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Whether a run of this journal ever sent a copy of this mail to the parking queue
    /// (within the journal's memory): only then may a copy be there, and only then is
    /// the parking queue worth looking at before handling the mail. It says nothing of
    /// whether the copy is still there (it may have been replayed or purged since).
    pub fn may_be_parked(&self, identity: &str) -> Result<bool> {
        Ok(self
            .db
            .query_row(
                "SELECT 1 FROM parked WHERE identity = ?1",
                [identity],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Forgets sent records, attempts and parkings from before `before` (they only
    /// matter while a redelivery is possible); returns how many rows went.
    pub fn prune(&self, before: DateTime<Utc>) -> Result<usize> {
        let cut = before.to_rfc3339();
        let mut n = 0;
        for sql in [
            "DELETE FROM sent WHERE sent_at < ?1",
            "DELETE FROM attempts WHERE first_at < ?1",
            "DELETE FROM parked WHERE parked_at < ?1",
        ] {
            n += self.db.execute(sql, [&cut])?;
        }
        Ok(n)
    }
}

/// An exclusive lock on the state directory, held for the life of the value.
pub struct RunLock {
    _file: File,
}

/// Takes the run lock, waiting up to `wait` for a run in progress to finish.
pub fn lock(dir: &Path, wait: Duration) -> Result<RunLock> {
    // Security hook: 0700 directory, 0600 lock file (crate::private).
    crate::private::state_dir(dir)
        .with_context(|| format!("creating state directory {}", dir.display()))?;
    let path = dir.join("run.lock");
    crate::private::state_file(&path)
        .with_context(|| format!("creating lock file {}", path.display()))?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(RunLock { _file: file }),
            // A signal ends the wait at once: the run has done nothing yet.
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < wait => {
                if let Some(sig) = crate::signal::received() {
                    return Err(Failure::Interrupted(sig).into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Failure::Locked(format!(
                    "another acaso-mail run holds {} (waited {}s); it will finish on its own, or raise --lock-wait",
                    path.display(),
                    wait.as_secs()
                ))
                .into());
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
}

/// A reading of the credits: (order recorded, Unix seconds when it was asked for and
/// when Brevo answered, credits, plan type, counted in credits).
pub type CreditReading = (i64, i64, i64, f64, String, bool);

impl Store {
    /// Records the credits a run (`command`) asked for at `when.0` and Brevo answered
    /// with at `when.1`, and forgets the readings older than `keep`: Brevo's daily reset is learned
    /// from them.
    ///
    /// `keep` is how long, and the wall clock the caller read. "Older" counts back from the
    /// answer or that wall clock, whichever is earlier: a run given a `--now` far in the
    /// future must not erase the real history, and one given a past `--now` erases nothing
    /// a run at the real time would keep. The clock is the caller's, so tests set their own.
    pub fn record_credits(
        &self,
        when: (DateTime<Utc>, DateTime<Utc>),
        credits: f64,
        plan: &str,
        limited: bool,
        command: &str,
        keep: (chrono::Duration, DateTime<Utc>),
    ) -> Result<()> {
        let (asked, at) = when;
        let (keep, wall) = keep;
        let cut = at.min(wall).timestamp().saturating_sub(keep.num_seconds());
        let (asked, at) = (asked.min(at).timestamp(), at.timestamp());
        self.db.execute(
            "INSERT INTO credit_seen (asked, at, credits, plan, limited, command) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![asked, at, credits, plan, limited, command],
        )?;
        self.db
            .execute("DELETE FROM credit_seen WHERE at < ?1", [cut])?;
        Ok(())
    }

    /// Every kept reading of the credits, in the order they were recorded.
    pub fn credit_history(&self) -> Result<Vec<CreditReading>> {
        let mut stmt = self.db.prepare(
            "SELECT rowid, COALESCE(asked, at), at, credits, plan, limited FROM credit_seen ORDER BY rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// When `command` last read the credits, if it did in the kept history.
    pub fn last_reading_by(&self, command: &str) -> Result<Option<DateTime<Utc>>> {
        let at: Option<i64> = self.db.query_row(
            "SELECT MAX(at) FROM credit_seen WHERE command = ?1",
            [command],
            |r| r.get(0),
        )?;
        Ok(at.and_then(|a| DateTime::from_timestamp(a, 0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_remembers_sends_and_attempts() {
        let dir = tempfile::tempdir().expect("tmp");
        let now = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .expect("instant")
            .to_utc();
        {
            let s = Store::open(dir.path()).expect("open");
            assert!(!s.is_sent("a").expect("q"));
            let first = s.begin_send("a", now).expect("attempt");
            assert_eq!(
                first,
                Prior {
                    attempts: 0,
                    uncertain_since: None,
                    last_at: None,
                }
            );
            // The first attempt's outcome was never seen (the run died): uncertain since.
            let later = now + chrono::Duration::minutes(20);
            let second = s.begin_send("a", later).expect("attempt");
            assert_eq!(second.attempts, 1);
            assert_eq!(
                second.uncertain_since.map(|t| t.timestamp()),
                Some(now.timestamp())
            );
            // A definite answer to a later attempt does not clear it, and a third attempt
            // still counts from the first unseen one, not the latest.
            s.end_send("a", Outcome::Known).expect("end");
            let third = s.begin_send("a", later).expect("attempt");
            assert_eq!(
                third.uncertain_since.map(|t| t.timestamp()),
                Some(now.timestamp())
            );
            s.end_send("a", Outcome::Known).expect("end");
            // An attempt that timed out makes a fresh mail uncertain from its start.
            s.begin_send("b", later).expect("attempt");
            s.end_send("b", Outcome::Unknown).expect("end");
            let b = s
                .begin_send("b", later + chrono::Duration::minutes(5))
                .expect("b");
            assert_eq!(
                b.uncertain_since.map(|t| t.timestamp()),
                Some(later.timestamp())
            );
            s.end_send("b", Outcome::Known).expect("end");
            let c = s.begin_send("c", now).expect("c");
            s.end_send("c", Outcome::Known).expect("end");
            assert_eq!(c.uncertain_since, None);
            assert_eq!(s.begin_send("c", now).expect("c").uncertain_since, None);
            s.record_sent("a", "<id>", 9, "x@example.org", now)
                .expect("record");
            s.record_sent("a", "<id2>", 9, "x@example.org", now)
                .expect("idempotent");
        }
        let s = Store::open(dir.path()).expect("reopen");
        assert!(s.is_sent("a").expect("q"));
        let day = now.date_naive();
        s.add_tally("q", day, "sent", 2).expect("tally");
        s.add_tally("q", day, "sent", 3).expect("tally");
        s.add_tally("q", day, "failed", 1).expect("tally");
        s.add_tally("other", day, "parked", 4).expect("tally");
        assert_eq!(
            s.tally("new", day).expect("tally"),
            DayTally::default(),
            "a queue's tallies are its own"
        );
        assert_eq!(
            s.tally("q", day).expect("tally"),
            DayTally {
                sent: 5,
                failed: 1,
                ..DayTally::default()
            }
        );
        s.add_counter("mails_sent", "", 2.0).expect("c");
        s.add_counter("mails_sent", "", 1.0).expect("c");
        assert_eq!(
            s.counters().expect("c"),
            vec![("mails_sent".into(), String::new(), 3.0)]
        );
        // The sent record of "a", and the attempts of "a" and "c" (b's came later).
        assert_eq!(
            s.prune(now + chrono::Duration::seconds(1)).expect("prune"),
            3
        );
        assert!(!s.is_sent("a").expect("q"));
    }

    #[test]
    fn a_journal_from_before_uncertain_since_is_upgraded_in_place() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let db = Connection::open(dir.path().join(DB_FILE)).expect("old db");
            db.execute_batch(
                "CREATE TABLE attempts (identity TEXT PRIMARY KEY, first_at TEXT NOT NULL,
                     count INTEGER NOT NULL, open_since TEXT);
                 INSERT INTO attempts VALUES ('a', '2026-11-27T12:00:00+00:00', 1,
                     '2026-11-27T12:00:00+00:00');",
            )
            .expect("old schema");
        }
        let s = Store::open(dir.path()).expect("upgraded");
        let now = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .expect("instant")
            .to_utc();
        // The open attempt of the old journal is an unseen outcome from its start.
        let prior = s.begin_send("a", now).expect("attempt");
        assert_eq!(prior.attempts, 1);
        assert_eq!(
            prior.uncertain_since.map(|t| t.to_rfc3339()),
            Some("2026-11-27T12:00:00+00:00".into())
        );
        drop(s);
        Store::open(dir.path()).expect("opened again, already upgraded");
    }

    #[test]
    fn a_second_lock_waits_then_fails() {
        let dir = tempfile::tempdir().expect("tmp");
        let held = lock(dir.path(), Duration::ZERO).expect("first");
        let start = Instant::now();
        let err = lock(dir.path(), Duration::from_millis(300))
            .err()
            .expect("second must fail");
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(crate::error::exit_code_of(&err), crate::error::EXIT_LOCKED);
        drop(held);
        lock(dir.path(), Duration::ZERO).expect("free again");
    }
}
