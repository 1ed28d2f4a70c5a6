//! The credit readings each run saw, from which Brevo's daily reset is learned
//! (crate::day).

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::Store;
use super::exec::Value;

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
        self.run(
            "INSERT INTO credit_seen (asked, at, credits, plan, limited, command) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &[
                asked.into(),
                at.into(),
                credits.into(),
                plan.into(),
                limited.into(),
                command.into(),
            ],
        )?;
        self.run("DELETE FROM credit_seen WHERE at < ?1", &[cut.into()])?;
        Ok(())
    }

    /// Every kept reading of the credits, in the order they were recorded.
    pub fn credit_history(&self) -> Result<Vec<CreditReading>> {
        let rows = self.rows(
            "SELECT rowid, COALESCE(asked, at), at, credits, plan, limited FROM credit_seen ORDER BY rowid",
            &[],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let int = |i: usize| r.get(i).and_then(Value::int).unwrap_or(0);
                let credits = r.get(3).and_then(Value::real).unwrap_or(0.0);
                let plan = r.get(4).and_then(Value::text).unwrap_or_default();
                (int(0), int(1), int(2), credits, plan, int(5) != 0)
            })
            .collect())
    }

    /// When `command` last read the credits, if it did in the kept history.
    pub fn last_reading_by(&self, command: &str) -> Result<Option<DateTime<Utc>>> {
        let rows = self.rows(
            "SELECT MAX(at) FROM credit_seen WHERE command = ?1",
            &[command.into()],
        )?;
        let at = rows.first().and_then(|r| r.first()).and_then(Value::int);
        Ok(at.and_then(|a| DateTime::from_timestamp(a, 0)))
    }
}
