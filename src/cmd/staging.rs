//! The way back for the mails an interrupted `reprioritize` left in its staging queue,
//! shared by the commands that send or count them (the drains, `stats`): a
//! `reprioritize` killed at 03:05 must not keep the day's most urgent mail from the
//! drains, nor from `stats`' counts. Not a command of its own.

use anyhow::Result;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::drain::staged::Consulted;
use crate::mailbox::Rabbit;
use crate::signal::Cancel;
use crate::state::Store;

/// Puts back in the main queue, with today's priorities, the mails an interrupted
/// `reprioritize` left in the staging queue (its way back, alone). `journal` is the
/// caller's, opened under the run lock; `now` should not be ahead of the clock
/// ([`crate::config::Config::now_not_ahead`]). Returns how many mails went back; a
/// notice says so.
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
    let consulted = Consulted::new(journal);
    let r = mailbox
        .unstage(
            |e| consulted.fate(tz, scale, now, e),
            |parked| journal.record_parking(parked.iter().map(String::as_str), now),
            || cancel.received().is_some() || consulted.failed(),
            now,
        )
        .await?;
    consulted.finish()?;
    crate::warn::notice(&format!(
        "put back {} mail(s) an interrupted reprioritize had left in {} ({} duplicate(s) dropped, {} parked)",
        r.requeued,
        mailbox.topology().staging(),
        r.duplicates,
        r.parked.values().sum::<u64>()
    ));
    Ok(r.requeued)
}
