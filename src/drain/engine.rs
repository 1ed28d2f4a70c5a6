//! The drain's run loop, as named steps: **take** the mail at the head of the queue,
//! **decide** its fate, **send** it (with bounded concurrency, in urgency order),
//! **settle** it by Brevo's answer, and **finish**. A mail is acked only after Brevo
//! accepted it and the acceptance is journaled; every other outcome moves it where an
//! operator can see it, or back to its place.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::decide::{Decision, Rules, decide};
use super::doubt::{Lookup, UNSEEN_SEND_LIMIT, too_soon};
use super::summary::{Fatal, Summary};
use crate::brevo::{SendOutcome, Sender, idempotency_key};
use crate::mail::Mail;
use crate::mailbox::Envelope;
use crate::park::ParkReason;
use crate::signal::Cancel;
use crate::state::{Outcome, Store};
use crate::taken::{Mailbox, Taken};

/// How a drain runs, besides its caps.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Sends in flight at once.
    pub concurrency: usize,
    /// Transient failures before a mail is parked.
    pub max_attempts: u32,
}

/// A mail taken from the mailbox `M`.
pub(super) type TakenFrom<M> = Taken<<M as Mailbox>::Ticket>;

/// One mail on its way to Brevo.
pub(super) struct Job<T> {
    pub(super) taken: Taken<T>,
    pub(super) template_id: u32,
    pub(super) recipient: String,
    pub(super) earlier_attempts: u32,
    /// An earlier attempt's outcome was never seen: Brevo may have accepted it.
    pub(super) uncertain: bool,
}

/// How a drain tells whoever watches that it moved on (the terminal's bar, in
/// `crate::output`; nothing when nobody watches).
pub trait Progress {
    /// One mail settled.
    fn step(&self);
    /// The drain is over.
    fn done(&self);
}

/// Nobody watches.
pub struct Unwatched;

impl Progress for Unwatched {
    fn step(&self) {}
    fn done(&self) {}
}

/// What a drain works with: the queue, Brevo, the journal, the stop flag, and who
/// watches it.
pub struct Io<'a, M: Mailbox, S: Sender> {
    /// Where mails are taken from and settled.
    pub mailbox: &'a mut M,
    /// Where they are sent.
    pub sender: S,
    /// The sent-mail journal.
    pub store: &'a Store,
    /// Set by SIGINT/SIGTERM: take no new mail.
    pub cancel: &'a Cancel,
    /// Told once per settled send.
    pub progress: &'a dyn Progress,
}

/// A mail the drain decided to send, once its journal has been read.
pub(super) enum Prepared<T> {
    /// Send it: the job, and the request.
    Send(Box<(Job<T>, Value)>),
    /// Not to be sent after all (found sent, or parked); the result of settling it.
    Settled(Result<()>),
}

