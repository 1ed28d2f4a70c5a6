//! The state: a journal of every mail Brevo accepted (written before the mail is acked,
//! so a redelivered mail is never sent twice), the attempts whose answer nobody saw, the
//! per-day tallies that `stats` shows, stored counters, the credit readings, and the run
//! lock that keeps runs from overlapping. It lives in SQLite in `--state-dir` (the
//! default), or in PostgreSQL at `--state-url`, shared by every host that points there.
//!
//! One [`Store`], two backends behind the [`exec::Exec`] trait (`exec.rs` for SQLite,
//! `pg.rs` for PostgreSQL); the behaviour is the same on both.
//!
//! **Adding a query**: write one `impl Store` method (here or in a sibling file) that calls
//! [`Store::run`], [`Store::rows`] or [`Store::run_all`] with SQL both dialects accept:
//! placeholders `?1`, `?2` (turned into `$1` for PostgreSQL), `ON CONFLICT (...) DO UPDATE
//! SET col = table.col + excluded.col` or `DO NOTHING` (never `INSERT OR IGNORE/REPLACE`;
//! qualify the table's own column in `DO UPDATE`), `BIGINT` / `DOUBLE PRECISION` / `TEXT`
//! (booleans as 0 and 1, instants as RFC 3339 text or Unix seconds), `rowid` only on a
//! table whose PostgreSQL twin declares a `rowid BIGSERIAL`, no `SUM` (NUMERIC in
//! PostgreSQL). Bind values with `.into()` ([`exec::Value`]) and read them back with
//! `Value::int/real/text`.
//!
//! **Adding a table or column**: append a migration to `schema::MIGRATIONS` (idempotent
//! steps; `Step::Each` where the dialects differ) and test opening a store of the schema
//! before it. Both backends run them on open.

use std::sync::{Mutex, MutexGuard};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

mod credits;
mod delivery;
pub mod exec;
mod lock;
mod open;
mod pg;
pub mod private;
mod probe;
mod schema;
mod tally;
mod tls;

pub use crate::state_url::Place;
pub use credits::CreditReading;
pub use delivery::{EVENTS_COUNTER, ReadPosition, Recorded, Suppression};
pub use lock::{RunLock, lock, lock_state};
pub use probe::ProbeResult;

use exec::{Exec, Row, Value};

/// The journal's file name in the state directory.
pub const DB_FILE: &str = "state.sqlite3";

/// The sent-mail journal and tallies.
pub struct Store {
    x: Mutex<Box<dyn Exec>>,
    place: String,
    /// The run lock, when this store was opened under it ([`Store::locked`]) and the
    /// lock is not the store's own connection's (SQLite: the lock file). Dropped after
    /// the connection.
    _lock: Option<RunLock>,
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

/// Where the state lives, for `stats`, `doctor` and messages: the SQLite file, or the
/// PostgreSQL URL with its password masked.
pub fn describe(place: Place<'_>) -> String {
    match place.url {
        Some(url) => format!("PostgreSQL at {}", url.masked),
        None => format!("SQLite at {}", place.dir.join(DB_FILE).display()),
    }
}

fn time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let t = v?.text()?;
    DateTime::parse_from_rfc3339(&t).ok().map(|t| t.to_utc())
}

impl Store {
    /// Where this store lives (see [`describe`]).
    pub fn place(&self) -> &str {
        &self.place
    }

    pub(crate) fn x(&self) -> MutexGuard<'_, Box<dyn Exec>> {
        self.x
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs one statement; returns how many rows it changed.
    pub fn run(&self, sql: &str, params: &[Value]) -> Result<u64> {
        self.x().execute(sql, params)
    }

    /// Runs one query; returns its rows.
    pub fn rows(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        self.x().query(sql, params)
    }

    /// Runs one statement for each row of parameters, in one transaction.
    pub fn run_all(&self, sql: &str, rows: &[Vec<Value>]) -> Result<u64> {
        self.x().execute_all(sql, rows)
    }

