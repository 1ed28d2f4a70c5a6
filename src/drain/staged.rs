//! The mails on their way through a re-ordering (`reprioritize`): what becomes of each
//! (re-queued with today's priority, parked, or dropped as a copy of one already sent),
//! and the way back for the mails an interrupted re-ordering left in the staging queue,
//! which every run that holds the run lock takes first.

use anyhow::Result;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::envelope::Envelope;
use crate::mail;
use crate::mailbox::{Rabbit, Reorder};
use crate::park::ParkReason;
use crate::signal::Cancel;
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

/// What becomes of a mail on its way through a re-ordering, the journal considered.
pub fn journaled_fate(
    tz: Tz,
    scale: PriorityScale,
    now: DateTime<Utc>,
    journal: &Store,
    e: &Envelope,
) -> Reorder {
    match journal.is_sent(&e.identity) {
        Ok(true) => Reorder::Drop,
        _ => match fate(tz, scale, now, e) {
            // Not parked here: an expired mail that an earlier attempt may have
            // sent (the next drain asks Brevo's log whether it went), and a mail
            // a copy of which may already be parked (the next drain looks in
            // the parking queue). Back at the head of the queue, the drain
            // settles them.
            Reorder::Park { reason, .. }
                if !matches!(journal.may_be_parked(&e.identity), Ok(false))
                    || (reason == ParkReason::Expired
                        && !matches!(journal.uncertainty(&e.identity), Ok(None))) =>
            {
                Reorder::Requeue(scale.priority(Urgency::Expired))
            }
            f => f,
        },
    }
}

/// Puts back in the main queue, with today's priorities, the mails an interrupted
/// `reprioritize` left in the staging queue (its way back, alone). Every run that holds
/// the run lock calls it first: a `reprioritize` killed at 03:05 must not keep the day's
/// most urgent mail from the drains, nor from `stats`' counts. `now` should not be
/// ahead of the clock ([`crate::config::Config::now_not_ahead`]). Returns how many mails went back; a notice
/// says so.
pub async fn finish_interrupted(
    mailbox: &mut Rabbit,
    journal: &Store,
    tz: Tz,
    now: DateTime<Utc>,
    cancel: &Cancel,
) -> Result<u64> {
    if mailbox.depth().await?.staging == 0 {
        return Ok(0);
    }
    let scale = mailbox.info().scale();
    let r = mailbox
        .unstage(
            |e| journaled_fate(tz, scale, now, journal, e),
            |parked| journal.record_parking(parked.iter().map(String::as_str), now),
            || cancel.received().is_some(),
            now,
        )
        .await?;
    crate::warn::notice(&format!(
        "put back {} mail(s) an interrupted reprioritize had left in {} ({} duplicate(s) dropped, {} parked)",
        r.requeued,
        mailbox.topology().staging(),
        r.duplicates,
        r.parked.values().sum::<u64>()
    ));
    Ok(r.requeued)
}
