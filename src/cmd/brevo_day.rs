//! Brevo's day, as the commands that read the credits see it: reading the account (and
//! when), keeping the reading in the state store, and placing "now" in the day the
//! readings show. One step, so that `drain`, `stats` and `credits` hand the domain plain
//! values; the inference itself is pure and lives in [`crate::day`].

use anyhow::Result;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::brevo::Account;
use crate::config::Config;
use crate::day::{self, KEEP_DAYS, Learned, Position, Seen};
use crate::state::Store;

/// When the credits were read: the request went out at `asked` and Brevo answered at
/// `at` (by the clock, or `--now` when given); Brevo read them in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAt {
    /// Just before the request.
    pub asked: DateTime<Utc>,
    /// Just after the answer.
    pub at: DateTime<Utc>,
    /// The wall clock just after the answer, whatever `--now` says: the credit history is
    /// pruned from the earlier of this and `at`.
    pub wall: DateTime<Utc>,
}

/// Where a command stands in Brevo's day.
#[derive(Debug, Clone)]
pub struct Today {
    /// The reset to go by, and the rises it was learned from.
    pub learned: Learned,
    /// Where `now` stands before the next reset (`None`: a date out of range).
    pub position: Option<Position>,
    /// The day's name: Brevo's day once its reset is placed, else the local date.
    pub name: NaiveDate,
}

impl Today {
    /// `now` placed in the day `learned` defines, days named in `tz`.
    pub fn at(learned: Learned, now: DateTime<Utc>, tz: Tz) -> Today {
        let position = day::position(&learned.reset, now, tz);
        let name = day::name(position.as_ref(), now, tz);
        Today {
            learned,
            position,
            name,
        }
    }
}

/// Reads the account (`GET /account`), and when.
pub async fn read_account(cfg: &Config) -> Result<(Account, ReadAt)> {
    let asked = cfg.now();
    let account = crate::brevo::account(cfg).await?;
    let at = cfg.now().max(asked);
    let wall = Utc::now();
    Ok((account, ReadAt { asked, at, wall }))
}

/// What the state store's readings say, without adding one (`store` is `None` when
/// there is no state yet).
pub fn known(store: Option<&Store>, cfg: &Config) -> Result<Learned> {
    let seen: Vec<Seen> = match store {
        Some(store) => store
            .credit_history()?
            .into_iter()
            .map(|(seq, asked, at, credits, plan, limited)| Seen {
                seq,
                asked,
                at,
                credits,
                plan,
                limited,
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(day::learned(&seen, cfg.credits_reset, cfg.tz))
}

/// Records the credits a run (`command`) read, then says what the readings show.
pub fn learn(
    store: &Store,
    cfg: &Config,
    read: ReadAt,
    account: &Account,
    command: &str,
) -> Result<Learned> {
    store.record_credits(
        (read.asked, read.at),
        account.credits,
        &account.plan,
        !account.unlimited(),
        command,
        (Duration::days(KEEP_DAYS), read.wall),
    )?;
    known(Some(store), cfg)
}

/// The drain's step: reads the account, keeps the reading, and places the run in
/// Brevo's day. The run's "now" is when Brevo answered: a reset that reading shows is
/// behind it.
pub async fn read_and_learn(
    cfg: &Config,
    store: &Store,
    command: &str,
) -> Result<(Account, DateTime<Utc>, Today)> {
    let (account, read) = read_account(cfg).await?;
    let learned = learn(store, cfg, read, &account, command)?;
    Ok((account, read.at, Today::at(learned, read.at, cfg.tz)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("instant").to_utc()
    }

    #[test]
    fn a_credit_history_from_before_the_request_time_is_kept() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let db =
                rusqlite::Connection::open(dir.path().join(crate::state::DB_FILE)).expect("db");
            db.execute_batch(
                "CREATE TABLE credit_seen (at INTEGER NOT NULL, credits REAL NOT NULL,
                     plan TEXT NOT NULL, limited INTEGER NOT NULL, command TEXT NOT NULL);
                 INSERT INTO credit_seen VALUES (1796000000, 20.0, 'free', 1, 'drain-hourly');",
            )
            .expect("old history");
        }
        let store = Store::open(dir.path()).expect("upgraded");
        let asked = t("2026-12-01T10:00:00Z");
        let at = t("2026-12-01T10:00:02Z");
        store
            .record_credits(
                (asked, at),
                300.0,
                "free",
                true,
                "stats",
                (Duration::days(KEEP_DAYS), at),
            )
            .expect("record");
        let history = store.credit_history().expect("history");
        assert_eq!(
            history,
            vec![
                (1, 1_796_000_000, 1_796_000_000, 20.0, "free".into(), true),
                (
                    2,
                    asked.timestamp(),
                    at.timestamp(),
                    300.0,
                    "free".into(),
                    true
                ),
            ]
        );
        drop(store);
        Store::open(dir.path()).expect("opened again, already upgraded");
    }

    #[test]
    fn a_future_now_does_not_erase_the_credit_history_but_old_readings_go() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        let keep = Duration::days(KEEP_DAYS);
        let wall = t("2026-12-03T10:00:00Z");
        let record = |at: DateTime<Utc>, credits: f64| {
            store
                .record_credits(
                    (at, at),
                    credits,
                    "free",
                    true,
                    "drain-hourly",
                    (keep, wall),
                )
                .expect("record");
        };
        let count = || store.credit_history().expect("history").len();
        // A reading 70 days old (a run given that --now) is kept by its own run...
        record(wall - Duration::days(70), 40.0);
        assert_eq!(count(), 1);
        for (i, credits) in [20.0, 300.0, 10.0, 300.0].into_iter().enumerate() {
            record(wall - Duration::days(4 - i as i64), credits);
        }
        // ...and forgotten by the next run at the real time.
        assert_eq!(count(), 4);
        // `stats --now` half a year ahead erases nothing real.
        record(wall + Duration::days(180), 300.0);
        assert_eq!(count(), 5, "the history was erased by a future --now");
        record(wall, 290.0);
        assert_eq!(count(), 6);
    }
}
