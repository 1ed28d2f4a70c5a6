//! `drain-hourly` and `drain-eod`: one drain with two budgets.
//!
//! Mails are taken one at a time in the broker's priority order (basic.get, manual ack)
//! and dispatched to Brevo with bounded concurrency, so dispatch order is urgency order.
//! A mail is acked only after Brevo accepted it and the acceptance is journaled; every
//! other outcome moves it somewhere an operator can see it, or back to its place.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use lapin::Acker;
use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use serde::Serialize;
use tokio::task::JoinSet;

use super::{Held, idempotency_key, identity, open_queues, park, requeue, retry, retry_delay};
use crate::amqp::{H_ATTEMPTS, Publisher, header_u32};
use crate::brevo::{Brevo, SendOutcome};
use crate::config::Config;
use crate::error::Failure;
use crate::mail;
use crate::signal::Cancel;
use crate::state::{self, Store};
use crate::urgency::Urgency;

/// How much a drain may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// At most `limit` (and never more than the credits); with `urgent_beyond_limit`,
    /// mails due today go out beyond the limit as long as credits last.
    Hourly {
        /// Mails per run.
        limit: u32,
        /// Send today's mails beyond the limit.
        urgent_beyond_limit: bool,
    },
    /// Everything the credits allow.
    EndOfDay,
}

/// Drain options.
#[derive(Debug, Clone)]
pub struct Options {
    /// The budget.
    pub budget: Budget,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// Transient failures before a mail is parked.
    pub max_attempts: u32,
    /// How long to wait for another run's lock.
    pub lock_wait: Duration,
}

/// What a drain did. Serialised as the contract's JSON (fields may be added only).
#[derive(Debug, Default, Clone, Serialize)]
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
    pub fatal: Option<String>,
    #[serde(skip)]
    fatal_kind: Option<FatalKind>,
}

#[derive(Debug, Clone, Copy)]
enum FatalKind {
    Credentials,
    Unavailable,
}

impl Summary {
    /// The failure to exit with, if any.
    pub fn failure(&self) -> Option<Failure> {
        let msg = self.fatal.clone()?;
        Some(match self.fatal_kind {
            Some(FatalKind::Credentials) => Failure::Credentials(msg),
            _ => Failure::Unavailable(msg),
        })
    }
    fn fail(&mut self, kind: FatalKind, msg: String) {
        if self.fatal.is_none() {
            self.stopped = Some(msg.clone());
            self.fatal = Some(msg);
            self.fatal_kind = Some(kind);
        }
    }
    fn park_count(&mut self, reason: &str) {
        *self.parked_by_reason.entry(reason.to_string()).or_default() += 1;
        if reason != "expired" {
            self.parked += 1;
        }
    }
}

/// One mail on its way to Brevo.
struct Job {
    acker: Acker,
    props: BasicProperties,
    body: Vec<u8>,
    identity: String,
    template_id: u32,
    recipient: String,
    priority: u8,
    earlier_attempts: u32,
}

impl Job {
    fn held(&self) -> Held<'_> {
        Held {
            acker: &self.acker,
            props: &self.props,
            body: &self.body,
        }
    }
}

/// After this many transient failures in a row, Brevo is taken to be down.
const BREAKER: u32 = 5;

