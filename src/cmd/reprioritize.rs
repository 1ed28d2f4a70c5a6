//! `reprioritize`: re-publishes every queued mail with the urgency it has today, so a
//! mail queued days ago is not stuck behind newer, less urgent ones.
//!
//! All of it happens in one AMQP transaction on one channel: the new copies (and the
//! expired mails moved to the parking queue) are published and the originals acked, then
//! committed together. Interrupted or crashed before the commit, nothing has changed;
//! the broker hands the originals back. So no mail is lost or duplicated.

use anyhow::Result;
use schemars::JsonSchema;
use serde::Serialize;

use crate::config::Config;
use crate::error::Failure;
use crate::mail::{self, Who};
use crate::mailbox::{Envelope, Rabbit, Reorder, Which};
use crate::output::{self, Report};
use crate::signal::Cancel;
use crate::state;
use crate::urgency::{PriorityScale, Urgency};

/// What `reprioritize` reports.
#[derive(Debug, Default, Serialize, JsonSchema)]
#[schemars(title = "acaso-mail reprioritize --json")]
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
pub async fn run(cfg: &Config, cancel: &Cancel) -> Result<Report> {
    let _lock = state::lock(&cfg.state_dir, cfg.lock_wait)?;
    let mut mailbox = Rabbit::open(cfg).await?;
    let now = cfg.now();
    let scale = mailbox.info().scale();
    let bar = output::progress(cfg, u64::from(mailbox.info().ready), "reprioritize");
    let mut s = Summary::default();
    let done = mailbox
        .reorder(
            |e| {
                let f = fate(cfg, scale, now, e);
                match &f {
                    Reorder::Park { reason, .. } if *reason == "expired" => s.expired += 1,
                    Reorder::Park { .. } => s.parked += 1,
                    Reorder::Requeue(new) => {
                        s.requeued += 1;
                        s.changed += u32::from(*new != e.priority);
                    }
                }
                f
            },
            || bar.inc(1),
            || cancel.received().is_some(),
            now,
        )
        .await?;
    bar.finish_and_clear();
    mailbox.close().await;
    if let (false, Some(sig)) = (done, cancel.received()) {
        return Err(Failure::Interrupted(sig).into());
    }
    let line = format!(
        "re-published {} mail(s), {} with a new priority; parked {} expired and {} unreadable",
        s.requeued, s.changed, s.expired, s.parked
    );
    Ok(Report::json(&s)?.line(line))
}

/// What reprioritize does with one mail.
fn fate(
    cfg: &Config,
    scale: PriorityScale,
    now: chrono::DateTime<chrono::Utc>,
    e: &Envelope,
) -> Reorder {
    match mail::parse(&e.body, cfg.tz) {
        Ok(m) => match Urgency::of(m.deadline, now, cfg.tz) {
            Urgency::Expired => Reorder::Park {
                reason: "expired",
                detail: "deadline passed before reprioritize".into(),
            },
            u => Reorder::Requeue(scale.priority(u)),
        },
        Err(bad) => Reorder::Park {
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

/// What reprioritize would do with a mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Re-publish it with its new priority.
    Requeue,
    /// Park it.
    Park,
}

/// One mail of a reprioritize dry run.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Move {
    /// What would become of it.
    pub action: Action,
    /// Why it would be parked.
    pub reason: Option<String>,
    /// Priority now.
    pub old_priority: u8,
    /// Priority it would get (requeue only).
    pub new_priority: Option<u8>,
    /// Its template and first recipient, when readable.
    #[serde(flatten)]
    pub who: Who,
}

/// What reprioritize would do.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "acaso-mail reprioritize --dry-run --json")]
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
pub async fn dry_run(cfg: &Config) -> Result<Report> {
    let _lock = state::lock(&cfg.state_dir, cfg.lock_wait)?;
    let mailbox = Rabbit::open(cfg).await?;
    let info = mailbox.info().clone();
    let browsed = mailbox.browse(Which::Main, info.ready).await?;
    mailbox.close().await;
    let now = cfg.now();
    let mut summary = Summary::default();
    let mut keep = Vec::new();
    let mut parked = Vec::new();
    for (pos, b) in browsed.into_iter().enumerate() {
        let old = b.priority;
        let mut mv = Move {
            action: Action::Requeue,
            old_priority: old,
            new_priority: None,
            who: Who::of(&b.body, cfg.tz),
            reason: None,
        };
        match fate(cfg, info.scale(), now, &b) {
            Reorder::Park { reason, detail } => {
                if reason == "expired" {
                    summary.expired += 1;
                } else {
                    summary.parked += 1;
                }
                mv.action = Action::Park;
                mv.reason = Some(format!("{reason}: {detail}"));
                parked.push(mv);
            }
            Reorder::Requeue(new) => {
                summary.requeued += 1;
                summary.changed += u32::from(new != old);
                mv.new_priority = Some(new);
                keep.push((new, b.timestamp.unwrap_or(0), pos, mv));
            }
        }
    }
    in_new_order(&mut keep);
    let mut mails: Vec<Move> = keep.into_iter().map(|k| k.3).collect();
    mails.extend(parked);
    let p = Plan {
        dry_run: true,
        summary,
        mails,
    };
    let s = &p.summary;
    let line = format!(
        "dry run: would re-publish {} mail(s), {} with a new priority, and park {} expired and {} unreadable; nothing was moved",
        s.requeued, s.changed, s.expired, s.parked
    );
    Ok(Report::json(&p)?
        .line(line)
        .table(
            &["#", "action", "priority", "template", "recipient", "reason"],
            rows(&p),
        )
        .answer())
}

fn rows(p: &Plan) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for (i, m) in p.mails.iter().enumerate() {
        let prio = match m.new_priority {
            Some(n) if n != m.old_priority => format!("{} -> {n}", m.old_priority),
            _ => m.old_priority.to_string(),
        };
        rows.push(vec![
            (i + 1).to_string(),
            format!("{:?}", m.action).to_lowercase(),
            prio,
            m.who.template_cell(),
            m.who.to_cell(),
            m.reason.clone().unwrap_or_default(),
        ]);
    }
    rows
}
