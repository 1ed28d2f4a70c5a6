//! The drain's run loop, as named steps: **take** the mail at the head of the queue,
//! **decide** its fate, **send** it (with bounded concurrency, in urgency order),
//! **settle** it by Brevo's answer, and **finish**. A mail is acked only after Brevo
//! accepted it and the acceptance is journaled; every other outcome moves it where an
//! operator can see it, or back to its place.

use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::decide::{Decision, Rules, decide};
use super::summary::{Fatal, Summary};
use crate::brevo::{SendOutcome, Sender, idempotency_key};
use crate::mailbox::topology::retry_delay;
use crate::mailbox::{Mailbox, Parking, Retry, Taken};
use crate::signal::Cancel;
use crate::state::Store;

/// 429 answers a run honours by pausing; past that it stops.
const MAX_RATE_LIMITED: u32 = 50;
/// The longest pause a run makes for a 429; a longer wait stops the run instead.
const MAX_RATE_PAUSE: Duration = Duration::from_secs(60);
/// How long after a send whose answer was never seen it is still safe to send again:
/// Brevo refuses a repeated idempotency key for 30 minutes; keep a margin.
const UNSEEN_SEND_LIMIT: chrono::Duration = chrono::Duration::minutes(25);
/// After this many transient failures in a row, Brevo is taken to be down.
const BREAKER: u32 = 5;

/// How a drain runs, besides its caps.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Sends in flight at once.
    pub concurrency: usize,
    /// Transient failures before a mail is parked.
    pub max_attempts: u32,
}

/// One mail on its way to Brevo.
struct Job {
    taken: Taken,
    template_id: u32,
    recipient: String,
    earlier_attempts: u32,
}

/// What a drain works with: the queue, Brevo, the journal, the stop flag, and a
/// progress bar (hidden unless a person watches).
pub struct Io<'a, M: Mailbox, S: Sender> {
    /// Where mails are taken from and settled.
    pub mailbox: &'a mut M,
    /// Where they are sent.
    pub sender: S,
    /// The sent-mail journal.
    pub store: &'a Store,
    /// Set by SIGINT/SIGTERM: take no new mail.
    pub cancel: &'a Cancel,
    /// Advanced once per settled send.
    pub progress: ProgressBar,
}

/// A drain in progress.
pub struct Drain<'a, M: Mailbox, S: Sender> {
    io: Io<'a, M, S>,
    rules: Rules,
    opts: Options,
    s: Summary,
    inflight: JoinSet<(Job, SendOutcome)>,
    taking: bool,
    transient_in_a_row: u32,
    pause_until: Option<Instant>,
}

impl<'a, M: Mailbox, S: Sender> Drain<'a, M, S> {
    /// A drain through `io`, by `rules`, starting with `credits` at Brevo.
    pub fn new(io: Io<'a, M, S>, rules: Rules, opts: Options, credits: f64) -> Self {
        Drain {
            io,
            rules,
            opts,
            s: Summary {
                budget: rules.caps.soft,
                credits,
                ..Summary::default()
            },
            inflight: JoinSet::new(),
            taking: true,
            transient_in_a_row: 0,
            pause_until: None,
        }
    }

    /// Runs the drain to its end; the summary says what happened.
    pub async fn run(mut self) -> Result<Summary> {
        loop {
            while self.taking && self.inflight.len() < self.opts.concurrency.max(1) {
                self.pause().await;
                let Some(taken) = self.take().await else {
                    break;
                };
                if let Some(job) = self.decide(taken).await? {
                    self.send(job);
                }
            }
            let Some(done) = self.inflight.join_next().await else {
                break;
            };
            self.io.progress.inc(1);
            let (job, outcome) = done.context("a send task panicked")?;
            self.settle(job, outcome).await;
        }
        self.io.progress.finish_and_clear();
        if let Some(sig) = self.io.cancel.received() {
            self.s.stopped = Some(format!("interrupted by {sig}"));
        }
        Ok(self.s)
    }

    fn stop_taking(&mut self) {
        self.taking = false;
    }

    fn fail(&mut self, fatal: Fatal) {
        self.s.fail(fatal);
        self.stop_taking();
    }

