//! Asking Brevo instead of guessing: a mail whose earlier attempt's answer was never
//! seen, taken again after Brevo's idempotency window, is looked up in Brevo's
//! transactional log. Found means sent (journal it, ack it); absent means the earlier
//! attempt never went (send it); a log that does not answer this time (429, 5xx) is
//! asked again later, for hours; a log that cannot tell means nobody can (park it as
//! `uncertain_send` for a person).

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::engine::{Drain, Job, Prepared};
use crate::brevo::{LogAnswer, LogQuery, Sender, idempotency_key};
use crate::mail::Mail;
use crate::mailbox::topology::retry_delay;
use crate::mailbox::{Mailbox, Taken};
use crate::park::ParkReason;
use crate::state::Outcome;

/// Log look-ups one run may make: Brevo allows 100 an hour for all such calls, and a
/// run is at least an hour from the next. Past it, the mail waits for a later run.
pub(super) const MAX_LOOKUPS: u32 = 25;

/// How long after a send whose answer was never seen it is still safe to send again:
/// Brevo refuses a repeated idempotency key for 15 minutes by its changelog, 30 by its
/// guide; assume the shorter and keep a margin. Past it, the mail waits until Brevo's
/// log can list the latest attempt ([`LOG_SETTLE`]), then the log is asked: it is never
/// resent blindly in between.
const UNSEEN_SEND_LIMIT: chrono::Duration = chrono::Duration::minutes(12);
/// How long Brevo's log may take to list a mail it accepted (undocumented: "allow
/// minutes"); a look-up sooner than this after the latest attempt is not asked yet.
pub(crate) const LOG_SETTLE: chrono::Duration = chrono::Duration::minutes(20);

/// How long a mail whose look-ups get no answer (429, 5xx, network) keeps waiting for
/// Brevo's log, from the first attempt in doubt; then it is parked as `uncertain_send`.
const GIVE_UP: chrono::Duration = chrono::Duration::hours(6);
/// The least wait before a look-up that got no answer is asked again.
const LATER_SECS: u64 = 300;

/// What the log said, for the drain.
pub(super) enum Looked {
    /// The mail is settled (acked as sent, or parked); the result of doing so.
    Settled(Result<()>),
    /// Not sent: send it.
    NotSent(Box<Taken>),
}

