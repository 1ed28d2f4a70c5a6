//! `reprioritize`: re-publishes every queued mail with the urgency it has today, so a
//! mail queued days ago is not stuck behind newer, less urgent ones.
//!
//! The Mailbox does it in bounded chunks through a staging queue (mails travel there in
//! batches, so each crosses the broker as a message of its own only on its way out of
//! and back into the main queue), each copy confirmed before its original is acked (see `mailbox::reorder`): no transaction, constant
//! memory but for an 8-byte hash per mail, and nothing lost or left twice in the queue
//! whenever the run stops; a run interrupted or killed is finished by the next one.

use anyhow::Result;
use schemars::JsonSchema;
use serde::Serialize;

use crate::config::Config;
use crate::drain::staged::{Consulted, fate};
use crate::error::Failure;
use crate::mail::Who;
use crate::mailbox::{Rabbit, Reorder, Which};
use crate::output::{self, Report};
use crate::park::ParkReason;
use crate::signal::Cancel;
use crate::state::{self, Store};

/// What `reprioritize` reports.
#[derive(Debug, Default, Serialize, JsonSchema)]
#[schemars(title = "acaso-mail reprioritize --json")]
pub struct Summary {
    /// Mails re-published.
    pub requeued: u32,
    /// Of those read from the main queue, how many changed priority.
    pub changed: u32,
    /// Expired mails moved to the parking queue.
    pub expired: u32,
    /// Unreadable mails moved to the parking queue.
    pub parked: u32,
    /// Mails an interrupted run had left in the staging queue, put back by this one.
    pub resumed: u32,
    /// Second copies (left by an interrupted run) dropped: same identity as a mail put back.
    pub duplicates: u32,
    /// Messages still in the staging queue (non-zero only when interrupted): batches of
    /// up to 250 mails each.
    pub staged: u32,
    /// Seconds the re-ordering took.
    pub seconds: f64,
}

fn count(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Runs `reprioritize`.
pub async fn run(cfg: &Config, cancel: &Cancel) -> Result<Report> {
    // The journal holds the run lock (in PostgreSQL, on its own connection). A copy of
    // a mail the journal knows as sent (its twin went out while an interrupted run had
    // this one in staging) is dropped, not re-queued or parked.
    let journal = Store::locked(cfg.state(), cfg.lock_wait)?;
    let mut mailbox = Rabbit::open(cfg).await?;
    let now = cfg.now();
    let scale = mailbox.info().scale();
    let depth = mailbox.depth().await?;
    // Each mail is handled twice: out to staging, then back; a batch an interrupted run
    // left holds at most 250 mails (an estimate: the bar ends when the work does).
    let work = 2 * u64::from(depth.ready) + 250 * u64::from(depth.staging);
    let bar = output::progress(cfg, work, "reprioritize");
    let start = std::time::Instant::now();
    let consulted = Consulted::new(&journal);
    let r = mailbox
        .reorder(
            |e| consulted.fate(cfg.tz, scale, now, e),
            |parked| journal.record_parking(parked.iter().map(String::as_str), now),
            || bar.inc(1),
            || cancel.received().is_some() || consulted.failed(),
            now,
        )
        .await?;
    bar.finish_and_clear();
    // A journal that failed stopped the run between mails (nothing lost: the rest wait
    // in staging for the next run); its error is the run's.
    consulted.finish()?;
    let staging = mailbox.topology().staging();
    mailbox.close().await;
    let parked_for = |reason| r.parked.get(reason).copied().unwrap_or(0);
    let expired = parked_for(&ParkReason::Expired);
    let s = Summary {
        requeued: count(r.requeued),
        changed: count(r.changed),
        expired: count(expired),
        parked: count(r.parked.values().sum::<u64>() - expired),
        resumed: count(r.resumed),
        duplicates: count(r.duplicates),
        staged: count(r.left_in_staging),
        seconds: (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    };
    let mut line = format!(
        "re-published {} mail(s) in {:.1} s, {} with a new priority; parked {} expired and {} unreadable",
        s.requeued, s.seconds, s.changed, s.expired, s.parked
    );
    if s.resumed > 0 || s.duplicates > 0 {
        line.push_str(&format!(
            "; finished an interrupted run ({} mail(s) found in {staging}, {} duplicate(s) dropped)",
            s.resumed, s.duplicates
        ));
    }
    let mut report = Report::json(&s)?;
    if r.stopped {
        line = format!(
            "interrupted: {line}; {} batch(es) of mails wait in {staging}, out of the drains' reach: run reprioritize again to put them back",
            s.staged
        );
        report.failure = cancel.received().map(Failure::Interrupted);
    }
    Ok(report.line(line))
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
    /// Mails ready in the main queue.
    pub ready: u32,
    /// Mails read from its head (at most `--scan`): the plan covers these only.
    pub read: u32,
    /// The counts it would report.
    #[serde(flatten)]
    pub summary: Summary,
    /// The mails in the new queue order, then those it would park.
    pub mails: Vec<Move>,
}

/// A dry run of `reprioritize`: reads the head of the queue, at most `--scan` mails
/// (handing every one back in place), and shows their new order and what would be
/// parked. Nothing moves.
pub async fn dry_run(cfg: &Config) -> Result<Report> {
    let _lock = state::lock(cfg.state(), cfg.lock_wait)?;
    let mailbox = Rabbit::open(cfg).await?;
    let info = mailbox.info().clone();
    let browsed = mailbox
        .browse(Which::Main, info.ready.min(cfg.scan))
        .await?;
    let read = u32::try_from(browsed.len()).unwrap_or(u32::MAX);
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
        match fate(cfg.tz, info.scale(), now, &b) {
            Reorder::Park { reason, detail } => {
                if reason == ParkReason::Expired {
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
            // fate() never says so: only the run consults the journal.
            Reorder::Drop => {}
        }
    }
    in_new_order(&mut keep);
    let mut mails: Vec<Move> = keep.into_iter().map(|k| k.3).collect();
    mails.extend(parked);
    let p = Plan {
        dry_run: true,
        ready: info.ready,
        read,
        summary,
        mails,
    };
    let s = &p.summary;
    let mut line = format!(
        "dry run: would re-publish {} mail(s), {} with a new priority, and park {} expired and {} unreadable; nothing was moved",
        s.requeued, s.changed, s.expired, s.parked
    );
    if p.read < p.ready {
        line.push_str(&format!(
            " (only the first {} of {} queued mails were read: --scan)",
            p.read, p.ready
        ));
    }
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