    /// Waits out a 429 pause once the sends in flight are settled.
    async fn pause(&mut self) {
        let Some(until) = self.pause_until else {
            return;
        };
        if !self.inflight.is_empty() {
            return;
        }
        while Instant::now() < until && self.io.cancel.received().is_none() {
            tokio::time::sleep(Duration::from_millis(100).min(until - Instant::now())).await;
        }
        self.pause_until = None;
    }

    /// Sends made or started.
    fn committed(&self) -> u32 {
        self.s.sent + u32::try_from(self.inflight.len()).unwrap_or(u32::MAX)
    }

    /// **take**: the mail at the head of the queue, unless the run must stop taking.
    async fn take(&mut self) -> Option<Taken> {
        if self.pause_until.is_some() && !self.inflight.is_empty() {
            return None; // let the sends in flight finish first
        }
        if let Some(sig) = self.io.cancel.received() {
            self.s.stopped = Some(format!("interrupted by {sig}"));
            self.stop_taking();
            return None;
        }
        if self.committed() >= self.rules.caps.credits {
            self.stop_taking();
            return None;
        }
        match self.io.mailbox.take().await {
            Ok(Some(t)) => Some(t),
            Ok(None) => {
                self.stop_taking();
                None
            }
            Err(e) => {
                self.fail(Fatal::Unavailable(format!("{e:#}")));
                None
            }
        }
    }

    /// **decide**: already sent, park, stop, or a job to send.
    async fn decide(&mut self, taken: Taken) -> Result<Option<(Job, Value)>> {
        let id = taken.mail.identity.clone();
        let decision = decide(
            &self.rules,
            Some(self.io.store),
            &id,
            &taken.mail.body,
            self.committed(),
        )?;
        let settled = match decision {
            Decision::AlreadySent => {
                self.s.already_sent += 1;
                self.io.mailbox.ack(taken).await
            }
            Decision::Park { reason, detail } => {
                self.s.park_count(reason);
                self.park(taken, reason, &detail).await
            }
            Decision::Stop => {
                self.stop_taking();
                self.io.mailbox.put_back(taken).await
            }
            Decision::Send(m, _) => {
                let prior = self.io.store.begin_send(&id, self.rules.now)?;
                match prior.open_since {
                    Some(since) if self.rules.now - since >= UNSEEN_SEND_LIMIT => {
                        // An earlier send's outcome was never seen and Brevo's idempotency
                        // key has expired since: sending again could deliver it twice. Set
                        // it aside for a person to check in Brevo's logs and replay.
                        let detail = format!(
                            "a send started at {} got no answer (the run died or the connection broke); Brevo may have it: check its logs before replaying",
                            since.to_rfc3339()
                        );
                        self.s.park_count("uncertain_send");
                        let parked = self.park(taken, "uncertain_send", &detail).await;
                        self.io.store.end_send(&id)?;
                        parked
                    }
                    _ => {
                        let request = m.brevo_request(&idempotency_key(&id));
                        let job = Job {
                            taken,
                            template_id: m.template_id,
                            recipient: m.first_recipient().to_string(),
                            earlier_attempts: prior.attempts,
                        };
                        return Ok(Some((job, request)));
                    }
                }
            }
        };
        if let Err(e) = settled {
            self.fail(Fatal::Unavailable(format!("{e:#}")));
        }
        Ok(None)
    }

    /// **send**: hands the job to Brevo on the blocking pool.
    fn send(&mut self, (job, request): (Job, Value)) {
        let sender = self.io.sender.clone();
        self.inflight.spawn_blocking(move || {
            let outcome = sender.send(&request);
            (job, outcome)
        });
    }

    /// **settle**: acts on Brevo's answer. A broker failure here ends the run (exit 4)
    /// but lets the other sends in flight finish and be journaled.
    async fn settle(&mut self, job: Job, outcome: SendOutcome) {
        let id = job.taken.mail.identity.clone();
        let ambiguous = matches!(
            outcome,
            SendOutcome::Transient {
                ambiguous: true,
                ..
            }
        );
        let settled = self.settle_outcome(job, outcome).await;
        // An ambiguous attempt stays open: the next take resends with the same key
        // while Brevo still deduplicates it, and parks it after.
        if !ambiguous && let Err(e) = self.io.store.end_send(&id) {
            self.fail(Fatal::Unavailable(format!("state store: {e:#}")));
        }
        if let Err(e) = settled {
            self.fail(Fatal::Unavailable(format!(
                "RabbitMQ failed while settling a mail: {e:#}"
            )));
        }
    }

