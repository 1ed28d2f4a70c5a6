//! `dead-letters`: list the parked mails with their reasons, replay them to the main
//! queue unchanged, or purge them. Selected by position in the list, by reason, or all.

use std::time::Duration;

use anyhow::{Context, Result};
use lapin::options::{BasicAckOptions, BasicGetOptions};
use serde::Serialize;

use super::open_queues;
use crate::amqp::{self, H_ATTEMPTS, H_DETAIL, H_PARKED_AT, H_REASON, Publisher};
use crate::config::Config;
use crate::mail;
use crate::state;

/// One parked mail.
#[derive(Debug, Serialize)]
pub struct Parked {
    /// Its position in the parking queue (1 = next out), for `--index`.
    pub index: u32,
    /// Why it was parked (`expired`, `malformed`, `brevo_rejected`, ...).
    pub reason: Option<String>,
    /// The details.
    pub detail: Option<String>,
    /// When (RFC 3339).
    pub parked_at: Option<String>,
    /// Its template, if the body can be read.
    pub template_id: Option<u32>,
    /// Its first recipient, if the body can be read.
    pub to: Option<String>,
    /// Its message id, if any.
    pub message_id: Option<String>,
}

/// Which parked mails an action applies to.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// All of them.
    pub all: bool,
    /// These positions (1-based, as `list` shows them).
    pub indexes: Vec<u32>,
    /// Those parked for this reason.
    pub reason: Option<String>,
}

impl Selection {
    fn matches(&self, index: u32, reason: Option<&str>) -> bool {
        self.all
            || self.indexes.contains(&index)
            || (self.reason.is_some() && self.reason.as_deref() == reason)
    }
}

/// What `dead-letters` reports.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The parked mails listed (for `list`), or those acted on.
    pub messages: Vec<Parked>,
    /// How many were replayed to the main queue.
    pub replayed: u32,
    /// How many were purged.
    pub purged: u32,
}

/// What to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// List up to N.
    List(u32),
    /// Replay the selection to the main queue.
    Replay(Selection),
    /// Delete the selection.
    Purge(Selection),
}

/// Runs `dead-letters`.
pub async fn run(cfg: &Config, action: Action, lock_wait: Duration) -> Result<Report> {
    let _lock = state::lock(&cfg.state_dir, lock_wait)?;
    let (broker, _) = open_queues(cfg).await?;
    let dead = cfg.dead_queue();
    let mut report = Report {
        messages: Vec::new(),
        replayed: 0,
        purged: 0,
    };
    match action {
        Action::List(n) => {
            for (i, b) in broker.browse(&dead, n).await?.into_iter().enumerate() {
                report.messages.push(describe(
                    cfg,
                    u32::try_from(i + 1).unwrap_or(u32::MAX),
                    &b.props,
                    &b.body,
                ));
            }
        }
        Action::Replay(sel) => act(cfg, &broker, &dead, &sel, true, &mut report).await?,
        Action::Purge(sel) => act(cfg, &broker, &dead, &sel, false, &mut report).await?,
    }
    broker.close().await;
    Ok(report)
}

async fn act(
    cfg: &Config,
    broker: &amqp::Broker,
    dead: &str,
    sel: &Selection,
    replay: bool,
    report: &mut Report,
) -> Result<()> {
    let ch = broker.channel().await?;
    let mut publisher = Publisher::new(broker, 1).await?;
    let mut index = 0u32;
    // Unselected messages stay unacked and go back, in order, when the channel closes.
    while let Some(m) = broker
        .within(
            "reading the parking queue",
            ch.basic_get(dead.into(), BasicGetOptions::default()),
        )
        .await?
    {
        index += 1;
        let d = m.delivery;
        let reason = amqp::header_str(&d.properties, H_REASON);
        if !sel.matches(index, reason.as_deref()) {
            continue;
        }
        report
            .messages
            .push(describe(cfg, index, &d.properties, &d.data));
        if replay {
            // Body and properties as they were, without the parking headers (and with
            // the attempt count reset, so that it gets its full share of retries).
            let mut props = d.properties.clone();
            if let Some(h) = props.headers().clone() {
                let mut kept = lapin::types::FieldTable::default();
                for (k, v) in h.inner() {
                    if ![H_REASON, H_DETAIL, H_PARKED_AT, H_ATTEMPTS].contains(&k.as_str()) {
                        kept.insert(k.clone(), v.clone());
                    }
                }
                props = props.with_headers(kept);
            }
            publisher.publish(&cfg.queue, &d.data, props).await?;
            publisher
                .finish()
                .await
                .context("replaying to the main queue")?;
            report.replayed += 1;
        } else {
            report.purged += 1;
        }
        d.acker
            .ack(BasicAckOptions::default())
            .await
            .context("removing from the parking queue")?;
    }
    broker
        .within(
            "returning the unselected parked mails",
            ch.close(200, "done".into()),
        )
        .await?;
    Ok(())
}

fn describe(cfg: &Config, index: u32, props: &lapin::BasicProperties, body: &[u8]) -> Parked {
    let m = mail::parse(body, cfg.tz).ok();
    Parked {
        index,
        reason: amqp::header_str(props, H_REASON),
        detail: amqp::header_str(props, H_DETAIL),
        parked_at: amqp::header_str(props, H_PARKED_AT),
        template_id: m.as_ref().map(|m| m.template_id),
        to: m.as_ref().map(|m| m.first_recipient().to_string()),
        message_id: props.message_id().as_ref().map(|s| s.as_str().to_string()),
    }
}

/// Renders the report for people.
pub fn render(r: &Report, cfg: &Config, listing: bool) -> String {
    let mut t = crate::output::table(
        &[
            "#",
            "reason",
            "parked at",
            "template",
            "recipient",
            "detail",
        ],
        cfg.color,
    );
    for m in &r.messages {
        t.add_row(vec![
            m.index.to_string(),
            m.reason.clone().unwrap_or_else(|| "-".into()),
            m.parked_at.clone().unwrap_or_else(|| "-".into()),
            m.template_id.map_or_else(|| "-".into(), |t| t.to_string()),
            m.to.clone().unwrap_or_else(|| "-".into()),
            m.detail
                .clone()
                .unwrap_or_default()
                .chars()
                .take(80)
                .collect(),
        ]);
    }
    let table = if r.messages.is_empty() {
        format!("no parked mail in {}", cfg.dead_queue())
    } else {
        t.to_string()
    };
    if listing {
        table
    } else {
        format!("{table}\nreplayed {}, purged {}", r.replayed, r.purged)
    }
}
