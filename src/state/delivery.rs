//! What the journal keeps of delivery (`acaso-mail events`): where the reading of
//! Brevo's events stands, each sent mail's latest delivery state, the events already
//! seen (so that none is counted or published twice), the outcomes not yet confirmed by
//! the broker, the day's counts, and the addresses not to mail again.
//!
//! The tables are created by [`Store::delivery_tables`], an idempotent step of its own.
//! The SQL is the dialect SQLite and PostgreSQL share (`ON CONFLICT ... DO UPDATE /
//! DO NOTHING`, TEXT, INTEGER), so that it moves to another backend unchanged.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::brevo::events::Blocked;
use crate::delivery::{SentMail, Settled, stamp};

const CREATE: &str = "
CREATE TABLE IF NOT EXISTS delivery_read (
    name     TEXT PRIMARY KEY,
    since    TEXT NOT NULL,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS delivery_seen (
    key  TEXT PRIMARY KEY,
    at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS delivery (
    identity TEXT PRIMARY KEY,
    event    TEXT NOT NULL,
    at       TEXT NOT NULL,
    reason   TEXT
);
CREATE TABLE IF NOT EXISTS delivery_day (
    day   TEXT NOT NULL,
    event TEXT NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (day, event)
);
CREATE TABLE IF NOT EXISTS delivery_outbox (
    key     TEXT PRIMARY KEY,
    at      TEXT NOT NULL,
    routing TEXT NOT NULL,
    body    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS suppressed (
    email  TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    at     TEXT NOT NULL
);";

/// What [`Store::record_events`] does for each event: note it seen, update its mail's
/// latest state, count it for its day, put its outcome in the outbox, count it for the
/// metric, suppress its address.
const RECORD: [&str; 6] = [
    "INSERT INTO delivery_seen (key, at) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
    "INSERT INTO delivery (identity, event, at, reason) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (identity) DO UPDATE SET event = excluded.event, at = excluded.at,
         reason = excluded.reason WHERE excluded.at >= delivery.at",
    "INSERT INTO delivery_day (day, event, n) VALUES (?1, ?2, 1)
     ON CONFLICT (day, event) DO UPDATE SET n = delivery_day.n + 1",
    "INSERT INTO delivery_outbox (key, at, routing, body) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (key) DO NOTHING",
    "INSERT INTO counters (name, labels, value) VALUES (?1, ?2, 1)
     ON CONFLICT (name, labels) DO UPDATE SET value = counters.value + 1",
    "INSERT INTO suppressed (email, reason, source, at) VALUES (?1, ?2, 'events', ?3)
     ON CONFLICT (email) DO NOTHING",
];

/// Where a paged read of Brevo stands: the first day of its window and how many rows
/// of that window (oldest first) were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPosition {
    /// The window's first day.
    pub since: NaiveDate,
    /// Rows read from the window's start.
    pub position: u64,
}

/// Why an address is not mailed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// Brevo's event name or blocked-contact reason code.
    pub reason: String,
    /// Where it was learned: `events` or `blockedContacts`.
    pub source: String,
    /// When (the event's date, or when the contact was blocked or first seen blocked).
    pub at: String,
}

/// What a page of events added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// New events of acaso-mail's mails, by event name.
    pub by_event: BTreeMap<String, u32>,
    /// Events not seen before.
    pub new: u32,
    /// Of those, events about acaso-mail's mails.
    pub matched: u32,
    /// Addresses newly suppressed.
    pub suppressed: u32,
}

fn set_position(db: &rusqlite::Connection, name: &str, to: ReadPosition) -> Result<()> {
    db.execute(
        "INSERT INTO delivery_read (name, since, position) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET since = excluded.since, position = excluded.position",
        params![
            name,
            to.since.to_string(),
            i64::try_from(to.position).unwrap_or(i64::MAX)
        ],
    )?;
    Ok(())
}

/// The name of the events-total counter.
pub const EVENTS_COUNTER: &str = "acaso_mail_delivery_events_total";

