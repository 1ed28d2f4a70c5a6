//! What the journal keeps of delivery (`acaso-mail events`): where the reading of
//! Brevo's events stands, each sent mail's latest delivery state, the events already
//! seen (so that none is counted or published twice), the outcomes not yet confirmed by
//! the broker, the day's counts, and the addresses not to mail again.
//!
//! The tables are migration 6 of the store's schema ([`TABLES`]); the SQL is written once
//! for both backends (see the store's module documentation).

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, NaiveDate, Utc};

use super::Store;
use super::exec::{Row, Value};
use crate::brevo::events::Blocked;
use crate::delivery::{SentMail, Settled, stamp};

/// The delivery tables (the store's migration 6).
pub const TABLES: &str = "
CREATE TABLE IF NOT EXISTS delivery_read (
    name     TEXT PRIMARY KEY,
    since    TEXT NOT NULL,
    position BIGINT NOT NULL
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
    n     BIGINT NOT NULL,
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

/// Moves a read's position (one statement of a transaction).
fn position_stmt(name: &str, to: ReadPosition) -> (&'static str, Vec<Value>) {
    (
        "INSERT INTO delivery_read (name, since, position) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET since = excluded.since, position = excluded.position",
        vec![
            name.into(),
            to.since.to_string().into(),
            i64::try_from(to.position).unwrap_or(i64::MAX).into(),
        ],
    )
}

fn text(r: &Row, i: usize) -> String {
    r.get(i).and_then(Value::text).unwrap_or_default()
}

fn count(r: &Row, i: usize) -> u64 {
    r.get(i)
        .and_then(Value::int)
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

/// The name of the events-total counter.
pub const EVENTS_COUNTER: &str = "acaso_mail_delivery_events_total";

impl Store {
    /// Where the read called `name` stands, if it ever ran.
    pub fn read_position(&self, name: &str) -> Result<Option<ReadPosition>> {
        let row = self.first(
            "SELECT since, position FROM delivery_read WHERE name = ?1",
            &[name.into()],
        )?;
        Ok(row.and_then(|r| {
            Some(ReadPosition {
                since: NaiveDate::parse_from_str(&text(&r, 0), "%Y-%m-%d").ok()?,
                position: count(&r, 1),
            })
        }))
    }

    /// Moves the read called `name` to `to`.
    pub fn set_read_position(&self, name: &str, to: ReadPosition) -> Result<()> {
        let (sql, params) = position_stmt(name, to);
        self.run(sql, &params)?;
        Ok(())
    }

    /// Every mail the journal has as sent.
    pub fn sent_mails(&self) -> Result<Vec<SentMail>> {
        let rows = self.rows(
            "SELECT identity, brevo_id, template, recipient FROM sent",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| SentMail {
                identity: text(r, 0),
                brevo_id: text(r, 1),
                template_id: u32::try_from(count(r, 2)).unwrap_or(0),
                recipient: text(r, 3),
            })
            .collect())
    }

    /// When the oldest mail in the journal was sent.
    pub fn oldest_sent(&self) -> Result<Option<DateTime<Utc>>> {
        let row = self.first("SELECT MIN(sent_at) FROM sent", &[])?;
        Ok(row
            .and_then(|r| r.first().and_then(Value::text))
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.to_utc()))
    }

    /// Records a page of events in one transaction, with the read position after it:
    /// each event not seen before is counted (the day's counts by `day_of` its date, the
    /// metric by event and template), its mail's latest state updated, its outcome put
    /// in the outbox, and a suppressing event's address suppressed. A page recorded is
    /// never read again; a page not recorded is read again, whole. (Events are read
    /// under the run lock: what was seen is read before the transaction.)
    pub fn record_events(
        &self,
        settled: &[Settled],
        after: (&str, ReadPosition),
        day_of: impl Fn(DateTime<Utc>) -> NaiveDate,
    ) -> Result<Recorded> {
        let [seen, latest, day, outbox, counter, suppress] = RECORD;
        let mut done = Recorded::default();
        let mut stmts = Vec::new();
        let mut suppressions = Vec::new();
        let mut fresh = std::collections::HashSet::new();
        for s in settled {
            if !fresh.insert(s.key.as_str())
                || self
                    .first(
                        "SELECT 1 FROM delivery_seen WHERE key = ?1",
                        &[s.key.as_str().into()],
                    )?
                    .is_some()
            {
                continue;
            }
            let at = stamp(s.event.date);
            stmts.push((seen, vec![s.key.as_str().into(), at.as_str().into()]));
            done.new += 1;
            let Some(o) = &s.outcome else { continue };
            done.matched += 1;
            *done.by_event.entry(o.event.clone()).or_default() += 1;
            stmts.push((
                latest,
                vec![
                    o.identity.as_str().into(),
                    o.event.as_str().into(),
                    at.as_str().into(),
                    o.reason.clone().into(),
                ],
            ));
            stmts.push((
                day,
                vec![
                    day_of(s.event.date).to_string().into(),
                    o.event.as_str().into(),
                ],
            ));
            let labels = format!(
                "subcommand=events,event={},template={}",
                o.event, o.template_id
            );
            stmts.push((counter, vec![EVENTS_COUNTER.into(), labels.into()]));
            stmts.push((
                outbox,
                vec![
                    s.key.as_str().into(),
                    at.as_str().into(),
                    o.event.as_str().into(),
                    serde_json::to_string(o)?.into(),
                ],
            ));
            if o.suppressed {
                let email = s.event.email.to_lowercase();
                suppressions.push(stmts.len());
                stmts.push((
                    suppress,
                    vec![email.into(), o.event.as_str().into(), at.into()],
                ));
            }
        }
        stmts.push(position_stmt(after.0, after.1));
        let changed = self.run_each(&stmts)?;
        done.suppressed = suppressions
            .iter()
            .map(|&i| u32::try_from(changed.get(i).copied().unwrap_or(0)).unwrap_or(0))
            .sum();
        Ok(done)
    }

    /// The outcomes not yet confirmed by the broker, oldest first: (key, routing key, body).
    pub fn pending_outcomes(&self, limit: u32) -> Result<Vec<(String, String, String)>> {
        let rows = self.rows(
            "SELECT key, routing, body FROM delivery_outbox ORDER BY at, key LIMIT ?1",
            &[i64::from(limit).into()],
        )?;
        Ok(rows
            .iter()
            .map(|r| (text(r, 0), text(r, 1), text(r, 2)))
            .collect())
    }

    /// Forgets outcomes the broker confirmed.
    pub fn outcomes_published(&self, keys: &[String]) -> Result<()> {
        let rows: Vec<Vec<Value>> = keys.iter().map(|k| vec![k.as_str().into()]).collect();
        self.run_all("DELETE FROM delivery_outbox WHERE key = ?1", &rows)?;
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
        const INSERT: &str = "INSERT INTO suppressed (email, reason, source, at)
             VALUES (?1, ?2, 'blockedContacts', ?3) ON CONFLICT (email) DO NOTHING";
        let mut stmts = Vec::with_capacity(contacts.len());
        let mut listed = std::collections::HashSet::with_capacity(contacts.len());
        for c in contacts {
            let email = c.email.to_lowercase();
            let at = stamp(c.blocked_at.unwrap_or(now));
            stmts.push((
                INSERT,
                vec![email.as_str().into(), c.code.as_str().into(), at.into()],
            ));
            listed.insert(email);
        }
        let inserts = stmts.len();
        if whole {
            // Under the run lock: nobody adds a blocked contact between this read and
            // the transaction below.
            let known = self.rows(
                "SELECT email FROM suppressed WHERE source = 'blockedContacts'",
                &[],
            )?;
            for e in known.iter().map(|r| text(r, 0)) {
                if !listed.contains(&e) {
                    stmts.push(("DELETE FROM suppressed WHERE email = ?1", vec![e.into()]));
                }
            }
        }
        let changed = self.run_each(&stmts)?;
        Ok(changed[..inserts.min(changed.len())]
            .iter()
            .map(|&n| u32::try_from(n).unwrap_or(0))
            .sum())
    }

    /// Whether (and why) mail to `email` is not to be sent.
    pub fn suppression(&self, email: &str) -> Result<Option<Suppression>> {
        let row = self.first(
            "SELECT reason, source, at FROM suppressed WHERE email = ?1",
            &[email.trim().to_lowercase().into()],
        )?;
        Ok(row.map(|r| Suppression {
            reason: text(&r, 0),
            source: text(&r, 1),
            at: text(&r, 2),
        }))
    }

    /// Mails to `email` may be sent again (an operator replayed them, after the
    /// address was fixed or unblocked).
    pub fn unsuppress(&self, email: &str) -> Result<()> {
        self.run(
            "DELETE FROM suppressed WHERE email = ?1",
            &[email.trim().to_lowercase().into()],
        )?;
        Ok(())
    }

    /// A day's delivery events of acaso-mail's mails, by event name.
    pub fn delivery_counts(&self, day: NaiveDate) -> Result<BTreeMap<String, u64>> {
        let rows = self.rows(
            "SELECT event, n FROM delivery_day WHERE day = ?1",
            &[day.to_string().into()],
        )?;
        Ok(rows.iter().map(|r| (text(r, 0), count(r, 1))).collect())
    }

    /// A day's delivery.
    pub fn delivery_day(&self, day: NaiveDate) -> Result<crate::delivery::DeliveryDay> {
        Ok(crate::delivery::DeliveryDay {
            events: self.delivery_counts(day)?,
            suppressed: self.suppressed_count()?,
        })
    }

    /// How many addresses are suppressed.
    pub fn suppressed_count(&self) -> Result<u64> {
        let row = self.first("SELECT COUNT(*) FROM suppressed", &[])?;
        Ok(row.map_or(0, |r| count(&r, 0)))
    }

    /// A mail's latest delivery state: (event, date).
    pub fn delivery_state(&self, identity: &str) -> Result<Option<(String, String)>> {
        let row = self.first(
            "SELECT event, at FROM delivery WHERE identity = ?1",
            &[identity.into()],
        )?;
        Ok(row.map(|r| (text(&r, 0), text(&r, 1))))
    }

    /// Forgets events seen before `before` (Brevo keeps 90 days; older ones cannot come back).
    pub fn prune_delivery(&self, before: DateTime<Utc>) -> Result<usize> {
        let n = self.run(
            "DELETE FROM delivery_seen WHERE at < ?1",
            &[stamp(before).into()],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brevo::events::Event;
    use crate::delivery::{Matcher, settle};

    fn on_sqlite(test: fn(&Store)) {
        let dir = tempfile::tempdir().expect("tmp");
        test(&Store::open(dir.path()).expect("store"));
    }

    /// On a database of its own in the tests' private PostgreSQL cluster.
    fn on_postgres(test: fn(&Store)) {
        let dir = tempfile::tempdir().expect("tmp");
        let url = crate::state::tests::pg_url();
        let place = crate::state::Place {
            dir: dir.path(),
            url: Some(&url),
            timeout: std::time::Duration::from_secs(10),
        };
        test(&Store::open(place).expect("store"));
    }

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
    fn a_page_is_recorded_once_with_its_position_and_the_latest_state_wins_in_sqlite() {
        on_sqlite(a_page_is_recorded_once_with_its_position_and_the_latest_state_wins);
    }

    #[test]
    fn a_page_is_recorded_once_with_its_position_and_the_latest_state_wins_in_postgres() {
        on_postgres(a_page_is_recorded_once_with_its_position_and_the_latest_state_wins);
    }

    fn a_page_is_recorded_once_with_its_position_and_the_latest_state_wins(s: &Store) {
        // A journal without the tables suppresses nothing.
        assert_eq!(s.suppression("a@example.org").expect("read"), None);
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
    fn blocked_contacts_no_longer_listed_are_lifted_only_after_a_whole_read_in_sqlite() {
        on_sqlite(blocked_contacts_no_longer_listed_are_lifted_only_after_a_whole_read);
    }

    #[test]
    fn blocked_contacts_no_longer_listed_are_lifted_only_after_a_whole_read_in_postgres() {
        on_postgres(blocked_contacts_no_longer_listed_are_lifted_only_after_a_whole_read);
    }

    fn blocked_contacts_no_longer_listed_are_lifted_only_after_a_whole_read(s: &Store) {
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
