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

/// The hourly drain's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// At most this many mails per run.
    Count(u32),
    /// Spread the credits left, less the reserve, over the hours left in the day.
    Auto,
    /// Everything the credits allow (a paid plan).
    Unlimited,
}

impl std::str::FromStr for Limit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Limit::Auto),
            "unlimited" => Ok(Limit::Unlimited),
            n => n.parse::<u32>().map(Limit::Count).map_err(|_| {
                format!("{n:?} is not a limit: expected a whole number of mails, \"auto\" or \"unlimited\"")
            }),
        }
    }
}

impl Limit {
    /// Mails this run may send out of `credits`, `reserve` kept back for urgent mail
    /// still to come, at local hour `hour` (0-23).
    pub fn allowance(self, credits: u32, reserve: u32, hour: u32) -> u32 {
        match self {
            Limit::Count(n) => n.min(credits),
            Limit::Unlimited => credits,
            Limit::Auto => {
                // This run and one per hour left before the end-of-day drain.
                let runs = 24u32.saturating_sub(hour.min(23)).max(1);
                credits.saturating_sub(reserve).div_ceil(runs)
            }
        }
    }
}

/// How much a drain may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// At most `limit` (and never more than the credits); with `urgent_beyond_limit`,
    /// mails due today go out beyond the limit as long as credits last.
    Hourly {
        /// Mails per run.
        limit: Limit,
        /// Send today's mails beyond the limit.
        urgent_beyond_limit: bool,
    },
    /// Everything the credits allow.
    EndOfDay,
}

impl Budget {
    /// The subcommand this budget belongs to.
    pub fn subcommand(self) -> &'static str {
        match self {
            Budget::Hourly { .. } => "drain-hourly",
            Budget::EndOfDay => "drain-eod",
        }
    }
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
    /// Credits `--limit auto` keeps back for urgent mail that may still arrive.
    pub reserve: u32,
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
    /// Queue depths after the run (read only when metrics are pushed).
    #[serde(skip)]
    pub depth: Option<super::stats::Depth>,
    /// A failure that ends the run with a non-zero exit after the summary is shown.
    #[serde(skip)]
    pub fatal: Option<String>,
    #[serde(skip)]
    fatal_kind: Option<FatalKind>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_refuse_with_a_hint() {
        assert_eq!("12".parse::<Limit>(), Ok(Limit::Count(12)));
        assert_eq!("auto".parse::<Limit>(), Ok(Limit::Auto));
        assert_eq!("unlimited".parse::<Limit>(), Ok(Limit::Unlimited));
        let err = "abc".parse::<Limit>().expect_err("abc");
        assert!(
            err.contains("auto") && err.contains("whole number"),
            "{err}"
        );
        assert!("-1".parse::<Limit>().is_err());
    }

    #[test]
    fn auto_spreads_the_credits_over_the_hours_left_keeping_the_reserve() {
        // 300 credits, 30 kept back, at 00:xx: 24 runs left -> 12 per run.
        assert_eq!(Limit::Auto.allowance(300, 30, 0), 12);
        // A quiet morning: at 12:00 with 290 left, the 12 runs left get more each.
        assert_eq!(Limit::Auto.allowance(290, 30, 12), 22);
        // Last hourly run of the day: all but the reserve.
        assert_eq!(Limit::Auto.allowance(100, 30, 23), 70);
        // Fewer credits than the reserve: nothing (the end-of-day drain spends it).
        assert_eq!(Limit::Auto.allowance(20, 30, 15), 0);
        assert_eq!(Limit::Count(12).allowance(5, 30, 3), 5);
        assert_eq!(Limit::Unlimited.allowance(u32::MAX, 30, 3), u32::MAX);
    }
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

/// 429 answers a run honours by pausing; past that it stops.
const MAX_RATE_LIMITED: u32 = 50;
/// The longest pause a run makes for a 429; a longer wait stops the run instead.
const MAX_RATE_PAUSE: Duration = Duration::from_secs(60);

/// How long after a send whose answer was never seen it is still safe to send again:
/// Brevo refuses a repeated idempotency key for 30 minutes; keep a margin.
const UNSEEN_SEND_LIMIT: chrono::Duration = chrono::Duration::minutes(25);

/// How long sent and attempted mails are remembered.
const JOURNAL_KEEP: chrono::Duration = chrono::Duration::days(30);

/// After this many transient failures in a row, Brevo is taken to be down.
const BREAKER: u32 = 5;

