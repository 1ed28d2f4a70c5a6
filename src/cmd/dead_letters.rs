//! `dead-letters`: list the parked mails with their reasons, replay them to the main
//! queue unchanged, or purge them. Selected by position in the list, by reason, or all.

use anyhow::Result;
use schemars::JsonSchema;
use serde::Serialize;

use crate::config::Config;
use crate::mail::Who;
use crate::mailbox::{Envelope, Rabbit, Sweep, Which};
use crate::output::Report;
use crate::state;

/// One parked mail.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Parked {
    /// Its position in the parking queue (1 = next out), for `--index`.
    pub index: u32,
    /// Why it was parked (`expired`, `malformed`, `brevo_rejected`, ...).
    pub reason: Option<String>,
    /// The details.
    pub detail: Option<String>,
    /// When (RFC 3339).
    pub parked_at: Option<String>,
    /// Its template and first recipient, when readable.
    #[serde(flatten)]
    pub who: Who,
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
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "acaso-mail dead-letters --json")]
pub struct Listing {
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
pub async fn run(cfg: &Config, action: Action) -> Result<Report> {
    let _lock = state::lock(&cfg.state_dir, cfg.lock_wait)?;
    let mut mailbox = Rabbit::open(cfg).await?;
    let parking = mailbox.topology().parking();
    let mut listing = Listing {
        messages: Vec::new(),
        replayed: 0,
        purged: 0,
    };
    let (sel, act) = match action {
        Action::List(n) => {
            let parked = mailbox.browse(Which::Parking, n).await?;
            for (i, e) in parked.iter().enumerate() {
                let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
                listing.messages.push(describe(cfg, index, e));
            }
            mailbox.close().await;
            return render(&listing, &parking, true);
        }
        Action::Replay(sel) => (sel, Sweep::Replay),
        Action::Purge(sel) => (sel, Sweep::Purge),
    };
    mailbox
        .sweep_parking(|index, e| {
            if !sel.matches(index, e.reason.as_deref()) {
                return Sweep::Keep;
            }
            listing.messages.push(describe(cfg, index, e));
            match act {
                Sweep::Replay => listing.replayed += 1,
                _ => listing.purged += 1,
            }
            act
        })
        .await?;
    mailbox.close().await;
    render(&listing, &parking, false)
}

fn describe(cfg: &Config, index: u32, e: &Envelope) -> Parked {
    Parked {
        index,
        reason: e.reason.clone(),
        detail: e.detail.clone(),
        parked_at: e.parked_at.clone(),
        who: Who::of(&e.body, cfg.tz),
        message_id: e.message_id.clone(),
    }
}

/// The report: a table of the mails for people (the answer of `list`).
fn render(r: &Listing, parking: &str, listing: bool) -> Result<Report> {
    let mut report = Report::json(r)?;
    if listing {
        report = report.answer();
    }
    report = if r.messages.is_empty() {
        report.line(format!("no parked mail in {parking}"))
    } else {
        let rows = r.messages.iter().map(|m| {
            vec![
                m.index.to_string(),
                m.reason.clone().unwrap_or_else(|| "-".into()),
                m.parked_at.clone().unwrap_or_else(|| "-".into()),
                m.who.template_cell(),
                m.who.to_cell(),
                m.detail
                    .clone()
                    .unwrap_or_default()
                    .chars()
                    .take(80)
                    .collect(),
            ]
        });
        let headers = [
            "#",
            "reason",
            "parked at",
            "template",
            "recipient",
            "detail",
        ];
        report.table(&headers, rows)
    };
    if !listing {
        report = report.line(format!("replayed {}, purged {}", r.replayed, r.purged));
    }
    Ok(report)
}
