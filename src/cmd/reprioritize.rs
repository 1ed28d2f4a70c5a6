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
        match mail::parse(&d.data, cfg.tz) {
            Ok(m) => {
                let u = Urgency::of(m.deadline, now, cfg.tz);
                if u == Urgency::Expired {
                    let headers = [
                        (H_REASON, AMQPValue::LongString("expired".into())),
                        (
                            H_DETAIL,
                            AMQPValue::LongString("deadline passed before reprioritize".into()),
                        ),
                        (H_PARKED_AT, AMQPValue::LongString(now.to_rfc3339().into())),
                    ];
                    publish(
                        cfg.dead_queue(),
                        d.data,
                        amqp::with_headers(&d.properties, &headers),
                    )
                    .await?;
                    s.expired += 1;
                } else {
                    let new = scale.priority(u);
                    let ts = d.properties.timestamp().unwrap_or(0);
                    keep.push((new, ts, pos, d));
                }
            }
            Err(bad) => {
                let headers = [
                    (H_REASON, AMQPValue::LongString(bad.reason().into())),
                    (H_DETAIL, AMQPValue::LongString(bad.to_string().into())),
                    (H_PARKED_AT, AMQPValue::LongString(now.to_rfc3339().into())),
                ];
                publish(
                    cfg.dead_queue(),
                    d.data,
                    amqp::with_headers(&d.properties, &headers),
                )
                .await?;
                s.parked += 1;
            }
        }
    }
    // Most urgent first; within a priority, oldest first (publish time, then queue order).
    keep.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    for (new, _, _, d) in keep {
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