/// Runs a drain.
pub async fn run(cfg: &Config, opts: &Options, cancel: &Cancel) -> Result<Summary> {
    let key = cfg.require_api_key()?.clone();
    let _lock = state::lock(&cfg.state_dir, opts.lock_wait)?;
    let store = Store::open(&cfg.state_dir)?;
    let now = cfg.now();
    let today = now.with_timezone(&cfg.tz).date_naive();
    // Journal entries matter only while a redelivery is possible (minutes, an hour or
    // two with retries); a month is a wide margin, and keeps the file small.
    store.prune(now - JOURNAL_KEEP)?;

    let brevo = Brevo::new(&cfg.brevo_url, key, cfg.timeout);
    let account = {
        let b = brevo.clone();
        tokio::task::spawn_blocking(move || b.account())
            .await
            .context("reading credits")??
    };
    let (credits, soft_cap, overflow) = caps(opts, &account, cfg, now);
    let rules = Rules {
        cfg,
        now,
        soft_cap,
        overflow,
    };
    let mut s = Summary {
        budget: soft_cap,
        credits: account.credits,
        ..Summary::default()
    };

    let (broker, info) = open_queues(cfg).await?;
    let bar = crate::progress::bar(cfg.progress, u64::from(soft_cap.min(info.ready)), "drain");
    let channel = broker.channel().await?;
    let mut publisher = Publisher::new(&broker, 64).await?;
    let mut set: JoinSet<(Job, SendOutcome)> = JoinSet::new();
    let mut taking = true;
    let mut consecutive_transient = 0u32;
    let mut pause_until: Option<tokio::time::Instant> = None;

    loop {
        while taking && set.len() < opts.concurrency {
            if let Some(until) = pause_until {
                if !set.is_empty() {
                    break; // let the sends in flight finish first
                }
                while tokio::time::Instant::now() < until && cancel.received().is_none() {
                    tokio::time::sleep(
                        Duration::from_millis(100).min(until - tokio::time::Instant::now()),
                    )
                    .await;
                }
                pause_until = None;
            }
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
            let held = Held {
                acker: &got.acker,
                props: &got.properties,
                body: &got.data,
            };
            let m = match decide(&rules, Some(&store), &id, &got.data, committed)? {
                Decision::AlreadySent => {
                    got.acker
                        .ack(BasicAckOptions::default())
                        .await
                        .map_err(|e| super::lost("acking a mail sent earlier", &e))?;
                    s.already_sent += 1;
                    continue;
                }
                Decision::Park { reason, detail } => {
                    park(&mut publisher, cfg, held, reason, &detail, now).await?;
                    if reason == "expired" {
                        s.expired += 1;
                    }
                    s.park_count(reason);
                    continue;
                }
                Decision::Stop => {
                    requeue(&got.acker).await?;
                    taking = false;
                    break;
                }
                Decision::Send(m, _) => m,
            };
            let prior = store.begin_send(&id, now)?;
            if let Some(since) = prior.open_since
                && now - since >= UNSEEN_SEND_LIMIT
            {
                // An earlier send's outcome was never seen and Brevo's idempotency key
                // has expired since: sending again could deliver it twice. Set it aside
                // for a person to check in Brevo's logs and replay if it never went.
                let detail = format!(
                    "a send started at {} got no answer (the run died or the connection broke); Brevo may have it: check its logs before replaying",
                    since.to_rfc3339()
                );
                park(&mut publisher, cfg, held, "uncertain_send", &detail, now).await?;
                store.end_send(&id)?;
                s.park_count("uncertain_send");
                continue;
            }
            let earlier_attempts = prior.attempts;
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
        bar.inc(1);
        let (job, outcome) = done.context("a send task panicked")?;
        // A broker failure while settling a mail ends the run (exit 4) but lets the
        // other in-flight sends finish and be journaled; unacked mails go back.
        let mut keep_open = false;
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
                SendOutcome::RateLimited { retry_after } if s.rate_limited < MAX_RATE_LIMITED => {
                    // Slow down: the mail goes back to its place and the run pauses as
                    // long as Brevo asks (bounded), then goes on.
                    requeue(&job.acker).await?;
                    s.rate_limited += 1;
                    let wait = retry_after.unwrap_or(Duration::from_secs(1));
                    if wait > MAX_RATE_PAUSE {
                        taking = false;
                        s.stopped = Some(format!(
                            "Brevo rate limit: asked to wait {}s",
                            wait.as_secs()
                        ));
                    } else {
                        pause_until = Some(tokio::time::Instant::now() + wait);
                    }
                }
                SendOutcome::RateLimited { retry_after } => {
                    s.stopped = Some(format!("Brevo answered 429 {MAX_RATE_LIMITED} times"));
                    taking = false;
                    let attempts = header_u32(&job.props, H_ATTEMPTS).unwrap_or(0) + 1;
                    let delay = retry_delay(attempts, retry_after.map(|d| d.as_secs()));
                    retry(
                        &mut publisher,
                        cfg,
                        job.held(),
                        attempts,
                        delay,
                        "429 rate limited",
                    )
                    .await?;
                    s.failed += 1;
                    s.retried += 1;
                }
                SendOutcome::Transient {
                    reason,
                    ambiguous,
                    retry_after,
                } => {
                    if ambiguous {
                        // Leave the attempt open: the next take resends with the same key
                        // while Brevo still deduplicates it, and parks it after.
                        keep_open = true;
                    }
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
        if !keep_open && let Err(e) = store.end_send(&job.identity) {
            s.fail(FatalKind::Unavailable, format!("state store: {e:#}"));
            taking = false;
        }
        if let Err(e) = settled {
            s.fail(
                FatalKind::Unavailable,
                format!("RabbitMQ failed while settling a mail: {e:#}"),
            );
            taking = false;
        }
    }

    bar.finish_and_clear();
    s.remaining = broker.ready(&cfg.queue).await.unwrap_or(0);
    if cfg.pushgateway.is_some() && s.fatal.is_none() {
        s.depth = super::stats::depth(&broker, cfg, s.remaining, now)
            .await
            .ok();
    }
    record_tallies(&store, today, &s)?;
    // Metric totals are kept whether or not a Pushgateway is configured yet.
    crate::metrics::record_drain(&store, opts.budget.subcommand(), &s)?;
    broker.close_channel(&channel).await;
    broker.close().await;
    if let Some(sig) = cancel.received() {
        s.stopped = Some(format!("interrupted by {sig}"));
    }
    Ok(s)
}

/// What a drain does with the mail at the head of the queue; shared by the drain and
/// its dry run so that the plan shown is the plan carried out.
pub enum Decision {
    /// Journaled as sent by an earlier run: ack it, send nothing.
    AlreadySent,
    /// Set it aside.
    Park {
        /// The reason code.
        reason: &'static str,
        /// The details.
        detail: String,
    },
    /// Budget used: put it back and stop taking mail.
    Stop,
    /// Send it.
    Send(mail::Mail, Urgency),
}

/// The inputs of [`decide`] that are fixed for a run.
pub struct Rules<'a> {
    /// The configuration (time zone).
    pub cfg: &'a Config,
    /// "Now" for the run.
    pub now: DateTime<Utc>,
    /// The run's budget before today's overflow.
    pub soft_cap: u32,
    /// Whether mail due today goes beyond `soft_cap`.
    pub overflow: bool,
}

/// The run's caps: credits (hard), budget before today's overflow, and the overflow.
fn caps(
    opts: &Options,
    account: &crate::brevo::Account,
    cfg: &Config,
    now: DateTime<Utc>,
) -> (u32, u32, bool) {
    let credits = if account.unlimited() {
        u32::MAX
    } else {
        account.sendable()
    };
    let hour = chrono::Timelike::hour(&now.with_timezone(&cfg.tz));
    match opts.budget {
        Budget::Hourly {
            limit,
            urgent_beyond_limit,
        } => (
            credits,
            limit.allowance(credits, opts.reserve, hour),
            urgent_beyond_limit,
        ),
        Budget::EndOfDay => (credits, credits, false),
    }
}

/// One mail of a dry run's plan.
#[derive(Debug, Serialize)]
pub struct Planned {
    /// `send`, `park` or `already sent`.
    pub action: &'static str,
    /// Urgency band.
    pub urgency: String,
    /// Its current priority.
    pub priority: u8,
    /// Its template, if readable.
    pub template_id: Option<u32>,
    /// Its first recipient, if readable.
    pub to: Option<String>,
    /// Why it would be parked.
    pub reason: Option<String>,
}

/// What a drain would do, in order.
#[derive(Debug, Serialize)]
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

/// A dry run: reads the credits and the queue (handing every mail back in place) and
/// shows what a drain would send or set aside, in order. Nothing is sent or moved.
pub async fn plan(cfg: &Config, opts: &Options) -> Result<Plan> {
    let key = cfg.require_api_key()?.clone();
    let _lock = state::lock(&cfg.state_dir, opts.lock_wait)?;
    let now = cfg.now();
    let brevo = Brevo::new(&cfg.brevo_url, key, cfg.timeout);
    let account = tokio::task::spawn_blocking(move || brevo.account())
        .await
        .context("reading credits")??;
    let (credits, soft_cap, overflow) = caps(opts, &account, cfg, now);
    let journal = if cfg.state_dir.join(state::DB_FILE).exists() {
        Some(Store::open(&cfg.state_dir)?)
    } else {
        None
    };
    let (broker, info) = open_queues(cfg).await?;
    let browsed = broker
        .browse(&cfg.queue, info.ready.min(super::stats::SCAN_MAX))
        .await?;
    broker.close().await;
    let rules = Rules {
        cfg,
        now,
        soft_cap,
        overflow,
    };
    let mut mails = Vec::new();
    let mut committed = 0u32;
    for b in browsed {
        if committed >= credits {
            break;
        }
        let priority = b.props.priority().unwrap_or(0);
        let item = match decide(
            &rules,
            journal.as_ref(),
            &identity(&b.props, &b.body),
            &b.body,
            committed,
        )? {
            Decision::Stop => break,
            Decision::AlreadySent => Planned {
                action: "already sent",
                urgency: "-".into(),
                priority,
                template_id: None,
                to: None,
                reason: None,
            },
            Decision::Park { reason, detail } => {
                let m = mail::parse(&b.body, cfg.tz).ok();
                Planned {
                    action: "park",
                    urgency: if reason == "expired" {
                        "expired".into()
                    } else {
                        "bad".into()
                    },
                    priority,
                    template_id: m.as_ref().map(|m| m.template_id),
                    to: m.as_ref().map(|m| m.first_recipient().to_string()),
                    reason: Some(format!("{reason}: {detail}")),
                }
            }
            Decision::Send(m, u) => {
                committed += 1;
                Planned {
                    action: "send",
                    urgency: u.band().into(),
                    priority,
                    template_id: Some(m.template_id),
                    to: Some(m.first_recipient().to_string()),
                    reason: None,
                }
            }
        };
        mails.push(item);
    }
    Ok(Plan {
        dry_run: true,
        budget: soft_cap,
        credits: account.credits,
        mails,
    })
}

/// Renders a plan for people.
pub fn render_plan(p: &Plan, cfg: &Config) -> String {
    let mut t = crate::output::table(
        &[
            "#",
            "action",
            "urgency",
            "priority",
            "template",
            "recipient",
            "reason",
        ],
        cfg.color,
    );
    for (i, m) in p.mails.iter().enumerate() {
        t.add_row(vec![
            (i + 1).to_string(),
            m.action.to_string(),
            m.urgency.clone(),
            m.priority.to_string(),
            m.template_id.map_or_else(|| "-".into(), |t| t.to_string()),
            m.to.clone().unwrap_or_else(|| "-".into()),
            m.reason.clone().unwrap_or_default(),
        ]);
    }
    let sends = p.mails.iter().filter(|m| m.action == "send").count();
    format!(
        "dry run: would send {sends} of a budget of {} ({} credits); nothing was sent or moved\n{t}",
        p.budget, p.credits
    )
}

/// Decides the fate of one mail, `committed` sends having been made or started.
pub fn decide(
    rules: &Rules<'_>,
    journal: Option<&Store>,
    identity: &str,
    body: &[u8],
    committed: u32,
) -> Result<Decision> {
    if let Some(store) = journal
        && store.is_sent(identity)?
    {
        return Ok(Decision::AlreadySent);
    }
    let m = match mail::parse(body, rules.cfg.tz) {
        Ok(m) => m,
        Err(bad) => {
            return Ok(Decision::Park {
                reason: bad.reason(),
                detail: bad.to_string(),
            });
        }
    };
    let urgency = Urgency::of(m.deadline, rules.now, rules.cfg.tz);
    if urgency == Urgency::Expired {
        let when = m.deadline.map(|d| d.to_rfc3339()).unwrap_or_default();
        return Ok(Decision::Park {
            reason: "expired",
            detail: format!("deadline {when} passed"),
        });
    }
    if committed >= rules.soft_cap && !(rules.overflow && urgency == Urgency::Days(0)) {
        return Ok(Decision::Stop);
    }
    Ok(Decision::Send(m, urgency))
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
