//! An in-memory [`Mailbox`] for unit tests of the drain: a priority queue of envelopes,
//! with every settlement recorded so a test can check where each mail went.

use std::collections::BTreeMap;

use anyhow::Result;

use super::Envelope;
use crate::taken::{Mailbox, Parking, Retry, Taken};

/// Where a mail ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Acked (sent, or found already sent).
    Acked,
    /// Parked with this reason.
    Parked(String),
    /// In the retry queue of this delay, after this many failures.
    Retrying {
        /// Failures counted.
        attempts: u32,
        /// The delay.
        delay_secs: u64,
    },
}

/// The in-memory mailbox.
#[derive(Debug, Default)]
pub struct Memory {
    ready: Vec<(u64, Envelope)>,
    held: BTreeMap<u64, Envelope>,
    next: u64,
    /// Every settled mail, in order: (identity, where it went).
    pub settled: Vec<(String, Settled)>,
    /// Fail every operation from now on, as a lost broker would.
    pub broken: bool,
    /// Fail only the final sync, as a broker lost after the last ack was written would.
    pub sync_fails: bool,
}

impl Memory {
    /// A mailbox holding these mails (queued in the order given, within a priority).
    pub fn with(mails: impl IntoIterator<Item = Envelope>) -> Self {
        let mut m = Memory::default();
        for e in mails {
            m.push(e);
        }
        m
    }

    /// Queues a mail behind those of its priority.
    pub fn push(&mut self, e: Envelope) {
        self.next += 1;
        self.ready.push((self.next, e));
        // Highest priority first, then arrival order: what a priority queue serves.
        self.ready
            .sort_by(|a, b| b.1.priority.cmp(&a.1.priority).then(a.0.cmp(&b.0)));
    }

    /// Identities still queued, in order.
    pub fn queued(&self) -> Vec<String> {
        self.ready.iter().map(|(_, e)| e.identity.clone()).collect()
    }

    /// Mails taken and not settled.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    fn check(&self) -> Result<()> {
        if self.broken {
            return Err(super::broker::lost(
                "talking to the test broker",
                "it is gone",
            ));
        }
        Ok(())
    }

    fn release(&mut self, taken: &Taken<u64>) -> Result<Envelope> {
        self.check()?;
        let tag = taken.ticket;
        self.held
            .remove(&tag)
            .ok_or_else(|| anyhow::anyhow!("mail {tag} settled twice"))
    }

    fn settle(&mut self, taken: Taken<u64>, to: Settled) -> Result<()> {
        let e = self.release(&taken)?;
        self.settled.push((e.identity, to));
        Ok(())
    }
}

impl Mailbox for Memory {
    type Ticket = u64;

    async fn take(&mut self) -> Result<Option<Taken<u64>>> {
        self.check()?;
        if self.ready.is_empty() {
            return Ok(None);
        }
        let (tag, mail) = self.ready.remove(0);
        self.held.insert(tag, mail.clone());
        Ok(Some(Taken { mail, ticket: tag }))
    }

    async fn ack(&mut self, taken: Taken<u64>) -> Result<()> {
        self.settle(taken, Settled::Acked)
    }

    async fn put_back(&mut self, taken: Taken<u64>) -> Result<()> {
        let e = self.release(&taken)?;
        let tag = taken.ticket;
        self.ready.push((tag, e));
        self.ready
            .sort_by(|a, b| b.1.priority.cmp(&a.1.priority).then(a.0.cmp(&b.0)));
        Ok(())
    }

    async fn park(&mut self, taken: Taken<u64>, why: Parking<'_>) -> Result<()> {
        self.settle(taken, Settled::Parked(why.reason.to_string()))
    }

    async fn parked_identities(
        &mut self,
        mut wanted: impl FnMut(&str) -> bool,
    ) -> Result<std::collections::HashSet<String>> {
        self.check()?;
        Ok(self
            .settled
            .iter()
            .filter(|(id, s)| matches!(s, Settled::Parked(_)) && wanted(id))
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn sync(&mut self) -> Result<()> {
        self.check()?;
        if self.sync_fails {
            return Err(super::broker::lost(
                "confirming the acks",
                "connection reset",
            ));
        }
        Ok(())
    }

    async fn retry(&mut self, taken: Taken<u64>, next: Retry<'_>) -> Result<()> {
        let to = Settled::Retrying {
            attempts: next.attempts,
            delay_secs: next.delay.secs(),
        };
        self.settle(taken, to)
    }
}