    async fn settle_outcome(&mut self, job: Job, outcome: SendOutcome) -> Result<()> {
        match outcome {
            SendOutcome::Sent { message_id } => {
                self.transient_in_a_row = 0;
                self.s.sent_one(job.template_id, job.taken.mail.priority);
                self.accept(job, &message_id).await
            }
            SendOutcome::Duplicate if job.earlier_attempts > 0 => {
                // An earlier attempt of ours was accepted, but its run died before
                // journaling it: Brevo has it, so this is sent.
                self.s.already_sent += 1;
                self.accept(job, "(accepted by an earlier attempt)").await
            }
            SendOutcome::Duplicate => {
                let detail = "Brevo answered duplicate_parameter to a mail never attempted before";
                self.s.failed += 1;
                self.s.park_count("brevo_duplicate");
                self.park(job.taken, "brevo_duplicate", detail).await
            }
            SendOutcome::Permanent {
                status,
                code,
                message,
            } => {
                let detail = format!("{status} {code}: {message}");
                self.s.failed += 1;
                self.s.park_count("brevo_rejected");
                self.park(job.taken, "brevo_rejected", &detail).await
            }
            SendOutcome::NoCredits => {
                self.stop_taking();
                self.s
                    .stopped
                    .get_or_insert_with(|| "Brevo reports no credits left".into());
                self.io.mailbox.put_back(job.taken).await
            }
            SendOutcome::Refused { status, message } => {
                self.fail(Fatal::Credentials(format!("{status} {message}")));
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
                }
                self.io.mailbox.put_back(job.taken).await
            }
            SendOutcome::RateLimited { retry_after } => {
                self.s.stopped = Some(format!("Brevo answered 429 {MAX_RATE_LIMITED} times"));
                self.stop_taking();
                let attempts = job.taken.mail.attempts + 1;
                let delay = retry_delay(attempts, retry_after.map(|d| d.as_secs()));
                self.s.failed += 1;
                self.s.retried += 1;
                self.retry(job.taken, attempts, delay, "429 rate limited")
                    .await
            }
            SendOutcome::Transient {
                reason,
                retry_after,
                ..
            } => self.transient(job, &reason, retry_after).await,
        }
    }

    async fn transient(
        &mut self,
        job: Job,
        reason: &str,
        retry_after: Option<Duration>,
    ) -> Result<()> {
        self.s.failed += 1;
        self.transient_in_a_row += 1;
        if self.transient_in_a_row >= BREAKER && self.taking {
            self.fail(Fatal::Unavailable(format!(
                "Brevo failed {BREAKER} sends in a row; last: {reason}"
            )));
        }
        let attempts = job.taken.mail.attempts + 1;
        if attempts >= self.opts.max_attempts {
            let detail = format!("{attempts} attempts failed; last: {reason}");
            self.s.park_count("retries_exhausted");
            return self.park(job.taken, "retries_exhausted", &detail).await;
        }
        let delay = retry_delay(attempts, retry_after.map(|d| d.as_secs()));
        self.s.retried += 1;
        self.retry(job.taken, attempts, delay, reason).await
    }

    async fn park(&mut self, taken: Taken, reason: &str, detail: &str) -> Result<()> {
        let at = self.rules.now;
        let why = Parking { reason, detail, at };
        self.io.mailbox.park(taken, why).await
    }

    async fn retry(
        &mut self,
        taken: Taken,
        attempts: u32,
        delay_secs: u64,
        detail: &str,
    ) -> Result<()> {
        let next = Retry {
            attempts,
            delay_secs,
            detail,
        };
        self.io.mailbox.retry(taken, next).await
    }

    /// Journals an accepted mail, then acks it: if the ack is lost, the redelivered
    /// mail is recognised by the journal and not sent again.
    async fn accept(&mut self, job: Job, message_id: &str) -> Result<()> {
        self.io.store.record_sent(
            &job.taken.mail.identity,
            message_id,
            job.template_id,
            &job.recipient,
            self.rules.now,
        )?;
        self.io.mailbox.ack(job.taken).await
    }
}