/// Runs a drain.
pub async fn run(cfg: &Config, opts: &Options, cancel: &Cancel) -> Result<Summary> {
    let key = cfg.require_api_key()?.clone();
    let _lock = state::lock(&cfg.state_dir, opts.lock_wait)?;
    let store = Store::open(&cfg.state_dir)?;
    let now = cfg.now();
    let today = now.with_timezone(&cfg.tz).date_naive();

    let brevo = Brevo::new(&cfg.brevo_url, key, cfg.timeout);
    let account = {
        let b = brevo.clone();
        tokio::task::spawn_blocking(move || b.account())
            .await
            .context("reading credits")??
    };
    let credits = if account.unlimited() {
        u32::MAX
    } else {
        account.sendable()
    };
    let soft_cap = match opts.budget {
        Budget::Hourly { limit, .. } => limit.min(credits),
        Budget::EndOfDay => credits,
    };
    let overflow = matches!(
        opts.budget,
        Budget::Hourly {
            urgent_beyond_limit: true,
            ..
        }
    );
    let mut s = Summary {
        budget: soft_cap,
        credits: account.credits,
        ..Summary::default()
    };

    let (broker, _info) = open_queues(cfg).await?;
    let channel = broker.channel().await?;
    let mut publisher = Publisher::new(&broker, 64).await?;
    let mut set: JoinSet<(Job, SendOutcome)> = JoinSet::new();
    let mut taking = true;
    let mut consecutive_transient = 0u32;

    loop {
        while taking && set.len() < opts.concurrency {
            if let Some(sig) = cancel.received() {
                s.stopped = Some(format!("interrupted by {sig}"));
                taking = false;
                break;
            }
            let committed = s.sent + u32::try_from(set.len()).unwrap_or(u32::MAX);
            if committed >= credits {
                taking = false;
                break;
            }
            let get = channel.basic_get(cfg.queue.as_str().into(), BasicGetOptions::default());
            let got = match broker.within("taking a mail", get).await {
                Ok(Some(m)) => m.delivery,
                Ok(None) => {
                    taking = false;
                    break;
                }
                Err(e) => {
                    s.fail(FatalKind::Unavailable, format!("{e:#}"));
                    taking = false;
                    break;
                }
            };
            let id = identity(&got.properties, &got.data);
            if store.is_sent(&id)? {
                got.acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(|e| super::lost("acking a mail sent earlier", &e))?;
                s.already_sent += 1;
                continue;
            }
            let parsed = mail::parse(&got.data, cfg.tz);
            let m = match parsed {
                Ok(m) => m,
                Err(bad) => {
                    park(
                        &mut publisher,
                        cfg,
                        Held {
                            acker: &got.acker,
                            props: &got.properties,
                            body: &got.data,
                        },
                        bad.reason(),
                        &bad.to_string(),
                        now,
                    )
                    .await?;
                    s.park_count(bad.reason());
                    continue;
                }
            };
            let urgency = Urgency::of(m.deadline, now, cfg.tz);
            if urgency == Urgency::Expired {
                let detail = format!(
                    "deadline {} passed",
                    m.deadline.map(|d| d.to_rfc3339()).unwrap_or_default()
                );
                park(
                    &mut publisher,
                    cfg,
                    Held {
                        acker: &got.acker,
                        props: &got.properties,
                        body: &got.data,
                    },
                    "expired",
                    &detail,
                    now,
                )
                .await?;
                s.expired += 1;
                s.park_count("expired");
                continue;
            }
            if committed >= soft_cap && !(overflow && urgency == Urgency::Days(0)) {
                requeue(&got.acker).await?;
                taking = false;
                break;
            }
            let earlier_attempts = store.note_attempt(&id, now)?;
            let request = m.brevo_request(&idempotency_key(&id));
            let job = Job {
                acker: got.acker,
                priority: got.properties.priority().unwrap_or(0),
                props: got.properties,
                body: got.data,
                identity: id,
                template_id: m.template_id,
                recipient: m.first_recipient().to_string(),
                earlier_attempts,
            };
            let client = brevo.clone();
            set.spawn_blocking(move || {
                let outcome = client.send(&request);
                (job, outcome)
            });
        }

        let Some(done) = set.join_next().await else {
            break;
        };
        let (job, outcome) = done.context("a send task panicked")?;
        // A broker failure while settling a mail ends the run (exit 4) but lets the
        // other in-flight sends finish and be journaled; unacked mails go back.
        let settled: Result<()> = async {
            match outcome {
                SendOutcome::Sent { message_id } => {
                    consecutive_transient = 0;
                    accept(&store, &job, &message_id, now).await?;
                    s.sent += 1;
                    *s.sent_by_template.entry(job.template_id).or_default() += 1;
                    *s.sent_by_priority.entry(job.priority).or_default() += 1;
                }
                SendOutcome::Duplicate if job.earlier_attempts > 0 => {
                    // An earlier attempt of ours was accepted, but its run died before
                    // journaling it: Brevo has it, so this is sent.
                    accept(&store, &job, "(accepted by an earlier attempt)", now).await?;
                    s.already_sent += 1;
                }
                SendOutcome::Duplicate => {
                    let detail =
                        "Brevo answered duplicate_parameter to a mail never attempted before";
                    park(
                        &mut publisher,
                        cfg,
                        job.held(),
                        "brevo_duplicate",
                        detail,
                        now,
                    )
                    .await?;
                    s.failed += 1;
                    s.park_count("brevo_duplicate");
                }
                SendOutcome::Permanent {
                    status,
                    code,
                    message,
                } => {
                    let detail = format!("{status} {code}: {message}");
                    park(
                        &mut publisher,
                        cfg,
                        job.held(),
                        "brevo_rejected",
                        &detail,
                        now,
                    )
                    .await?;
                    s.failed += 1;
                    s.park_count("brevo_rejected");
                }
                SendOutcome::NoCredits => {
                    requeue(&job.acker).await?;
                    taking = false;
                    s.stopped
                        .get_or_insert_with(|| "Brevo reports no credits left".into());
                }
                SendOutcome::Refused { status, message } => {
                    requeue(&job.acker).await?;
                    taking = false;
                    s.fail(FatalKind::Credentials, format!("{status} {message}"));
                }
                SendOutcome::Transient {
                    reason,
                    retry_after,
                } => {
                    s.failed += 1;
                    consecutive_transient += 1;
                    let attempts = header_u32(&job.props, H_ATTEMPTS).unwrap_or(0) + 1;
                    if attempts >= opts.max_attempts {
                        let detail = format!("{attempts} attempts failed; last: {reason}");
                        park(
                            &mut publisher,
                            cfg,
                            job.held(),
                            "retries_exhausted",
                            &detail,
                            now,
                        )
                        .await?;
                        s.park_count("retries_exhausted");
                    } else {
                        let delay = retry_delay(attempts, retry_after.map(|d| d.as_secs()));
                        retry(&mut publisher, cfg, job.held(), attempts, delay, &reason).await?;
                        s.retried += 1;
                    }
                    if consecutive_transient >= BREAKER && taking {
                        taking = false;
                        s.fail(
                            FatalKind::Unavailable,
                            format!("Brevo failed {BREAKER} sends in a row; last: {reason}"),
                        );
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = settled {
            s.fail(
                FatalKind::Unavailable,
                format!("RabbitMQ failed while settling a mail: {e:#}"),
            );
            taking = false;
        }
    }

    s.remaining = broker.ready(&cfg.queue).await.unwrap_or(0);
    record_tallies(&store, today, &s)?;
    broker.close_channel(&channel).await;
    broker.close().await;
    if let Some(sig) = cancel.received() {
        s.stopped = Some(format!("interrupted by {sig}"));
    }
    Ok(s)
}

/// Journals an accepted mail, then acks it: if the ack is lost, the redelivered mail is
/// recognised by the journal and not sent again.
async fn accept(store: &Store, job: &Job, message_id: &str, now: DateTime<Utc>) -> Result<()> {
    store.record_sent(
        &job.identity,
        message_id,
        job.template_id,
        &job.recipient,
        now,
    )?;
    job.acker
        .ack(BasicAckOptions::default())
        .await
        .map_err(|e| super::lost("acking a sent mail", &e))?;
    Ok(())
}

fn record_tallies(store: &Store, day: chrono::NaiveDate, s: &Summary) -> Result<()> {
    store.add_tally(day, "sent", u64::from(s.sent + s.already_sent))?;
    store.add_tally(day, "failed", u64::from(s.failed))?;
    store.add_tally(day, "expired", u64::from(s.expired))?;
    store.add_tally(day, "parked", u64::from(s.parked + s.expired))?;
    Ok(())
}
