//! What becomes of each mail on its way through a re-ordering (`reprioritize`, and the
//! way back for the mails an interrupted one left in the staging queue): re-queued with
//! today's priority, parked, or dropped as a copy of one already sent.

use std::cell::RefCell;

use anyhow::Result;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::envelope::Envelope;
use crate::mail;
use crate::mailbox::Reorder;
use crate::park::ParkReason;
use crate::state::Store;
use crate::urgency::{PriorityScale, Urgency};

/// What a re-ordering does with one mail, by its deadline alone.
pub fn fate(tz: Tz, scale: PriorityScale, now: DateTime<Utc>, e: &Envelope) -> Reorder {
    match mail::parse(&e.body, tz) {
        Ok(m) => match Urgency::of(m.deadline, now, tz) {
            Urgency::Expired => Reorder::Park {
                reason: ParkReason::Expired,
                detail: "deadline passed before reprioritize".into(),
            },
            u => Reorder::Requeue(scale.priority(u)),
        },
        Err(bad) => Reorder::Park {
            reason: bad.reason(),
            detail: bad.to_string(),
        },
    }
}

/// The journal as a re-ordering consults it, mail by mail. A re-ordering cannot stop
/// inside a mail: when the journal fails (in PostgreSQL, its connection holds the run
/// lock), that mail is answered the safe way (not known as sent; re-queued rather than
/// parked), the error is kept, [`Consulted::failed`] stops the re-ordering before the
/// next mail, and [`Consulted::finish`] returns the error (exit 4 when the store is lost).
pub struct Consulted<'a> {
    journal: &'a Store,
    error: RefCell<Option<anyhow::Error>>,
}

impl<'a> Consulted<'a> {
    /// Consults `journal`.
    pub fn new(journal: &'a Store) -> Self {
        Consulted {
            journal,
            error: RefCell::new(None),
        }
    }

    /// The answer, or `None` with its error kept (the first one).
    fn kept<T>(&self, r: Result<T>) -> Option<T> {
        r.map_err(|e| {
            self.error.borrow_mut().get_or_insert(e);
        })
        .ok()
    }

    /// What becomes of a mail on its way through a re-ordering, the journal considered.
    /// Whatever the journal could not answer is taken the way that parks nothing and
    /// drops nothing.
    pub fn fate(&self, tz: Tz, scale: PriorityScale, now: DateTime<Utc>, e: &Envelope) -> Reorder {
        let id = &e.identity;
        let sent = self.kept(self.journal.is_sent(id));
        if sent == Some(true) {
            return Reorder::Drop;
        }
        match fate(tz, scale, now, e) {
            // Not parked here: a mail the journal could not say was unsent; an expired
            // mail that an earlier attempt may have sent (the next drain asks Brevo's log
            // whether it went); and a mail a copy of which may already be parked (the
            // next drain looks in the parking queue). Back at the head of the queue, the
            // drain settles them.
            Reorder::Park { reason, .. }
                if sent.is_none()
                    || self.kept(self.journal.may_be_parked(id)) != Some(false)
                    || (reason == ParkReason::Expired
                        && self
                            .kept(self.journal.uncertainty(id))
                            .is_none_or(|u| u.is_some())) =>
            {
                Reorder::Requeue(scale.priority(Urgency::Expired))
            }
            f => f,
        }
    }

    /// Whether the journal failed: the re-ordering stops before the next mail.
    pub fn failed(&self) -> bool {
        self.error.borrow().is_some()
    }

    /// The journal's first error, if it failed.
    pub fn finish(self) -> Result<()> {
        match self.error.into_inner() {
            Some(e) => Err(e.context("consulting the state store during a re-ordering")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::identity;

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).expect("instant").to_utc()
    }

    fn expired(id: &str) -> Envelope {
        let body = format!(
            r#"{{"template_id": 7, "to": [{{"email": "{id}@example.org"}}], "deadline": "2026-11-20T20:00:00-03:00"}}"#
        );
        Envelope {
            identity: identity(Some(id), body.as_bytes()),
            message_id: Some(id.into()),
            priority: 9,
            body: body.into_bytes(),
            ..Envelope::default()
        }
    }

    #[test]
    fn a_journal_that_fails_gets_the_safe_answer_stops_the_reordering_and_is_its_error() {
        let (tz, scale, now) = (
            chrono_tz::UTC,
            PriorityScale::new(9),
            at("2026-11-27T15:00:00Z"),
        );
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        let consulted = Consulted::new(&store);
        // A healthy journal: an expired mail nobody sent, and of which no copy was
        // parked, is parked as expired; one it knows as sent is dropped.
        assert!(matches!(
            consulted.fate(tz, scale, now, &expired("a")),
            Reorder::Park {
                reason: ParkReason::Expired,
                ..
            }
        ));
        store
            .record_sent(&expired("b").identity, "<b@brevo>", 7, "b@example.org", now)
            .expect("journaled");
        assert!(matches!(
            consulted.fate(tz, scale, now, &expired("b")),
            Reorder::Drop
        ));
        assert!(!consulted.failed());
        // The journal fails (here its tables are gone; in PostgreSQL, a lost connection
        // that held the run lock): the mail is not parked on its word but re-queued
        // (the next drain settles it), and the re-ordering is told to stop.
        store.run("DROP TABLE sent", &[]).expect("drop");
        assert!(matches!(
            consulted.fate(tz, scale, now, &expired("c")),
            Reorder::Requeue(_)
        ));
        assert!(consulted.failed());
        let err = consulted
            .finish()
            .expect_err("the journal's error is the run's");
        assert!(format!("{err:#}").contains("sent"), "{err:#}");
    }
}
