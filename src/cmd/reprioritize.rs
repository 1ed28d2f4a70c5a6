//! `reprioritize`: re-publishes every queued mail with the urgency it has today, so a
//! mail queued days ago is not stuck behind newer, less urgent ones.
//!
//! All of it happens in one AMQP transaction on one channel: the new copies (and the
//! expired mails moved to the parking queue) are published and the originals acked, then
//! committed together. Interrupted or crashed before the commit, nothing has changed;
//! the broker hands the originals back. So no mail is lost or duplicated.

use std::time::Duration;

use anyhow::{Context, Result};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions};
use lapin::types::AMQPValue;
use serde::Serialize;

use super::open_queues;
use crate::amqp::{self, H_DETAIL, H_PARKED_AT, H_REASON};
use crate::config::Config;
use crate::error::Failure;
use crate::mail;
use crate::signal::Cancel;
use crate::state;
use crate::urgency::Urgency;

/// What `reprioritize` reports.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Mails re-published.
    pub requeued: u32,
    /// Of those, how many changed priority.
    pub changed: u32,
    /// Expired mails moved to the parking queue.
    pub expired: u32,
    /// Unreadable mails moved to the parking queue.
    pub parked: u32,
}

/// Runs `reprioritize`.
pub async fn run(cfg: &Config, lock_wait: Duration, cancel: &Cancel) -> Result<Summary> {
    let _lock = state::lock(&cfg.state_dir, lock_wait)?;
    let (broker, info) = open_queues(cfg).await?;
    let ch = broker.channel().await?;
    ch.tx_select().await.context("starting a transaction")?;
    let now = cfg.now();
    let scale = info.scale();

    // Take everything (unacked) in the broker's order.
    let mut taken = Vec::new();
    while let Some(m) = broker
        .within(
            "reading the queue",
            ch.basic_get(cfg.queue.as_str().into(), BasicGetOptions::default()),
        )
        .await?
    {
        if let Some(sig) = cancel.received() {
            return Err(Failure::Interrupted(sig).into());
        }
        taken.push(m.delivery);
    }
    let Some(last_tag) = taken.last().map(|d| d.delivery_tag) else {
        return Ok(Summary::default());
    };

    let mut s = Summary::default();
    let mut keep = Vec::new();
    let publish = |queue: String, body: Vec<u8>, props: lapin::BasicProperties| {
        let ch = ch.clone();
        async move {
            ch.basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await
            .with_context(|| format!("publishing to {queue}"))
        }
    };
    for (pos, d) in taken.into_iter().enumerate() {
        match fate(cfg, scale, now, &d.data) {
            Fate::Park { reason, detail } => {
                let headers = [
                    (H_REASON, AMQPValue::LongString(reason.into())),
                    (H_DETAIL, AMQPValue::LongString(detail.into())),
                    (H_PARKED_AT, AMQPValue::LongString(now.to_rfc3339().into())),
                ];
                let props = amqp::with_headers(&d.properties, &headers);
                publish(cfg.dead_queue(), d.data, props).await?;
                if reason == "expired" {
                    s.expired += 1;
                } else {
                    s.parked += 1;
                }
            }
            Fate::Requeue(new) => {
                let ts = d.properties.timestamp().unwrap_or(0);
                keep.push((new, ts, pos, d));
            }
        }
    }
    in_new_order(&mut keep);
    let bar = crate::progress::bar(cfg.progress, keep.len() as u64, "reprioritize");
    for (new, _, _, d) in keep {
        bar.inc(1);
        if d.properties.priority().unwrap_or(0) != new {
            s.changed += 1;
        }
        let props = d
            .properties
            .clone()
            .with_priority(new)
            .with_delivery_mode(2);
        publish(cfg.queue.clone(), d.data, props).await?;
        s.requeued += 1;
    }
    bar.finish_and_clear();
    if let Some(sig) = cancel.received() {
        // Nothing committed: closing the channel rolls back and returns the originals.
        let _ = ch.tx_rollback().await;
        return Err(Failure::Interrupted(sig).into());
    }
    broker
        .within(
            "acking the originals",
            ch.basic_ack(last_tag, BasicAckOptions { multiple: true }),
        )
        .await?;
    broker
        .within("committing the re-published queue", ch.tx_commit())
        .await?;
    broker.close_channel(&ch).await;
    broker.close().await;
    Ok(s)
}

/// What reprioritize does with one mail.
enum Fate {
    /// Park it (expired or unreadable).
    Park {
        /// Reason code.
        reason: &'static str,
        /// Details.
        detail: String,
    },
    /// Re-publish it with this priority.
    Requeue(u8),
}