impl<M: Mailbox, S: Sender> Drain<'_, M, S> {
    /// Opens the attempt in the journal and, when an earlier attempt's answer was never
    /// seen and Brevo's window has passed since, asks Brevo's log first.
    pub(super) async fn prepare(&mut self, taken: Taken, m: &Mail) -> Result<Prepared> {
        let id = taken.mail.identity.clone();
        let now = self.rules.clock();
        let prior = self.io.store.begin_send(&id, now)?;
        let (taken, uncertain) = match prior.uncertain_since {
            // Within Brevo's window the key guards a resend, unless `doctor
            // --idempotency-probe` saw Brevo accept a repeated key: then the log first.
            Some(since) if now - since >= UNSEEN_SEND_LIMIT || !self.io.store.key_trusted()? => {
                if let Some(last) = prior.last_at
                    && now - last < LOG_SETTLE
                {
                    // The latest attempt may not be in the log yet: ask it later.
                    self.io.store.end_send(&id, Outcome::Known)?;
                    let wait = (LOG_SETTLE - (now - last)).num_seconds().max(0);
                    let delay = retry_delay(1, u64::try_from(wait).ok());
                    let detail = "an earlier attempt's answer was never seen, and Brevo's log cannot tell yet";
                    self.s.retried += 1;
                    let (attempts, taken) = (taken.mail.attempts, taken);
                    return Ok(Prepared::Settled(
                        self.retry(taken, attempts, delay, detail).await,
                    ));
                }
                match self.look_up(taken, m, since).await? {
                    Looked::Settled(settled) => return Ok(Prepared::Settled(settled)),
                    Looked::NotSent(taken) => {
                        // The look-up closed this run's attempt: open it again for
                        // the send that follows.
                        self.io.store.begin_send(&id, self.rules.clock())?;
                        (*taken, false)
                    }
                }
            }
            other => (taken, other.is_some()),
        };
        let request = m.brevo_request(&idempotency_key(&id));
        let job = Job {
            taken,
            template_id: m.template_id,
            recipient: m.first_recipient().to_string(),
            earlier_attempts: prior.attempts,
            uncertain,
        };
        Ok(Prepared::Send(Box::new((job, request))))
    }

    /// An expired mail that an earlier attempt may have sent is looked up before it is
    /// parked as expired: found means it went (acked as sent); a log that cannot tell
    /// yet keeps it for later. `Err(taken)` hands it back to be parked as expired.
    pub(super) async fn expired_but_maybe_sent(
        &mut self,
        taken: Taken,
    ) -> Result<std::result::Result<Result<()>, Box<Taken>>> {
        let id = taken.mail.identity.clone();
        let Some((since, last)) = self.io.store.uncertainty(&id)? else {
            return Ok(Err(Box::new(taken)));
        };
        let Ok(m) = crate::mail::parse(&taken.mail.body, self.rules.tz) else {
            return Ok(Err(Box::new(taken)));
        };
        let now = self.rules.clock();
        if let Some(last) = last
            && now - last < LOG_SETTLE
        {
            let wait = (LOG_SETTLE - (now - last)).num_seconds().max(0);
            let delay = retry_delay(1, u64::try_from(wait).ok());
            let detail =
                "expired, but an earlier attempt may have gone: Brevo's log is asked later";
            self.s.retried += 1;
            let attempts = taken.mail.attempts;
            return Ok(Ok(self.retry(taken, attempts, delay, detail).await));
        }
        Ok(match self.look_up(taken, &m, since).await? {
            Looked::Settled(settled) => Ok(settled),
            Looked::NotSent(taken) => Err(taken),
        })
    }

    /// Looks up a mail first attempted at `since` in Brevo's log.
    pub(super) async fn look_up(
        &mut self,
        taken: Taken,
        m: &Mail,
        since: DateTime<Utc>,
    ) -> Result<Looked> {
        let id = taken.mail.identity.clone();
        if self.lookups >= MAX_LOOKUPS {
            // Brevo's budget for log calls is spent for this run: ask in a later one. No
            // send was made here: an attempt a dead run left open stays a doubt.
            self.io.store.end_send(&id, Outcome::Unknown)?;
            let detail = format!("this run already asked Brevo's log {MAX_LOOKUPS} times");
            self.s.retried += 1;
            let attempts = taken.mail.attempts;
            let delay = retry_delay(1, Some(3600));
            return Ok(Looked::Settled(
                self.retry(taken, attempts, delay, &detail).await,
            ));
        }
        let answer = {
            self.lookups += 1;
            let query = LogQuery {
                email: m.first_recipient().to_string(),
                template_id: m.template_id,
                tag: idempotency_key(&id),
                days: LogQuery::days(since, self.rules.clock()),
            };
            let sender = self.io.sender.clone();
            tokio::task::spawn_blocking(move || sender.find_in_log(&query))
                .await
                .unwrap_or_else(|e| LogAnswer::Unreachable(format!("the log look-up failed: {e}")))
        };
        // No send was made here: closing keeps an attempt a dead run left open as a
        // doubt (the log's answer settles it below, or it stays one).
        self.io.store.end_send(&id, Outcome::Unknown)?;
        let now = self.rules.clock();
        Ok(match answer {
            LogAnswer::Found => {
                self.s.already_sent += 1;
                let note = "(found in Brevo's log)";
                let recipient = m.first_recipient();
                self.io.store.record_sent(
                    &id,
                    note,
                    m.template_id,
                    recipient,
                    self.rules.clock(),
                )?;
                Looked::Settled(self.io.mailbox.ack(taken).await)
            }
            LogAnswer::Absent => {
                // It never went. The caller opens an attempt if it sends it now (an
                // expired mail is parked instead, with no attempt left open).
                self.io.store.clear_uncertain(&id)?;
                Looked::NotSent(Box::new(taken))
            }
            LogAnswer::Later { why, retry_after } if now - since < GIVE_UP => {
                // Brevo's log did not answer this time: the mail waits, still in doubt,
                // and is looked up again later.
                let detail = format!("Brevo's log did not answer ({why}); asked again later");
                self.s.retried += 1;
                let attempts = taken.mail.attempts;
                let wait = retry_after.map_or(LATER_SECS, |d| d.as_secs().max(LATER_SECS));
                let delay = retry_delay(1, Some(wait));
                Looked::Settled(self.retry(taken, attempts, delay, &detail).await)
            }
            LogAnswer::Later { why, .. } | LogAnswer::Unreachable(why) => {
                let detail = format!(
                    "a send started at {} got no answer, and Brevo's log could not tell whether it went ({why}): check the log before replaying",
                    since.to_rfc3339()
                );
                Looked::Settled(self.park(taken, ParkReason::UncertainSend, &detail).await)
            }
        })
    }
}
