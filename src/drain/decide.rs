//! What a drain does with the mail at the head of the queue. Shared by the drain and
//! its dry run, so that the plan shown is the plan carried out.

use anyhow::Result;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::budget::Caps;
use crate::mail::{self, Mail};
use crate::mailbox::Envelope;
use crate::park::ParkReason;
use crate::state::Store;
use crate::urgency::Urgency;

/// The fate of one mail.
#[derive(Debug)]
pub enum Decision {
    /// Journaled as sent by an earlier run: ack it, send nothing.
    AlreadySent,
    /// Set it aside.
    Park {
        /// Why.
        reason: ParkReason,
        /// The details.
        detail: String,
    },
    /// Budget used: put it back and stop taking mail.
    Stop,
    /// Send it.
    Send(Box<Mail>, Urgency),
}

/// What [`decide`] needs that is fixed for a run.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// The zone that defines "today".
    pub tz: Tz,
    /// "Now" for the run.
    pub now: DateTime<Utc>,
    /// Whether "now" was given (`--now`): then it stands still for the whole run.
    pub fixed: bool,
    /// The run's caps.
    pub caps: Caps,
    /// Park mail to addresses Brevo reported dead or blocked (`--no-suppress`: false).
    pub suppress: bool,
}

impl Rules {
    /// The time now: the clock, unless "now" was given. A run can last long (429
    /// pauses, a big end-of-day backlog): the journal's times and Brevo's 30-minute
    /// window are about real time, not the run's start.
    pub fn clock(&self) -> DateTime<Utc> {
        if self.fixed { self.now } else { Utc::now() }
    }
}

/// Decides the fate of one mail, `committed` sends having been made or started.
pub fn decide(
    rules: &Rules,
    journal: Option<&Store>,
    mail: &Envelope,
    committed: u32,
) -> Result<Decision> {
    if let Some(store) = journal
        && store.is_sent(&mail.identity)?
    {
        return Ok(Decision::AlreadySent);
    }
    let m = match mail::parse(&mail.body, rules.tz) {
        Ok(m) => m,
        Err(bad) => {
            return Ok(Decision::Park {
                reason: bad.reason(),
                detail: bad.to_string(),
            });
        }
    };
    let urgency = Urgency::of(m.deadline, rules.now, rules.tz);
    if urgency == Urgency::Expired {
        let when = m.deadline.map(|d| d.to_rfc3339()).unwrap_or_default();
        return Ok(Decision::Park {
            reason: ParkReason::Expired,
            detail: format!("deadline {when} passed"),
        });
    }
    if rules.suppress
        && let Some(store) = journal
        && let Some(detail) = super::suppress::check(store, &m)?
    {
        return Ok(Decision::Park {
            reason: super::suppress::REASON,
            detail,
        });
    }
    if committed >= rules.caps.soft && !(rules.caps.overflow && urgency == Urgency::Days(0)) {
        return Ok(Decision::Stop);
    }
    Ok(Decision::Send(Box::new(m), urgency))
}