impl Store {
    /// Creates the delivery tables if they are missing (idempotent).
    pub fn delivery_tables(&self) -> Result<()> {
        self.db
            .execute_batch(CREATE)
            .context("creating the delivery tables")
    }

    /// Where the read called `name` stands, if it ever ran.
    pub fn read_position(&self, name: &str) -> Result<Option<ReadPosition>> {
        let row: Option<(String, i64)> = self
            .db
            .query_row(
                "SELECT since, position FROM delivery_read WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(since, position)| {
            Some(ReadPosition {
                since: NaiveDate::parse_from_str(&since, "%Y-%m-%d").ok()?,
                position: u64::try_from(position).unwrap_or(0),
            })
        }))
    }

    /// Moves the read called `name` to `to`.
    pub fn set_read_position(&self, name: &str, to: ReadPosition) -> Result<()> {
        set_position(&self.db, name, to)
    }

    /// Every mail the journal has as sent.
    pub fn sent_mails(&self) -> Result<Vec<SentMail>> {
        let mut stmt = self
            .db
            .prepare("SELECT identity, brevo_id, template, recipient FROM sent")?;
        let rows = stmt.query_map([], |r| {
            Ok(SentMail {
                identity: r.get(0)?,
                brevo_id: r.get(1)?,
                template_id: r.get(2)?,
                recipient: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// When the oldest mail in the journal was sent.
    pub fn oldest_sent(&self) -> Result<Option<DateTime<Utc>>> {
        let at: Option<String> = self
            .db
            .query_row("SELECT MIN(sent_at) FROM sent", [], |r| r.get(0))?;
        Ok(at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.to_utc()))
    }

    /// Records a page of events in one transaction, with the read position after it:
    /// each event not seen before is counted (the day's counts by `day_of` its date, the
    /// metric by event and template), its mail's latest state updated, its outcome put
    /// in the outbox, and a suppressing event's address suppressed. A page recorded is
    /// never read again; a page not recorded is read again, whole.
    pub fn record_events(
        &self,
        settled: &[Settled],
        after: (&str, ReadPosition),
        day_of: impl Fn(DateTime<Utc>) -> NaiveDate,
    ) -> Result<Recorded> {
        let tx = self.db.unchecked_transaction()?;
        let mut done = Recorded::default();
        {
            let [seen, latest, day, outbox, counter, suppress] =
                RECORD.map(|sql| tx.prepare_cached(sql));
            let (mut seen, mut latest, mut day) = (seen?, latest?, day?);
            let (mut outbox, mut counter, mut suppress) = (outbox?, counter?, suppress?);
            for s in settled {
                let at = stamp(s.event.date);
                if seen.execute(params![s.key, at])? == 0 {
                    continue;
                }
                done.new += 1;
                let Some(o) = &s.outcome else { continue };
                done.matched += 1;
                *done.by_event.entry(o.event.clone()).or_default() += 1;
                latest.execute(params![o.identity, o.event, at, o.reason])?;
                day.execute(params![day_of(s.event.date).to_string(), o.event])?;
                let labels = format!(
                    "subcommand=events,event={},template={}",
                    o.event, o.template_id
                );
                counter.execute(params![EVENTS_COUNTER, labels])?;
                outbox.execute(params![s.key, at, o.event, serde_json::to_string(o)?])?;
                if o.suppressed {
                    let email = s.event.email.to_lowercase();
                    done.suppressed +=
                        u32::try_from(suppress.execute(params![email, o.event, at])?).unwrap_or(0);
                }
            }
        }
        set_position(&tx, after.0, after.1)?;
        tx.commit()?;
        Ok(done)
    }

    /// The outcomes not yet confirmed by the broker, oldest first: (key, routing key, body).
    pub fn pending_outcomes(&self, limit: u32) -> Result<Vec<(String, String, String)>> {
        let mut stmt = self
            .db
            .prepare("SELECT key, routing, body FROM delivery_outbox ORDER BY at, key LIMIT ?1")?;
        let rows = stmt.query_map([limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Forgets outcomes the broker confirmed.
    pub fn outcomes_published(&self, keys: &[String]) -> Result<()> {
        let tx = self.db.unchecked_transaction()?;
        {
            let mut del = tx.prepare_cached("DELETE FROM delivery_outbox WHERE key = ?1")?;
            for k in keys {
                del.execute([k])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records Brevo's blocked contacts. With `whole` (the list was read to its end),
    /// an address no longer listed is no longer suppressed for that source. Returns the
    /// addresses newly suppressed.
    pub fn record_blocked(
        &self,
        contacts: &[Blocked],
        whole: bool,
        now: DateTime<Utc>,
    ) -> Result<u32> {
        let tx = self.db.unchecked_transaction()?;
        let mut added = 0u32;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO suppressed (email, reason, source, at) VALUES (?1, ?2, 'blockedContacts', ?3)
                 ON CONFLICT (email) DO NOTHING",
            )?;
            let mut listed = std::collections::HashSet::with_capacity(contacts.len());
            for c in contacts {
                let email = c.email.to_lowercase();
                let at = stamp(c.blocked_at.unwrap_or(now));
                let n = insert.execute(params![email, c.code, at])?;
                added += u32::try_from(n).unwrap_or(0);
                listed.insert(email);
            }
            if whole {
                let mut stmt =
                    tx.prepare("SELECT email FROM suppressed WHERE source = 'blockedContacts'")?;
                let gone: Vec<String> = stmt
                    .query_map([], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?
                    .into_iter()
                    .filter(|e| !listed.contains(e))
                    .collect();
                let mut del = tx.prepare_cached("DELETE FROM suppressed WHERE email = ?1")?;
                for e in gone {
                    del.execute([e])?;
                }
            }
        }
        tx.commit()?;
        Ok(added)
    }

    /// Whether (and why) mail to `email` is not to be sent. A journal without the
    /// delivery tables suppresses nothing.
    pub fn suppression(&self, email: &str) -> Result<Option<Suppression>> {
        let r = self
            .db
            .query_row(
                "SELECT reason, source, at FROM suppressed WHERE email = ?1",
                [email.trim().to_lowercase()],
                |r| {
                    Ok(Suppression {
                        reason: r.get(0)?,
                        source: r.get(1)?,
                        at: r.get(2)?,
                    })
                },
            )
            .optional();
        match r {
            Ok(s) => Ok(s),
            Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("no such table") => {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Mails to `email` may be sent again (an operator replayed them, after the
    /// address was fixed or unblocked).
    pub fn unsuppress(&self, email: &str) -> Result<()> {
        self.delivery_tables()?;
        self.db.execute(
            "DELETE FROM suppressed WHERE email = ?1",
            [email.trim().to_lowercase()],
        )?;
        Ok(())
    }

    /// A day's delivery events of acaso-mail's mails, by event name.
    pub fn delivery_counts(&self, day: NaiveDate) -> Result<BTreeMap<String, u64>> {
        let mut stmt = self
            .db
            .prepare("SELECT event, n FROM delivery_day WHERE day = ?1")?;
        let rows = stmt.query_map([day.to_string()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (event, n) = row?;
            out.insert(event, u64::try_from(n).unwrap_or(0));
        }
        Ok(out)
    }

    /// A day's delivery (the tables are made if missing).
    pub fn delivery_day(&self, day: NaiveDate) -> Result<crate::delivery::DeliveryDay> {
        self.delivery_tables()?;
        Ok(crate::delivery::DeliveryDay {
            events: self.delivery_counts(day)?,
            suppressed: self.suppressed_count()?,
        })
    }

    /// How many addresses are suppressed.
    pub fn suppressed_count(&self) -> Result<u64> {
        let n: i64 = self
            .db
            .query_row("SELECT COUNT(*) FROM suppressed", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// A mail's latest delivery state: (event, date).
    pub fn delivery_state(&self, identity: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .db
            .query_row(
                "SELECT event, at FROM delivery WHERE identity = ?1",
                [identity],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Forgets events seen before `before` (Brevo keeps 90 days; older ones cannot come back).
    pub fn prune_delivery(&self, before: DateTime<Utc>) -> Result<usize> {
        Ok(self
            .db
            .execute("DELETE FROM delivery_seen WHERE at < ?1", [stamp(before)])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brevo::events::Event;
    use crate::delivery::{Matcher, settle};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("t").to_utc()
    }

    fn event(name: &str, at: &str) -> Event {
        Event {
            email: "A@Example.org".into(),
            date: t(at),
            message_id: "<1@relay>".into(),
            event: name.into(),
            reason: None,
            tag: None,
            template_id: Some(9),
        }
    }

    #[test]
    fn a_page_is_recorded_once_with_its_position_and_the_latest_state_wins() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("store");
        // A journal without the tables suppresses nothing.
        assert_eq!(s.suppression("a@example.org").expect("read"), None);
        s.delivery_tables().expect("tables");
        s.delivery_tables().expect("idempotent");
        s.record_sent(
            "id:m-1",
            "<1@relay>",
            9,
            "a@example.org",
            t("2026-12-03T10:00:00Z"),
        )
        .expect("sent");
        let m = Matcher::new(s.sent_mails().expect("mails"));
        let day = |d: DateTime<Utc>| d.date_naive();
        let since = NaiveDate::from_ymd_opt(2026, 12, 2).expect("day");
        let page = settle(
            vec![
                event("hardBounces", "2026-12-03T10:05:00Z"),
                event("requests", "2026-12-03T10:00:01Z"),
            ],
            &m,
        );
        let after = ReadPosition { since, position: 2 };
        let r = s
            .record_events(&page, ("events", after), day)
            .expect("record");
        assert_eq!((r.new, r.matched, r.suppressed), (2, 2, 1));
        // The same page again (a run that died before moving on): nothing counted twice.
        let r = s
            .record_events(&page, ("events", after), day)
            .expect("again");
        assert_eq!((r.new, r.matched), (0, 0));
        assert_eq!(s.read_position("events").expect("pos"), Some(after));
        // The latest event by date is the mail's state, whatever the order read.
        let state = s.delivery_state("id:m-1").expect("state").expect("some");
        assert_eq!(state.0, "hardBounces");
        let counts = s
            .delivery_counts(day(t("2026-12-03T00:00:00Z")))
            .expect("counts");
        assert_eq!(counts.get("requests"), Some(&1));
        let sup = s
            .suppression(" a@EXAMPLE.org")
            .expect("read")
            .expect("suppressed");
        assert_eq!(
            (sup.reason.as_str(), sup.source.as_str()),
            ("hardBounces", "events")
        );
        assert_eq!(s.pending_outcomes(10).expect("outbox").len(), 2);
        let keys: Vec<String> = s
            .pending_outcomes(1)
            .expect("outbox")
            .into_iter()
            .map(|(k, _, _)| k)
            .collect();
        s.outcomes_published(&keys).expect("published");
        assert_eq!(s.pending_outcomes(10).expect("outbox").len(), 1);
        s.unsuppress("a@example.org").expect("lift");
        assert_eq!(s.suppressed_count().expect("count"), 0);
    }

    #[test]
    fn blocked_contacts_no_longer_listed_are_lifted_only_after_a_whole_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("store");
        s.delivery_tables().expect("tables");
        let now = t("2026-12-03T10:00:00Z");
        let b = |e: &str| Blocked {
            email: e.into(),
            code: "adminBlocked".into(),
            blocked_at: None,
        };
        assert_eq!(
            s.record_blocked(&[b("x@e.org"), b("y@e.org")], true, now)
                .expect("r"),
            2
        );
        assert_eq!(s.record_blocked(&[b("x@e.org")], false, now).expect("r"), 0);
        assert_eq!(
            s.suppressed_count().expect("n"),
            2,
            "a partial read lifts nothing"
        );
        assert_eq!(s.record_blocked(&[b("x@e.org")], true, now).expect("r"), 0);
        assert_eq!(s.suppressed_count().expect("n"), 1);
        assert!(s.suppression("y@e.org").expect("read").is_none());
    }
}
