//! Brevo's day, as the commands that read the credits see it: reading the account (and
//! when), keeping the reading in the state store, and placing "now" in the day the
//! readings show. One step, so that `drain`, `stats` and `credits` hand the domain plain
//! values; the inference itself is pure and lives in [`crate::day`].

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::Serialize;

use crate::brevo::Account;
use crate::brevo::account::{ReadAt, read_account};
use crate::config::Config;
use crate::day::{self, KEEP_DAYS, Learned, Position, Reset, Seen, Source};
use crate::state::Store;

/// What the state store's readings say, without adding one (`store` is `None` when
/// there is no state yet).
pub fn known(store: Option<&Store>, cfg: &Config) -> Result<Learned> {
    let seen = match store {
        Some(store) => history(store)?,
        None => Vec::new(),
    };
    Ok(day::learned(&seen, cfg.credits_reset, cfg.tz))
}

/// The readings kept in the state store, in the order they were recorded.
fn history(store: &Store) -> Result<Vec<Seen>> {
    Ok(store
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
        .collect())
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
    Ok(day::learned(&history(store)?, cfg.credits_reset, cfg.tz))
}

/// The drain's step: reads the account, keeps the reading, and places the run in
/// Brevo's day. The run's "now" is when Brevo answered: a reset that reading shows is
/// behind it.
pub async fn read_and_learn(
    cfg: &Config,
    store: &Store,
    command: &str,
) -> Result<(Account, DateTime<Utc>, day::Today)> {
    let (account, read) = read_account(cfg).await?;
    let learned = learn(store, cfg, read, &account, command)?;
    Ok((account, read.at, day::Today::at(learned, read.at, cfg.tz)))
}

/// One reset seen in the credits: it happened after `after`, at or before `by`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ObservedReset {
    /// The last reading before the rise (RFC 3339).
    pub after: String,
    /// The first reading that showed it (RFC 3339).
    pub by: String,
}

/// When Brevo's daily credits reset, and whether the schedule fits.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CreditsReset {
    /// How it is known: `observed` (from the credits runs saw), `configured`
    /// (`--credits-reset`) or `assumed` (local midnight, until a reset is observed).
    pub source: String,
    /// The zone of the times of day below (`--tz`).
    pub zone: String,
    /// The reset comes after this time of day (`HH:MM`)...
    pub after: String,
    /// ...and at or before this one (equal to `after` when configured or assumed).
    pub by: String,
    /// The next reset, at the latest (RFC 3339).
    pub next: String,
    /// The Brevo day `today` counts, named by the local date it mostly covers.
    pub day: String,
    /// Rises of the credits that agree with `after`..`by`.
    pub agreeing: u32,
    /// The last resets seen in the kept history (60 days), oldest first (at most 10).
    pub observed: Vec<ObservedReset>,
    /// When drain-eod runs (`HH:MM`): its last run, else the documented 23:05.
    pub drain_eod_at: String,
    /// Whether `drain_eod_at` is its last run (else the documented time is assumed).
    pub drain_eod_seen: bool,
    /// Whether drain-eod runs after the reset (early in the next Brevo day).
    pub drain_eod_after_reset: bool,
    /// In words.
    pub message: String,
}

/// When the credits reset, how that is known, and whether drain-eod runs after it.
pub fn reset_report(
    tz: Tz,
    learned: &day::Learned,
    p: &Position,
    eod_seen: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<CreditsReset> {
    let reset: &Reset = &learned.reset;
    let (after, by) = reset.local_window(tz, now)?;
    let local = |t: chrono::DateTime<chrono::Utc>| t.with_timezone(&tz);
    let eod_time = match eod_seen {
        Some(t) => local(t).time(),
        None => chrono::NaiveTime::from_hms_opt(day::DOCUMENTED_EOD.0, day::DOCUMENTED_EOD.1, 0)?,
    };
    let eod_at = eod_time.format("%H:%M").to_string();
    // Where an end-of-day run at that time of day stands in Brevo's day.
    let eod_after_reset = day::today_at(tz, now, eod_time)
        .and_then(|t| day::position(reset, t, tz))
        .is_some_and(|e| e.early_in_day);
    let when = in_words(&after, &by);
    let how = match reset.source {
        Source::Observed => format!(
            "observed: the credits rose {} time(s) in that window",
            reset.agreeing
        ),
        Source::Configured => "configured: --credits-reset / ACASO_MAIL_CREDITS_RESET".into(),
        Source::Assumed => {
            "assumed: local midnight until a run sees the credits rise, or --credits-reset says when".into()
        }
    };
    let next = local(p.next.by).format("%Y-%m-%d %H:%M");
    let mut message = format!("Brevo's credits reset {when} {tz} ({how}); next by {next}");
    if eod_after_reset {
        message = format!(
            "drain-eod runs at {eod_at} ({}), after Brevo's credits reset {when} {tz}: it spends the next day's credits early (acaso-mail paces it instead) and the day's credits left at the reset are lost. {}",
            if eod_seen.is_some() {
                "its last run"
            } else {
                "the documented time, assumed"
            },
            move_hint(tz, now, reset)
        );
    }
    let rfc = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0).map_or_else(String::new, |t| local(t).to_rfc3339())
    };
    let skip = learned.rises.len().saturating_sub(10);
    Some(CreditsReset {
        source: reset.source.name().into(),
        zone: tz.to_string(),
        after,
        by,
        next: local(p.next.by).to_rfc3339(),
        day: p.day.to_string(),
        agreeing: reset.agreeing,
        observed: learned.rises[skip..]
            .iter()
            .map(|r| ObservedReset {
                after: rfc(r.after),
                by: rfc(r.by),
            })
            .collect(),
        drain_eod_at: eod_at,
        drain_eod_seen: eod_seen.is_some(),
        drain_eod_after_reset: eod_after_reset,
        message,
    })
}

