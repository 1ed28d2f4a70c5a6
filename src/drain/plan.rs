//! The dry run: what a drain would send or set aside, in order, from mails looked at
//! without being taken. Nothing is sent, acked or moved.

use anyhow::Result;
use schemars::JsonSchema;
use serde::Serialize;

use super::decide::{Decision, Rules, decide};
use crate::mail::Who;
use crate::mailbox::Envelope;
use crate::state::Store;

/// What a drain would do with a mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Send it.
    Send,
    /// Park it.
    Park,
    /// Ack it: the journal says it was sent.
    #[serde(rename = "already sent")]
    AlreadySent,
}

impl Action {
    /// The word tables show.
    pub fn word(self) -> &'static str {
        match self {
            Action::Send => "send",
            Action::Park => "park",
            Action::AlreadySent => "already sent",
        }
    }
}

/// One mail of a dry run's plan.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Planned {
    /// What the drain would do with it.
    pub action: Action,
    /// Urgency band.
    pub urgency: String,
    /// Its current priority.
    pub priority: u8,
    /// Its template and first recipient, when readable.
    #[serde(flatten)]
    pub who: Who,
    /// Why it would be parked.
    pub reason: Option<String>,
}

/// What a drain would do, in order.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "acaso-mail drain-hourly|drain-eod --dry-run --json")]
pub struct Plan {
    /// Always true: nothing was sent, acked or moved.
    pub dry_run: bool,
    /// The budget the run would have.
    pub budget: u32,
    /// Credits Brevo reports.
    pub credits: f64,
    /// The mails, in the order the drain would take them.
    pub mails: Vec<Planned>,
}

/// The plan for `browsed` (the head of the queue, in drain order).
pub fn plan(
    rules: &Rules,
    journal: Option<&Store>,
    credits: f64,
    browsed: Vec<Envelope>,
) -> Result<Plan> {
    let mut mails = Vec::new();
    let mut committed = 0u32;
    for b in browsed {
        if committed >= rules.caps.credits {
            break;
        }
        let priority = b.priority;
        let item = match decide(rules, journal, &b, committed)? {
            Decision::Stop => break,
            Decision::AlreadySent => Planned {
                action: Action::AlreadySent,
                urgency: "-".into(),
                priority,
                who: Who::default(),
                reason: None,
            },
            Decision::Park { reason, detail } => Planned {
                action: Action::Park,
                urgency: if reason == "expired" {
                    "expired"
                } else {
                    "bad"
                }
                .into(),
                priority,
                who: Who::of(&b.body, rules.tz),
                reason: Some(format!("{reason}: {detail}")),
            },
            Decision::Send(m, u) => {
                committed += 1;
                Planned {
                    action: Action::Send,
                    urgency: u.band().into(),
                    priority,
                    who: Who::from(m.as_ref()),
                    reason: None,
                }
            }
        };
        mails.push(item);
    }
    Ok(Plan {
        dry_run: true,
        budget: rules.caps.soft,
        credits,
        mails,
    })
}
