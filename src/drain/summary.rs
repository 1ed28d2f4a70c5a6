//! What a drain did, as the contract's JSON and as the totals metrics keep.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use crate::error::Failure;

/// What a drain did. Serialised as the contract's JSON (fields may be added only).
#[derive(Debug, Default, Clone, Serialize, JsonSchema)]
#[schemars(title = "acaso-mail drain-hourly|drain-eod --json")]
pub struct Summary {
    /// Mails this run was allowed to send.
    pub budget: u32,
    /// Mails Brevo accepted this run.
    pub sent: u32,
    /// Sends that failed (retried later or parked).
    pub failed: u32,
    /// Mails set aside because their deadline had passed.
    pub expired: u32,
    /// Mails still queued when the run ended.
    pub remaining: u32,
    /// Mails parked (bad message, refused by Brevo, retries exhausted), expired excluded.
    pub parked: u32,
    /// Failed sends put in a retry queue.
    pub retried: u32,
    /// Redelivered mails found already sent (acked without sending again).
    pub already_sent: u32,
    /// Originals a dead run left behind after parking a copy (acked: the copy is parked).
    pub already_parked: u32,
    /// Times Brevo answered 429 and the run paused.
    pub rate_limited: u32,
    /// Brevo credits at the start of the run.
    pub credits: f64,
    /// Why the run stopped before the queue was empty or the budget used, if it did.
    pub stopped: Option<String>,
    /// Sent mails per template id.
    pub sent_by_template: BTreeMap<u32, u32>,
    /// Sent mails per priority.
    pub sent_by_priority: BTreeMap<u8, u32>,
    /// Parked mails per reason.
    pub parked_by_reason: BTreeMap<String, u32>,
    /// A failure that ends the run with a non-zero exit after the summary is shown.
    #[serde(skip)]
    pub fatal: Option<Fatal>,
}

/// Why a run must end with a non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fatal {
    /// Brevo refused the key (exit 5).
    Credentials(String),
    /// RabbitMQ, Brevo or the state store failed (exit 4).
    Unavailable(String),
}

impl Summary {
    /// What the run adds to the day's tallies (`stats`' today), by kind.
    pub fn tallies(&self) -> [(&'static str, u64); 4] {
        [
            ("sent", u64::from(self.sent + self.already_sent)),
            ("failed", u64::from(self.failed)),
            ("expired", u64::from(self.expired)),
            ("parked", u64::from(self.parked + self.expired)),
        ]
    }

    /// The failure to exit with, if any.
    pub fn failure(&self) -> Option<Failure> {
        Some(match self.fatal.clone()? {
            Fatal::Credentials(m) => Failure::Credentials(m),
            Fatal::Unavailable(m) => Failure::Unavailable(m),
        })
    }

    /// Records the first fatal failure (later ones are consequences of it).
    pub fn fail(&mut self, fatal: Fatal) {
        if self.fatal.is_none() {
            let (Fatal::Credentials(m) | Fatal::Unavailable(m)) = &fatal;
            self.stopped = Some(m.clone());
            self.fatal = Some(fatal);
        }
    }

    /// Counts a parked mail under its reason.
    pub fn park_count(&mut self, reason: &str) {
        *self.parked_by_reason.entry(reason.to_string()).or_default() += 1;
        if reason == "expired" {
            self.expired += 1;
        } else {
            self.parked += 1;
        }
    }

    /// Counts a sent mail.
    pub fn sent_one(&mut self, template: u32, priority: u8) {
        self.sent += 1;
        *self.sent_by_template.entry(template).or_default() += 1;
        *self.sent_by_priority.entry(priority).or_default() += 1;
    }

    /// The one line people read.
    pub fn line(&self) -> String {
        let mut text = format!(
            // Expired mails are parked too (stats counts them so): one figure, then why.
            "sent {} of a budget of {} ({} credits); {} failed, {} parked ({} of them expired), {} to retry, {} already sent; {} still queued",
            self.sent,
            self.budget,
            self.credits,
            self.failed,
            self.parked + self.expired,
            self.expired,
            self.retried,
            self.already_sent,
            self.remaining
        );
        if self.already_parked > 0 {
            text.push_str(&format!(
                "; {} already parked (acked: a copy of each waits in the parking queue; `dead-letters` shows it)",
                self.already_parked
            ));
        }
        if let Some(why) = &self.stopped {
            text.push_str(&format!("; stopped: {why}"));
        }
        text
    }
}