fn fate(
    cfg: &Config,
    scale: crate::urgency::PriorityScale,
    now: chrono::DateTime<chrono::Utc>,
    body: &[u8],
) -> Fate {
    match mail::parse(body, cfg.tz) {
        Ok(m) => match Urgency::of(m.deadline, now, cfg.tz) {
            Urgency::Expired => Fate::Park {
                reason: "expired",
                detail: "deadline passed before reprioritize".into(),
            },
            u => Fate::Requeue(scale.priority(u)),
        },
        Err(bad) => Fate::Park {
            reason: bad.reason(),
            detail: bad.to_string(),
        },
    }
}

/// Sorts (new priority, publish time, queue position, _) most urgent first, oldest first
/// within a priority.
fn in_new_order<T>(keep: &mut [(u8, u64, usize, T)]) {
    keep.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
}

/// One mail of a reprioritize dry run.
#[derive(Debug, Serialize)]
pub struct Move {
    /// `requeue` or `park`.
    pub action: &'static str,
    /// Priority now.
    pub old_priority: u8,
    /// Priority it would get (requeue only).
    pub new_priority: Option<u8>,
    /// Template, if readable.
    pub template_id: Option<u32>,
    /// First recipient, if readable.
    pub to: Option<String>,
    /// Why it would be parked.
    pub reason: Option<String>,
}

/// What reprioritize would do.
#[derive(Debug, Serialize)]
pub struct Plan {
    /// Always true.
    pub dry_run: bool,
    /// The counts it would report.
    #[serde(flatten)]
    pub summary: Summary,
    /// The mails in the new queue order, then those it would park.
    pub mails: Vec<Move>,
}

/// A dry run of `reprioritize`: reads the queue (handing every mail back in place) and
/// shows the new order and what would be parked. Nothing moves.
pub async fn plan(cfg: &Config, lock_wait: Duration) -> Result<Plan> {
    let _lock = state::lock(&cfg.state_dir, lock_wait)?;
    let (broker, info) = open_queues(cfg).await?;
    let browsed = broker.browse(&cfg.queue, info.ready).await?;
    broker.close().await;
    let now = cfg.now();
    let mut summary = Summary::default();
    let mut keep = Vec::new();
    let mut parked = Vec::new();
    for (pos, b) in browsed.into_iter().enumerate() {
        let m = mail::parse(&b.body, cfg.tz).ok();
        let old = b.props.priority().unwrap_or(0);
        let mut mv = Move {
            action: "requeue",
            old_priority: old,
            new_priority: None,
            template_id: m.as_ref().map(|m| m.template_id),
            to: m.as_ref().map(|m| m.first_recipient().to_string()),
            reason: None,
        };
        match fate(cfg, info.scale(), now, &b.body) {
            Fate::Park { reason, detail } => {
                if reason == "expired" {
                    summary.expired += 1;
                } else {
                    summary.parked += 1;
                }
                mv.action = "park";
                mv.reason = Some(format!("{reason}: {detail}"));
                parked.push(mv);
            }
            Fate::Requeue(new) => {
                summary.requeued += 1;
                summary.changed += u32::from(new != old);
                mv.new_priority = Some(new);
                keep.push((new, b.props.timestamp().unwrap_or(0), pos, mv));
            }
        }
    }
    in_new_order(&mut keep);
    let mut mails: Vec<Move> = keep.into_iter().map(|k| k.3).collect();
    mails.extend(parked);
    Ok(Plan {
        dry_run: true,
        summary,
        mails,
    })
}

/// Renders a plan for people.
pub fn render_plan(p: &Plan, cfg: &Config) -> String {
    let mut t = crate::output::table(
        &["#", "action", "priority", "template", "recipient", "reason"],
        cfg.color,
    );
    for (i, m) in p.mails.iter().enumerate() {
        let prio = match m.new_priority {
            Some(n) if n != m.old_priority => format!("{} -> {n}", m.old_priority),
            _ => m.old_priority.to_string(),
        };
        t.add_row(vec![
            (i + 1).to_string(),
            m.action.to_string(),
            prio,
            m.template_id.map_or_else(|| "-".into(), |t| t.to_string()),
            m.to.clone().unwrap_or_else(|| "-".into()),
            m.reason.clone().unwrap_or_default(),
        ]);
    }
    let s = &p.summary;
    format!(
        "dry run: would re-publish {} mail(s), {} with a new priority, and park {} expired and {} unreadable; nothing was moved\n{t}",
        s.requeued, s.changed, s.expired, s.parked
    )
}
