//! The drain's **settle** and **finish** steps: what each Brevo answer does to the
//! mail, the journal and the summary, and the checks that keep a run's ending truthful.

use std::time::Duration;

use anyhow::Result;
use tokio::time::Instant;

use super::engine::{Drain, Job, TakenFrom};
use super::summary::Fatal;
use crate::brevo::{SendOutcome, Sender};
use crate::park::ParkReason;
use crate::state::Outcome;
use crate::taken::{Mailbox, Parking, Retry, RetryDelay};

/// 429 answers a run honours by pausing; past that it stops.
const MAX_RATE_LIMITED: u32 = 50;
/// The longest pause a run makes for a 429; a longer wait stops the run instead.
const MAX_RATE_PAUSE: Duration = Duration::from_secs(60);
/// After this many transient failures in a row, Brevo is taken to be down.
const BREAKER: u32 = 5;
/// Brevo's longest documented idempotency window (its guide: 30 minutes; its changelog:
/// 15): a mail whose key Brevo refused waits this long, so the key has expired under
/// either, before its log is asked.
const KEY_WINDOW_SECS: u64 = 30 * 60;

impl<M: Mailbox, S: Sender> Drain<'_, M, S> {
    /// **settle**: acts on Brevo's answer. A broker failure here ends the run (exit 4)
    /// but lets the other sends in flight finish and be journaled.
    pub(super) async fn settle(&mut self, job: Job<M::Ticket>, outcome: SendOutcome) {
        let id = job.taken.mail.identity.clone();
        self.sending.remove(&id);
        // An attempt Brevo may have accepted makes the mail uncertain: the next take
        // resends it with the same key while Brevo still deduplicates it, parks it after.
        let accepted = matches!(outcome, SendOutcome::Sent { .. });
        let ambiguous = matches!(
            outcome,
            SendOutcome::Transient {
                ambiguous: true,
                ..
            }
        );
        let settled = self.settle_outcome(job, outcome).await;
        // Accepted but not journaled (the store failed): as good as an unseen answer.
        let seen = if ambiguous || (accepted && settled.is_err()) {
            Outcome::Unknown
        } else {
            Outcome::Known
        };
        // An accepted mail's attempt was closed with its journal entry (one commit).
        let closed = accepted && settled.is_ok();
        if !closed && let Err(e) = self.io.store.end_send(&id, seen) {
            self.fail(Fatal::Unavailable(format!("state store: {e:#}")));
        }
        if let Err(e) = settled {
            self.fail(Fatal::Unavailable(format!(
                "settling a mail (RabbitMQ or the state store) failed: {e:#}"
            )));
        }
    }

    async fn settle_outcome(&mut self, job: Job<M::Ticket>, outcome: SendOutcome) -> Result<()> {
        match outcome {
            SendOutcome::Sent { message_id } => {
                self.transient_in_a_row = 0;
                self.s.sent_one(job.template_id, job.taken.mail.priority);
                self.accept(job, &message_id).await
            }
            SendOutcome::Duplicate if job.uncertain => {
                // An earlier attempt whose answer nobody saw was accepted: Brevo has it.
                self.s.already_sent += 1;
                self.accept(job, "(accepted by an earlier attempt)").await
            }
            SendOutcome::Duplicate if job.earlier_attempts > 0 => {
                // Brevo holds this key, yet no earlier attempt is known to have gone: one
                // may have been accepted behind a 5xx, or Brevo kept a refused attempt's
                // key. Never resend blindly: the mail becomes uncertain from now, waits
                // out the key's window, and is then looked up in Brevo's log.
                let id = &job.taken.mail.identity;
                self.io.store.mark_uncertain(id, self.rules.clock())?;
                let attempts = job.taken.mail.attempts + 1;
                let delay = RetryDelay::for_attempt(attempts, Some(KEY_WINDOW_SECS));
                let detail = "Brevo refused the key as a repeat (duplicate_parameter); its log is asked once the key has expired";
                self.s.failed += 1;
                self.retry(job.taken, attempts, delay, detail).await
            }
            SendOutcome::Duplicate => {
                let detail = "Brevo answered duplicate_parameter to a mail never attempted before";
                self.s.failed += 1;
                self.park(job.taken, ParkReason::BrevoDuplicate, detail)
                    .await
            }
            SendOutcome::Permanent {
                status,
                code,
                message,
            } => {
                let detail = format!("{status} {code}: {message}");
                self.s.failed += 1;
                self.park(job.taken, ParkReason::BrevoRejected, &detail)
                    .await
            }
            SendOutcome::NoCredits => {
                self.stop_taking();
                self.s
                    .stopped
                    .get_or_insert_with(|| "Brevo reports no credits left".into());
                self.io.mailbox.put_back(job.taken).await
            }
            SendOutcome::Refused { status, message } => {
                self.fail(Fatal::Credentials(format!(
                    "{status} {message}; every send would be refused, nothing was parked"
                )));
                self.io.mailbox.put_back(job.taken).await
            }
            SendOutcome::Unavailable { status, message } => {
                self.fail(Fatal::Unavailable(format!(
                    "Brevo answered {status} to POST /smtp/email ({message}): an answer about the endpoint, not the mail; check SENDINBLUE_URL and any proxy. Nothing was parked"
                )));
                self.io.mailbox.put_back(job.taken).await
            }
            SendOutcome::RateLimited { retry_after } if self.s.rate_limited < MAX_RATE_LIMITED => {
                // Slow down: the mail goes back to its place and the run pauses as long
                // as Brevo asks (bounded), then goes on.
                self.s.rate_limited += 1;
                let wait = retry_after.unwrap_or(Duration::from_secs(1));
                if wait > MAX_RATE_PAUSE {
                    self.stop_taking();
                    self.s.stopped = Some(format!(
                        "Brevo rate limit: asked to wait {}s",
                        wait.as_secs()
                    ));
                } else {
                    self.pause_until = Some(Instant::now() + wait);
                    // The mail goes back to the queue: take it again after the pause, even
                    // when the queue had looked empty before.
                    self.taking = self.s.fatal.is_none() && self.s.stopped.is_none();
                }
                self.io.mailbox.put_back(job.taken).await
            }
            SendOutcome::RateLimited { retry_after } => {
                self.s.stopped = Some(format!("Brevo answered 429 {MAX_RATE_LIMITED} times"));
                self.stop_taking();
                let attempts = job.taken.mail.attempts + 1;
                let delay = RetryDelay::for_attempt(attempts, retry_after.map(|d| d.as_secs()));
                self.s.failed += 1;
                self.retry(job.taken, attempts, delay, "429 rate limited")
                    .await
            }
            SendOutcome::Transient {
                reason,
                retry_after,
                ambiguous,
            } => {
                let maybe_sent = ambiguous || job.uncertain;
                self.transient(job, &reason, retry_after, maybe_sent).await
            }
        }
    }

    async fn transient(
        &mut self,
        job: Job<M::Ticket>,
        reason: &str,
        retry_after: Option<Duration>,
        maybe_sent: bool,
    ) -> Result<()> {
        self.s.failed += 1;
        self.transient_in_a_row += 1;
        self.transient_total += 1;
        if self.transient_in_a_row >= BREAKER {
            self.fail(Fatal::Unavailable(format!(
                "Brevo failed {BREAKER} sends in a row; last: {reason}"
            )));
        }
        let attempts = job.taken.mail.attempts + 1;
        if attempts >= self.opts.max_attempts {
            // One of the attempts may have gone: parked for `dead-letters recheck`,
            // which asks Brevo's log, never for a blind replay.
            let reason_parked = if maybe_sent {
                ParkReason::UncertainSend
            } else {
                ParkReason::RetriesExhausted
            };
            let detail = format!("{attempts} attempts failed; last: {reason}");
            return self.park(job.taken, reason_parked, &detail).await;
        }
        let delay = RetryDelay::for_attempt(attempts, retry_after.map(|d| d.as_secs()));
        self.retry(job.taken, attempts, delay, reason).await
    }

    /// Parks the mail, counted under its reason in the run's summary.
    pub(super) async fn park(
        &mut self,
        taken: TakenFrom<M>,
        reason: ParkReason,
        detail: &str,
    ) -> Result<()> {
        self.s.park_count(reason);
        let at = self.rules.clock();
        let why = Parking { reason, detail, at };
        let id = taken.mail.identity.clone();
        // Journaled before the copy goes out: if this run dies before the original's ack,
        // the next one finds the copy in the parking queue and drops the original.
        self.io.store.record_parking([id.as_str()], at)?;
        self.io.mailbox.park(taken, why).await?;
        if let Some(parked) = &mut self.parked {
            parked.insert(id);
        }
        Ok(())
    }

    /// Moves the mail to a retry queue, counted as retried in the run's summary.
    pub(super) async fn retry(
        &mut self,
        taken: TakenFrom<M>,
        attempts: u32,
        delay: RetryDelay,
        detail: &str,
    ) -> Result<()> {
        self.s.retried += 1;
        let next = Retry {
            attempts,
            delay,
            detail,
        };
        self.io.mailbox.retry(taken, next).await
    }

    /// Sends the mail back to be looked at again in at least `secs` seconds, its
    /// failures unchanged: nothing failed, it is too soon to tell.
    pub(super) async fn later(
        &mut self,
        taken: TakenFrom<M>,
        secs: u64,
        detail: &str,
    ) -> Result<()> {
        let attempts = taken.mail.attempts;
        let delay = RetryDelay::for_attempt(1, Some(secs));
        self.retry(taken, attempts, delay, detail).await
    }

    /// Journals an accepted mail, then acks it: if the ack is lost, the redelivered
    /// mail is recognised by the journal and not sent again.
    async fn accept(&mut self, job: Job<M::Ticket>, message_id: &str) -> Result<()> {
        self.io.store.record_sent(
            &job.taken.mail.identity,
            message_id,
            job.template_id,
            &job.recipient,
            self.rules.clock(),
        )?;
        self.io.mailbox.ack(job.taken).await
    }

    /// **finish**: the broker confirms it got every ack and move of the run (or the run
    /// says it could not), and a run in which no send went through does not pass for a
    /// good one.
    pub(super) async fn finish(&mut self) {
        self.io.progress.done();
        if let Err(e) = self.io.mailbox.sync().await {
            self.fail(Fatal::Unavailable(format!(
                "could not confirm that RabbitMQ got this run's acks: {e:#}; mails it did not get come back, and the journal keeps them from being sent twice"
            )));
        }
        if self.transient_total > 0 && self.s.sent == 0 && self.s.already_sent == 0 {
            self.fail(Fatal::Unavailable(format!(
                "none of the {} sends of this run went through (Brevo failing or unreachable)",
                self.transient_total
            )));
        }
        if let Some(sig) = self.io.cancel.received() {
            self.s.stopped = Some(format!("interrupted by {sig}"));
        }
    }
}
