//! Each queue's tallies for the day (what `stats` shows) and the stored counters
//! (metrics that outlive a run).

use anyhow::Result;
use chrono::NaiveDate;

use super::exec::Value;
use super::{DayTally, Store};

impl Store {
    /// Adds `n` to a queue's tally of `kind` (sent, failed, expired, parked) for a day.
    /// (The table `tally` of older versions counted every queue together; it is left
    /// as it was and no longer read.)
    pub fn add_tally(&self, queue: &str, day: NaiveDate, kind: &str, n: u64) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.run(
            "INSERT INTO queue_tally (queue, day, kind, n) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (queue, day, kind) DO UPDATE SET n = queue_tally.n + excluded.n",
            &[
                queue.into(),
                day.to_string().into(),
                kind.into(),
                i64::try_from(n).unwrap_or(i64::MAX).into(),
            ],
        )?;
        Ok(())
    }

    /// A queue's tallies for a day.
    pub fn tally(&self, queue: &str, day: NaiveDate) -> Result<DayTally> {
        let rows = self.rows(
            "SELECT kind, n FROM queue_tally WHERE queue = ?1 AND day = ?2",
            &[queue.into(), day.to_string().into()],
        )?;
        let mut t = DayTally::default();
        for row in rows {
            let kind = row.first().and_then(Value::text).unwrap_or_default();
            let n = row.get(1).and_then(Value::int).unwrap_or(0);
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
        self.run(
            "INSERT INTO counters (name, labels, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (name, labels) DO UPDATE SET value = counters.value + excluded.value",
            &[name.into(), labels.into(), by.into()],
        )?;
        Ok(())
    }

    /// Sets a stored value outright (a gauge that must outlive the run, such as the
    /// last success time).
    pub fn set_value(&self, name: &str, labels: &str, value: f64) -> Result<()> {
        self.run(
            "INSERT INTO counters (name, labels, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (name, labels) DO UPDATE SET value = excluded.value",
            &[name.into(), labels.into(), value.into()],
        )?;
        Ok(())
    }

    /// Every stored counter and value: (name, labels, value).
    pub fn counters(&self) -> Result<Vec<(String, String, f64)>> {
        let rows = self.rows(
            "SELECT name, labels, value FROM counters ORDER BY name, labels",
            &[],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let text = |i: usize| r.get(i).and_then(Value::text).unwrap_or_default();
                let value = r.get(2).and_then(Value::real).unwrap_or(0.0);
                (text(0), text(1), value)
            })
            .collect())
    }
}