/// A drain in progress.
pub struct Drain<'a, M: Mailbox, S: Sender> {
    pub(super) io: Io<'a, M, S>,
    pub(super) rules: Rules,
    pub(super) opts: Options,
    pub(super) s: Summary,
    inflight: JoinSet<(Job<M::Ticket>, SendOutcome)>,
    pub(super) taking: bool,
    pub(super) transient_in_a_row: u32,
    pub(super) transient_total: u32,
    pub(super) pause_until: Option<Instant>,
    pub(super) lookups: u32,
    /// Identities of the mails being sent: a second copy of one is not sent beside it.
    pub(super) sending: std::collections::HashSet<String>,
    /// The identities in the parking queue that the journal says this host parked: read
    /// once, when the first mail that may have a parked copy is taken.
    pub(super) parked: Option<std::collections::HashSet<String>>,
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
            transient_total: 0,
            pause_until: None,
            lookups: 0,
            sending: std::collections::HashSet::new(),
            parked: None,
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
                match self.decide(taken).await {
                    Ok(Some(job)) => self.send(job),
                    Ok(None) => {}
                    // The journal failed: take no more, but let the sends in flight
                    // finish and be journaled (the mail goes back to the queue).
                    Err(e) => self.fail(Fatal::Unavailable(format!("state store: {e:#}"))),
                }
            }
            let Some(done) = self.inflight.join_next().await else {
                break;
            };
            self.io.progress.step();
            let (job, outcome) = done.context("a send task panicked")?;
            self.settle(job, outcome).await;
        }
        self.finish().await;
        Ok(self.s)
    }

    pub(super) fn stop_taking(&mut self) {
        self.taking = false;
    }

    pub(super) fn fail(&mut self, fatal: Fatal) {
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
    async fn take(&mut self) -> Option<TakenFrom<M>> {
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
    async fn decide(&mut self, taken: TakenFrom<M>) -> Result<Option<(Job<M::Ticket>, Value)>> {
        let id = taken.mail.identity.clone();
        if self.sending.contains(&id) {
            // Another copy of this mail (left by a crash mid-move, or a legacy body
            // published twice) is being sent right now: this copy is the same mail, and
            // whatever becomes of the first one, the mail stays in exactly one place.
            self.s.already_sent += 1;
            if let Err(e) = self.io.mailbox.ack(taken).await {
                self.fail(Fatal::Unavailable(format!("{e:#}")));
            }
            return Ok(None);
        }
        let parked = match self.copy_is_parked(&id).await {
            Ok(parked) => parked,
            Err(e) => {
                // Reading the parking queue failed (the broker went away): take no
                // more; this mail goes back to the queue (when the connection closes,
                // if it cannot be handed back now).
                self.fail(Fatal::Unavailable(format!("{e:#}")));
                let _ = self.io.mailbox.put_back(taken).await;
                return Ok(None);
            }
        };
        if parked {
            // An original left behind by a run that died after parking a copy of it.
            self.s.already_parked += 1;
            if let Err(e) = self.io.mailbox.ack(taken).await {
                self.fail(Fatal::Unavailable(format!("{e:#}")));
            }
            return Ok(None);
        }
        let decision = decide(
            &self.rules,
            Some(self.io.store),
            &taken.mail,
            self.committed(),
        )?;
        let settled = match decision {
            Decision::AlreadySent => {
                self.s.already_sent += 1;
                self.io.mailbox.ack(taken).await
            }
            Decision::Park { reason, detail } => {
                // An expired mail an earlier attempt may have sent is looked up first:
                // found, it went; not found, it is parked as expired.
                let looked = match reason {
                    ParkReason::Expired => self.expired_in_doubt(&taken.mail).await?,
                    _ => None,
                };
                match looked {
                    None | Some(Lookup::NotSent) => self.park(taken, reason, &detail).await,
                    Some(looked) => self.act_on(taken, looked).await,
                }
            }
            Decision::Stop => {
                self.stop_taking();
                self.io.mailbox.put_back(taken).await
            }
            Decision::Send(m, _) => match self.prepare(taken, &m).await? {
                Prepared::Send(job) => return Ok(Some(*job)),
                Prepared::Settled(settled) => settled,
            },
        };
        self.after(settled)
    }

    /// Opens the attempt in the journal and, when an earlier attempt's answer was never
    /// seen and Brevo's window has passed since, asks Brevo's log first.
    async fn prepare(&mut self, taken: TakenFrom<M>, m: &Mail) -> Result<Prepared<M::Ticket>> {
        let id = taken.mail.identity.clone();
        let now = self.rules.clock();
        let prior = self.io.store.begin_send(&id, now)?;
        let ask = match prior.uncertain_since {
            // Within Brevo's window the key guards a resend, unless `doctor
            // --idempotency-probe` saw Brevo accept a repeated key: then the log first.
            Some(since) if now - since >= UNSEEN_SEND_LIMIT || !self.io.store.key_trusted()? => {
                Some(since)
            }
            _ => None,
        };
        if let Some(since) = ask {
            let looked = match too_soon(now, prior.last_at) {
                Some(secs) => {
                    // The latest attempt may not be in the log yet: ask it later.
                    self.io.store.end_send(&id, Outcome::Known)?;
                    let detail = "an earlier attempt's answer was never seen, and Brevo's log cannot tell yet";
                    Lookup::Later {
                        secs,
                        detail: detail.into(),
                    }
                }
                None => self.look_up(&id, m, since).await?,
            };
            let Lookup::NotSent = looked else {
                return Ok(Prepared::Settled(self.act_on(taken, looked).await));
            };
            // The look-up closed this run's attempt: open it again for the send.
            self.io.store.begin_send(&id, self.rules.clock())?;
        }
        let request = m.brevo_request(&idempotency_key(&id));
        let job = Job {
            taken,
            template_id: m.template_id,
            recipient: m.first_recipient().to_string(),
            earlier_attempts: prior.attempts,
            uncertain: prior.uncertain_since.is_some() && ask.is_none(),
        };
        Ok(Prepared::Send(Box::new((job, request))))
    }

    /// What Brevo's log says of an expired mail an earlier attempt may have sent (a log
    /// that cannot list the latest attempt yet: ask later); `None` when none may have.
    async fn expired_in_doubt(&mut self, mail: &Envelope) -> Result<Option<Lookup>> {
        let Some((since, last)) = self.io.store.uncertainty(&mail.identity)? else {
            return Ok(None);
        };
        let Ok(m) = crate::mail::parse(&mail.body, self.rules.tz) else {
            return Ok(None);
        };
        Ok(Some(match too_soon(self.rules.clock(), last) {
            Some(secs) => Lookup::Later {
                secs,
                detail: "expired, but an earlier attempt may have gone: Brevo's log is asked later"
                    .into(),
            },
            None => self.look_up(&mail.identity, &m, since).await?,
        }))
    }

    /// Settles a mail by what its look-up found. A mail not sent is the caller's to
    /// send or park; handed here, it goes back to its place.
    async fn act_on(&mut self, taken: TakenFrom<M>, looked: Lookup) -> Result<()> {
        match looked {
            Lookup::Sent => {
                self.s.already_sent += 1;
                self.io.mailbox.ack(taken).await
            }
            Lookup::NotSent => self.io.mailbox.put_back(taken).await,
            Lookup::Later { secs, detail } => self.later(taken, secs, &detail).await,
            Lookup::Unknowable(detail) => {
                self.park(taken, ParkReason::UncertainSend, &detail).await
            }
        }
    }

    /// Whether a copy of this mail waits in the parking queue. Only a mail the journal
    /// knows this host parked can have one; the parking queue is read (once a run) only
    /// when such a mail comes along.
    async fn copy_is_parked(&mut self, id: &str) -> Result<bool> {
        let store = self.io.store;
        if !store.may_be_parked(id)? {
            return Ok(false);
        }
        if self.parked.is_none() {
            // A mail the journal cannot answer for is kept: it is in the parking queue.
            let found = self
                .io
                .mailbox
                .parked_identities(|p| store.may_be_parked(p).unwrap_or(true))
                .await?;
            self.parked = Some(found);
        }
        Ok(self.parked.as_ref().is_some_and(|p| p.contains(id)))
    }

    /// Records a settling failure (a lost broker) and goes on to the next mail.
    fn after(&mut self, settled: Result<()>) -> Result<Option<(Job<M::Ticket>, Value)>> {
        if let Err(e) = settled {
            self.fail(Fatal::Unavailable(format!("{e:#}")));
        }
        Ok(None)
    }

    /// **send**: hands the job to Brevo on the blocking pool.
    fn send(&mut self, (job, request): (Job<M::Ticket>, Value)) {
        self.sending.insert(job.taken.mail.identity.clone());
        let sender = self.io.sender.clone();
        self.inflight.spawn_blocking(move || {
            let outcome = sender.send(&request);
            (job, outcome)
        });
    }
}