/// A reset's window in words: "at 03:00", or "between 02:10 and 03:05".
fn in_words(after: &str, by: &str) -> String {
    if after == by {
        format!("at {by}")
    } else {
        format!("between {after} and {by}")
    }
}

/// What an end-of-day drain run just after the reset did instead, and what to change.
pub fn early_eod_note(tz: Tz, reset: &Reset, now: DateTime<Utc>) -> String {
    let when = reset
        .local_window(tz, now)
        .map_or_else(String::new, |(after, by)| {
            format!(" {}", in_words(&after, &by))
        });
    format!(
        "drain-eod ran after Brevo's credits reset ({}{when} {tz}): it paced like an hourly run instead of spending the new day's credits; move it before the reset (see `acaso-mail stats`)",
        reset.source.name(),
    )
}

/// What to change so that drain-eod is the last run before the reset: its hour, in each
/// of the documented schedules.
fn move_hint(tz: Tz, now: chrono::DateTime<chrono::Utc>, reset: &Reset) -> String {
    use chrono::Timelike;
    let Some(next) = reset.next(now) else {
        return String::new();
    };
    let before = next.after.with_timezone(&tz);
    // At :05 of the last hour whose :05 is not after the reset's earliest time.
    let hour = if before.minute() >= 5 {
        before.hour()
    } else {
        (before.hour() + 23) % 24
    };
    let dokku = chrono::NaiveTime::from_hms_opt(hour, 5, 0)
        .and_then(|t| day::today_at(tz, now, t))
        .map_or_else(String::new, |t| {
            format!(
                "; Dokku: drain-eod's schedule in app.json to \"5 {} * * *\" (UTC), and drain-hourly's hours converted likewise",
                t.hour()
            )
        });
    format!(
        "Move it to {hour:02}:05 and keep drain-hourly off that hour: systemd: OnCalendar=*-*-* {hour:02}:05:00 {tz} in acaso-mail-drain-eod.timer and OnCalendar=*-*-* {}:15:00 {tz} in acaso-mail-drain-hourly.timer; cron: \"5 {hour} * * *\" for drain-eod and \"15 {} * * *\" for drain-hourly{dokku}",
        day::hours_except(hour, true),
        day::hours_except(hour, false),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("instant").to_utc()
    }

    #[test]
    fn the_early_drain_eod_note_says_when_the_reset_is_and_what_to_do() {
        let tz: Tz = "America/Recife".parse().expect("zone");
        let at_three = chrono::NaiveTime::from_hms_opt(3, 0, 0).expect("time");
        let configured = Reset::configured(at_three, tz);
        let note = early_eod_note(tz, &configured, t("2026-12-03T06:30:00Z"));
        assert!(
            note.starts_with(
                "drain-eod ran after Brevo's credits reset (configured at 03:00 America/Recife)"
            ),
            "{note}"
        );
        assert!(
            note.ends_with("move it before the reset (see `acaso-mail stats`)"),
            "{note}"
        );
        let assumed = early_eod_note(tz, &Reset::assumed(tz), t("2026-12-03T06:30:00Z"));
        assert!(
            assumed.contains("(assumed at 00:00 America/Recife)"),
            "{assumed}"
        );
        assert_eq!(in_words("02:10", "03:05"), "between 02:10 and 03:05");
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