    /// Runs statements in order, all in one transaction; returns the rows each changed.
    pub fn run_each(&self, stmts: &[(&'static str, Vec<Value>)]) -> Result<Vec<u64>> {
        self.x().execute_each(stmts)
    }

    pub(crate) fn first(&self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }

    /// Whether Brevo already accepted the mail with this identity.
    pub fn is_sent(&self, identity: &str) -> Result<bool> {
        let row = self.first("SELECT 1 FROM sent WHERE identity = ?1", &[identity.into()])?;
        Ok(row.is_some())
    }

    /// Notes, durably, that a send of this identity is about to start, and returns what
    /// is known of the earlier ones. The attempt stays *open* until [`Store::end_send`]:
    /// an attempt still open when the mail comes back is one whose outcome nobody saw
    /// (the run died), and from then on the mail is uncertain.
    pub fn begin_send(&self, identity: &str, now: DateTime<Utc>) -> Result<Prior> {
        let before = self.first(
            "SELECT count, open_since, uncertain_since, COALESCE(last_at, first_at)
             FROM attempts WHERE identity = ?1",
            &[identity.into()],
        )?;
        let get = |i: usize| before.as_ref().and_then(|r| r.get(i)).cloned();
        let attempts = get(0).and_then(|v| v.int()).unwrap_or(0);
        // The first unseen outcome is kept: Brevo's window counts from its acceptance.
        let uncertain = get(2)
            .and_then(|v| v.text())
            .or_else(|| get(1).and_then(|v| v.text()));
        self.run(
            "INSERT INTO attempts (identity, first_at, count, open_since, uncertain_since, last_at)
             VALUES (?1, ?2, 1, ?2, ?3, ?2)
             ON CONFLICT (identity) DO UPDATE SET count = attempts.count + 1,
                 last_at = excluded.last_at, open_since = excluded.open_since,
                 uncertain_since = excluded.uncertain_since",
            &[
                identity.into(),
                now.to_rfc3339().into(),
                uncertain.clone().into(),
            ],
        )?;
        Ok(Prior {
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            uncertain_since: time(uncertain.map(Value::Text).as_ref()),
            last_at: time(get(3).as_ref()),
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
        self.run(sql, &[identity.into()])?;
        Ok(())
    }

    /// When an attempt of this mail whose answer nobody saw started, if one did (an
    /// attempt still open counts: its run died), and when the latest attempt started.
    pub fn uncertainty(&self, identity: &str) -> Result<Option<Uncertainty>> {
        let row = self.first(
            "SELECT COALESCE(uncertain_since, open_since), COALESCE(last_at, first_at)
             FROM attempts WHERE identity = ?1",
            &[identity.into()],
        )?;
        Ok(row.and_then(|r| time(r.first()).map(|s| (s, time(r.get(1))))))
    }

    /// Makes the mail uncertain from `since` (unless it already was): Brevo refused its
    /// key as a repeat, so some attempt may have been accepted.
    pub fn mark_uncertain(&self, identity: &str, since: DateTime<Utc>) -> Result<()> {
        self.run(
            "UPDATE attempts SET uncertain_since = COALESCE(uncertain_since, ?2) WHERE identity = ?1",
            &[identity.into(), since.to_rfc3339().into()],
        )?;
        Ok(())
    }

    /// Forgets that an earlier attempt's outcome was unknown (Brevo's log showed it was
    /// not sent).
    pub fn clear_uncertain(&self, identity: &str) -> Result<()> {
        self.run(
            "UPDATE attempts SET uncertain_since = NULL WHERE identity = ?1",
            &[identity.into()],
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
        // One commit: the mail is sent, and its attempt (if one is open) is over.
        self.run_each(&[
            (
                "INSERT INTO sent (identity, brevo_id, template, recipient, sent_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (identity) DO NOTHING",
                vec![
                    identity.into(),
                    brevo_id.into(),
                    i64::from(template).into(),
                    recipient.into(),
                    now.to_rfc3339().into(),
                ],
            ),
            (
                "UPDATE attempts SET open_since = NULL WHERE identity = ?1",
                vec![identity.into()],
            ),
        ])
        .context("recording a sent mail in the state store")?;
        Ok(())
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
        let at = at.to_rfc3339();
        let rows: Vec<Vec<Value>> = identities
            .into_iter()
            .map(|id| vec![id.into(), at.clone().into()])
            .collect();
        self.run_all(
            "INSERT INTO parked (identity, parked_at) VALUES (?1, ?2)
             ON CONFLICT (identity) DO UPDATE SET parked_at = excluded.parked_at",
            &rows,
        )?;
        Ok(())
    }

    /// Whether a run of this journal ever sent a copy of this mail to the parking queue
    /// (within the journal's memory): only then may a copy be there, and only then is
    /// the parking queue worth looking at before handling the mail. It says nothing of
    /// whether the copy is still there (it may have been replayed or purged since).
    pub fn may_be_parked(&self, identity: &str) -> Result<bool> {
        let row = self.first(
            "SELECT 1 FROM parked WHERE identity = ?1",
            &[identity.into()],
        )?;
        Ok(row.is_some())
    }

    /// Forgets sent records, attempts and parkings from before `before` (they only
    /// matter while a redelivery is possible); returns how many rows went.
    pub fn prune(&self, before: DateTime<Utc>) -> Result<usize> {
        let cut: Value = before.to_rfc3339().into();
        let mut n = 0;
        for sql in [
            "DELETE FROM sent WHERE sent_at < ?1",
            "DELETE FROM attempts WHERE first_at < ?1",
            "DELETE FROM parked WHERE parked_at < ?1",
        ] {
            n += self.run(sql, std::slice::from_ref(&cut))?;
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
#[path = "../tests/support/pg.rs"]
pub(crate) mod testpg;

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use rusqlite::Connection;

    use super::*;
    use crate::state_url::{StateSettings, StateUrl};

    /// A new database on the tests' private PostgreSQL.
    pub(crate) fn pg_url() -> StateUrl {
        let args = StateSettings {
            url: Some(testpg::shared().new_database()),
            ..StateSettings::default()
        };
        StateUrl::from_settings(&args, &|_: &str| None)
            .expect("url")
            .expect("set")
    }

    fn pg_place<'a>(dir: &'a std::path::Path, url: &'a StateUrl) -> Place<'a> {
        Place {
            dir,
            url: Some(url),
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn journal_remembers_sends_and_attempts_in_sqlite() {
        let dir = tempfile::tempdir().expect("tmp");
        journal(&|| Store::open(dir.path()).expect("open"));
    }

    #[test]
    fn journal_remembers_sends_and_attempts_in_postgres() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = pg_url();
        journal(&|| Store::open(pg_place(dir.path(), &url)).expect("open"));
        // Nothing of it was written to the state directory.
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn a_migration_held_by_another_host_is_waited_for_no_longer_than_the_timeout() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = pg_url();
        let mut holder = pg::Pg::connect(&url, Duration::from_secs(10)).expect("connect");
        holder
            .execute("SELECT pg_advisory_lock(7017559792787746157)", &[])
            .expect("held");
        let place = Place {
            dir: dir.path(),
            url: Some(&url),
            timeout: Duration::from_millis(300),
        };
        let start = Instant::now();
        assert!(
            Store::open(place).is_err(),
            "opened under a held migration lock"
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        drop(holder);
        Store::open(place).expect("opens once it is free");
    }

    #[test]
    fn the_postgres_lock_excludes_a_second_holder_until_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = pg_url();
        let place = pg_place(dir.path(), &url);
        let held = lock(place, Duration::ZERO).expect("first");
        assert_eq!(lock_state(place).map(|r| r.expect("read")), Some(true));
        // Another deployment, in a database of its own on the same server: not locked.
        let other = pg_url();
        let other = pg_place(dir.path(), &other);
        assert_eq!(lock_state(other).map(|r| r.expect("read")), Some(false));
        drop(lock(other, Duration::ZERO).expect("its own lock"));
        let start = Instant::now();
        let err = lock(place, Duration::from_millis(300))
            .err()
            .expect("second must fail");
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(crate::error::exit_code_of(&err), crate::error::EXIT_LOCKED);
        assert!(
            err.to_string()
                .contains("PostgreSQL at postgres://postgres@127.0.0.1"),
            "{err}"
        );
        drop(held);
        assert_eq!(lock_state(place).map(|r| r.expect("read")), Some(false));
        lock(place, Duration::ZERO).expect("free again");
    }

    #[test]
    fn a_store_that_loses_its_lock_connection_fails_every_call_and_frees_the_lock() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = pg_url();
        let place = pg_place(dir.path(), &url);
        let at = DateTime::parse_from_rfc3339("2026-05-10T10:00:00Z")
            .expect("instant")
            .to_utc();
        let store = Store::locked(place, Duration::ZERO).expect("locked");
        store
            .record_sent("a", "<a@brevo>", 1, "x@example.org", at)
            .expect("journaled");
        // The lock is the store's own connection's: one session holds it, and no
        // second host can take it while the store is open.
        let err = Store::locked(place, Duration::ZERO)
            .err()
            .expect("a second host is locked out");
        assert_eq!(crate::error::exit_code_of(&err), crate::error::EXIT_LOCKED);
        // An idle timeout, a proxy, an operator: the server ends that session.
        let admin = Store::open(place).expect("admin");
        let ended = admin
            .rows(
                // This database's run lock only (other tests share the cluster); the call
                // waits up to 10 s for that session to be gone.
                "SELECT pg_terminate_backend(pid, 10000)::int FROM pg_locks
                 WHERE locktype = 'advisory' AND granted
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND ((classid::bigint << 32) | objid::bigint) = 7017559792787746156",
                &[],
            )
            .expect("terminate");
        assert_eq!(ended.len(), 1, "exactly one session held the run lock");
        // The run cannot go on unlocked: its next store calls, reads and writes, are
        // exit 4...
        let err = store
            .is_sent("a")
            .expect_err("the store is gone with its lock");
        assert_eq!(
            crate::error::exit_code_of(&err),
            crate::error::EXIT_UNAVAILABLE
        );
        let err = store
            .record_sent("b", "<b@brevo>", 1, "y@example.org", at)
            .expect_err("nothing is journaled without the lock");
        assert_eq!(
            crate::error::exit_code_of(&err),
            crate::error::EXIT_UNAVAILABLE
        );
        // ...and the lock is free for the next run, which finds what was journaled.
        let next = Store::locked(place, Duration::ZERO).expect("free again");
        assert!(next.is_sent("a").expect("read"));
    }

    #[test]
    fn an_unreachable_postgres_is_exit_4_naming_what_to_check() {
        let dir = tempfile::tempdir().expect("tmp");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let args = StateSettings {
            url: Some(format!("postgres://acaso:pw@127.0.0.1:{port}/mail")),
            ..StateSettings::default()
        };
        let url = StateUrl::from_settings(&args, &|_: &str| None)
            .expect("url")
            .expect("set");
        let err = Store::open(pg_place(dir.path(), &url))
            .err()
            .expect("nothing listens");
        assert_eq!(
            crate::error::exit_code_of(&err),
            crate::error::EXIT_UNAVAILABLE
        );
        let msg = format!("{err:#}");
        assert!(msg.contains("acaso:***@127.0.0.1"), "{msg}");
        assert!(!msg.contains(":pw@"), "{msg}");
        assert!(msg.contains("--state-url"), "{msg}");
    }

    /// A new database on the tests' TLS-and-password PostgreSQL
    /// ([`testpg::Cluster::start_secure`]): its URL (as its role, no password, no TLS
    /// options) and the cluster's CAs.
    fn secure_database() -> (String, &'static testpg::Secure) {
        let cluster = testpg::shared_secure();
        let secure = cluster.secure.as_ref().expect("a secure cluster");
        (cluster.new_database(), secure)
    }

    /// The variables a test gives [`StateUrl::from_settings`].
    type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

    /// The state URL `raw` with these settings and variables, checked.
    fn state_url(
        raw: String,
        password_file: Option<&Path>,
        ca_file: Option<&Path>,
        env: Env<'_>,
    ) -> StateUrl {
        let args = StateSettings {
            url: Some(raw),
            password_file: password_file.map(Path::to_path_buf),
            ca_file: ca_file.map(Path::to_path_buf),
        };
        StateUrl::from_settings(&args, &env)
            .expect("url")
            .expect("set")
    }

    #[test]
    fn journal_remembers_sends_over_verified_tls_with_the_password_from_a_file_in_postgres() {
        let dir = tempfile::tempdir().expect("tmp");
        let (raw, secure) = secure_database();
        let line = format!("{}\n", testpg::SECURE_PASSWORD);
        let password = testpg::secret_file(dir.path(), "password", &line);
        let state = tempfile::tempdir().expect("tmp");
        let url = state_url(
            format!("{raw}?sslmode=verify-full"),
            Some(&password),
            Some(&secure.ca),
            &|_: &str| None,
        );
        journal(&|| Store::open(pg_place(state.path(), &url)).expect("open"));
        // The server says this very connection is encrypted.
        let mut pg = pg::Pg::connect(&url, Duration::from_secs(10)).expect("connect");
        let rows = pg
            .query(
                "SELECT ssl, current_user FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .expect("pg_stat_ssl");
        assert_eq!(rows, vec![vec![Value::Int(1), Value::Text("acaso".into())]]);
    }

    #[test]
    fn the_state_password_from_its_variable_or_its_credential_logs_in_over_tls_in_postgres() {
        let dir = tempfile::tempdir().expect("tmp");
        let (raw, secure) = secure_database();
        let creds = dir.path().join("credentials");
        std::fs::create_dir(&creds).expect("mkdir");
        testpg::secret_file(&creds, "state-password", testpg::SECURE_PASSWORD);
        let creds = creds.display().to_string();
        let from_var = |k: &str| {
            (k == "ACASO_MAIL_STATE_PASSWORD").then(|| testpg::SECURE_PASSWORD.to_string())
        };
        let from_credential = |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| creds.clone());
        // The certificate is checked against the address, then against a name it holds
        // (no DNS asked: `hostaddr` gives the address).
        let by_name = raw.replace("@127.0.0.1:", "@localhost:") + "?hostaddr=127.0.0.1";
        let runs: [(Env<'_>, &String); 2] = [(&from_var, &raw), (&from_credential, &by_name)];
        for (env, raw) in runs {
            // The CA file alone implies verify-full.
            let url = state_url(raw.clone(), None, Some(&secure.ca), env);
            let s = Store::open(pg_place(dir.path(), &url)).expect("open");
            let at = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
                .expect("at")
                .to_utc();
            s.record_sent("a", "<id>", 1, "x@example.org", at)
                .expect("write");
            assert!(s.is_sent("a").expect("read"));
        }
    }

    #[test]
    fn postgres_refuses_a_wrong_ca_a_wrong_name_clear_text_and_a_wrong_password_with_exit_4() {
        let dir = tempfile::tempdir().expect("tmp");
        let (raw, secure) = secure_database();
        let right = testpg::secret_file(dir.path(), "right", testpg::SECURE_PASSWORD);
        let wrong = testpg::secret_file(dir.path(), "wrong", "not-the-xyzzy-password");
        let port = testpg::shared_secure().port;
        // The certificate names localhost and 127.0.0.1: reached at 127.0.0.1 by another
        // name (no DNS asked: `hostaddr` gives the address, the name is checked).
        let misnamed = raw.replace("@127.0.0.1:", "@db.invalid:") + "?hostaddr=127.0.0.1";
        let clear = format!("{raw}?sslmode=disable");
        let public = format!("{raw}?sslmode=verify-full");
        let (ca, other_ca) = (Some(secure.ca.as_path()), Some(secure.other_ca.as_path()));
        let unsigned = format!(
            "UnknownIssuer (the server's certificate is not signed by the CA in {}: set --state-ca-file / ACASO_MAIL_STATE_CA_FILE to the CA that signed it",
            secure.other_ca.display()
        );
        // The hint names the option that set the CA: setting the other one too is refused.
        let in_url = format!("{raw}?sslrootcert={}", secure.other_ca.display());
        let unsigned_in_url = format!(
            "not signed by the CA in {}: set sslrootcert= in the URL to the CA that signed it",
            secure.other_ca.display()
        );
        let cases = [
            ("wrong CA", &raw, Some(&right), other_ca, unsigned.as_str()),
            (
                "wrong CA in sslrootcert=",
                &in_url,
                Some(&right),
                None,
                unsigned_in_url.as_str(),
            ),
            (
                "wrong name",
                &misnamed,
                Some(&right),
                ca,
                "not valid for name \"db.invalid\"",
            ),
            (
                "no CA file: the public roots",
                &public,
                Some(&right),
                None,
                "not signed by a public CA (neither --state-ca-file nor sslrootcert= is set): set --state-ca-file (or sslrootcert= in the URL) to the CA that signed it",
            ),
            (
                "wrong name, what to do",
                &misnamed,
                Some(&right),
                ca,
                "does not name the host in the URL",
            ),
            (
                "in clear",
                &clear,
                Some(&right),
                None,
                "no pg_hba.conf entry",
            ),
            (
                "wrong password",
                &raw,
                Some(&wrong),
                ca,
                "password authentication failed",
            ),
            ("no password", &raw, None, ca, "password missing"),
        ];
        for (case, url, password, ca, why) in cases {
            let url = state_url(
                url.clone(),
                password.map(PathBuf::as_path),
                ca,
                &|_: &str| None,
            );
            let err = Store::open(pg_place(dir.path(), &url))
                .err()
                .unwrap_or_else(|| panic!("{case}: opened"));
            let msg = format!("{err:#}");
            assert_eq!(
                crate::error::exit_code_of(&err),
                crate::error::EXIT_UNAVAILABLE,
                "{case}: {msg}"
            );
            assert!(msg.contains(why), "{case}: {msg}");
            assert!(
                msg.contains(&format!("PostgreSQL at {}", url.masked)),
                "{case}: {msg}"
            );
            assert!(msg.contains(&format!(":{port}/")), "{case}: {msg}");
            assert!(
                !msg.contains("s3cr3t") && !msg.contains("xyzzy"),
                "{case}: {msg}"
            );
        }
    }

    #[test]
    fn every_earlier_sqlite_schema_opens_and_ends_at_the_latest() {
        let olds = [
            // 0.1: the tables, attempts without the unseen outcome, no credit history.
            "CREATE TABLE sent (identity TEXT PRIMARY KEY, brevo_id TEXT NOT NULL, template INTEGER NOT NULL, recipient TEXT NOT NULL, sent_at TEXT NOT NULL);
             CREATE TABLE attempts (identity TEXT PRIMARY KEY, first_at TEXT NOT NULL, count INTEGER NOT NULL, open_since TEXT);",
            // 0.2: the unseen outcome, the credit history without `asked`.
            "CREATE TABLE attempts (identity TEXT PRIMARY KEY, first_at TEXT NOT NULL, count INTEGER NOT NULL, open_since TEXT, uncertain_since TEXT, last_at TEXT);
             CREATE TABLE credit_seen (at INTEGER NOT NULL, credits REAL NOT NULL, plan TEXT NOT NULL, limited INTEGER NOT NULL, command TEXT NOT NULL);
             INSERT INTO credit_seen VALUES (1764590400, 300, 'free', 1, 'drain-eod');",
            // Before numbered migrations: everything, the probe table made on first use.
            "CREATE TABLE attempts (identity TEXT PRIMARY KEY, first_at TEXT NOT NULL, count INTEGER NOT NULL, open_since TEXT, uncertain_since TEXT, last_at TEXT);
             CREATE TABLE credit_seen (at INTEGER NOT NULL, credits REAL NOT NULL, plan TEXT NOT NULL, limited INTEGER NOT NULL, command TEXT NOT NULL, asked INTEGER);
             CREATE TABLE idempotency_probe (at TEXT NOT NULL, passed INTEGER NOT NULL, detail TEXT NOT NULL);
             INSERT INTO idempotency_probe VALUES ('2026-12-01T10:00:00+00:00', 0, 'accepted twice');",
        ];
        for (i, old) in olds.iter().enumerate() {
            let dir = tempfile::tempdir().expect("tmp");
            Connection::open(dir.path().join(DB_FILE))
                .and_then(|db| db.execute_batch(old))
                .expect("old schema");
            let s = Store::open(dir.path()).unwrap_or_else(|e| panic!("schema {i}: {e:#}"));
            assert_eq!(
                schema::version(s.x().as_mut()).expect("version"),
                schema::MIGRATIONS.len()
            );
            let at = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
                .expect("at")
                .to_utc();
            s.record_sent("a", "<id>", 1, "x@example.org", at)
                .expect("write");
            s.record_probe(at, true, "ok").expect("probe");
            assert!(s.last_probe().expect("probe").expect("one").passed);
            if i == 1 {
                assert_eq!(s.credit_history().expect("history")[0].1, 1_764_590_400);
            }
            drop(s);
            Store::open(dir.path()).expect("opened again, already upgraded");
        }
    }

    fn journal(open: &dyn Fn() -> Store) {
        let now = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .expect("instant")
            .to_utc();
        {
            let s = open();
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
        let s = open();
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
