//! `peek`: the next mails in the order a drain would take them, consuming nothing.

use anyhow::Result;
use schemars::JsonSchema;
use serde::Serialize;

use crate::config::Config;
use crate::mail::{self, Who};
use crate::mailbox::{Rabbit, Which};
use crate::output::Report;
use crate::state;
use crate::urgency::Urgency;

/// One mail as `peek` shows it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Peeked {
    /// Its AMQP priority.
    pub priority: u8,
    /// Its template and first recipient, when readable.
    #[serde(flatten)]
    pub who: Who,
    /// Deadline (RFC 3339), if any.
    pub deadline: Option<String>,
    /// Urgency band (`today`, `tomorrow`, `+2`, ..., `expired`, `none`, `bad`).
    pub urgency: String,
    /// Why a drain would set it aside instead of sending it, if it would.
    pub problem: Option<String>,
}

/// What `peek` reports.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "acaso-mail peek --json")]
pub struct Peek {
    /// The mails, in drain order.
    pub messages: Vec<Peeked>,
}

/// Runs `peek`. It takes the run lock so that it never hides mails from a drain.
pub async fn run(cfg: &Config, n: u32) -> Result<Report> {
    let _lock = state::lock(cfg.state(), cfg.lock_wait)?;
    // Reading creates nothing: a mistyped --queue is refused (exit 2).
    let mailbox = Rabbit::open_existing(cfg).await?;
    let browsed = mailbox.browse(Which::Main, n).await?;
    mailbox.close().await;
    let now = cfg.now();
    let messages = browsed
        .into_iter()
        .map(|b| {
            let priority = b.priority;
            match mail::parse(&b.body, cfg.tz) {
                Ok(m) => {
                    let u = Urgency::of(m.deadline, now, cfg.tz);
                    Peeked {
                        priority,
                        who: Who::from(&m),
                        deadline: m.deadline.map(|d| d.to_rfc3339()),
                        urgency: u.band().to_string(),
                        problem: (u == Urgency::Expired)
                            .then(|| "expired: will be parked".to_string()),
                    }
                }
                Err(bad) => Peeked {
                    priority,
                    who: Who::default(),
                    deadline: None,
                    urgency: "bad".into(),
                    problem: Some(format!("{}: {bad}", bad.reason())),
                },
            }
        })
        .collect();
    let p = Peek { messages };
    let report = Report::json(&p)?.answer();
    if p.messages.is_empty() {
        return Ok(report.line(format!("queue {} is empty", cfg.queue)));
    }
    Ok(report.table(
        &[
            "#",
            "urgency",
            "priority",
            "deadline",
            "template",
            "recipient",
        ],
        rows(&p, cfg),
    ))
}

/// One table row per mail.
fn rows(p: &Peek, cfg: &Config) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for (i, m) in p.messages.iter().enumerate() {
        let deadline = m
            .deadline
            .as_deref()
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
            .map(|d| {
                d.with_timezone(&cfg.tz)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_else(|| "-".into());
        let recipient = match (&m.who.to, &m.problem) {
            (Some(to), None) => to.clone(),
            (Some(to), Some(p)) => format!("{to} ({p})"),
            (None, p) => p.clone().unwrap_or_default(),
        };
        rows.push(vec![
            (i + 1).to_string(),
            m.urgency.clone(),
            m.priority.to_string(),
            deadline,
            m.who.template_cell(),
            recipient,
        ]);
    }
    rows
}
