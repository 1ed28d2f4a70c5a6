//! `dead-letters`: list the parked mails with their reasons, replay them to the main
//! queue unchanged, or purge them. Selected by position in the list, by reason, or all.

use anyhow::Result;
use schemars::JsonSchema;
use serde::Serialize;

use crate::brevo::{Brevo, LogAnswer, LogQuery, idempotency_key};
use crate::config::Config;
use crate::drain::LOG_SETTLE;
use crate::error::Failure;
use crate::mail::Who;
use crate::mailbox::{Envelope, Rabbit, Sweep, Which};
use crate::output::Report;
use crate::park::ParkReason;
use crate::state::{self, Store};

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
    pub reason: Option<ParkReason>,
}

impl Selection {
    /// The selection in words, for "nothing matches".
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.indexes.is_empty() {
            let list: Vec<String> = self.indexes.iter().map(u32::to_string).collect();
            parts.push(format!("--index {}", list.join(",")));
        }
        if let Some(r) = &self.reason {
            parts.push(format!("--reason {r}"));
        }
        parts.join(" or ")
    }

    fn matches(&self, index: u32, reason: Option<&str>) -> bool {
        self.all
            || self.indexes.contains(&index)
            || self.reason.is_some_and(|r| reason == Some(r.as_str()))
    }
}

/// What `dead-letters` reports.
#[derive(Debug, Default, Serialize, JsonSchema)]
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
    /// Ask Brevo's log about the mails parked as `uncertain_send`.
    Recheck,
}

/// Runs `dead-letters`.
pub async fn run(cfg: &Config, action: Action) -> Result<Report> {
    let (sel, act) = match action {
        // A listing writes nothing to the state: it takes the run lock alone, and
        // creates no journal.
        Action::List(n) => {
            let _lock = state::lock(cfg.state(), cfg.lock_wait)?;
            return list(cfg, n).await;
        }
        Action::Replay(sel) => (sel, Sweep::Replay),
        Action::Purge(sel) => (sel, Sweep::Purge),
        // Recheck journals sends, and a replay lifts suppressions: they hold the journal,
        // which holds the run lock (in PostgreSQL, on its own connection).
        Action::Recheck => {
            let store = Store::locked(cfg.state(), cfg.lock_wait)?;
            let (mut mailbox, _, has_parking) = open(cfg).await?;
            let checked = recheck(cfg, &mut mailbox, &store, has_parking).await;
            mailbox.close().await;
            return checked;
        }
    };
    let store = Store::locked(cfg.state(), cfg.lock_wait)?;
    let (mut mailbox, parking, has_parking) = open(cfg).await?;
    let mut listing = Listing::default();
    // A position that names no parked mail is a mistake, not "nothing to do".
    if let Some(past) = sel.indexes.iter().max() {
        let parked = mailbox.parked().await?;
        if *past > parked {
            mailbox.close().await;
            return Err(Failure::Usage(match parked {
                0 => format!("--index {past}: {parking} holds no parked mail"),
                n => format!(
                    "--index {past} is past the end: {parking} holds {n} parked mail(s), positions 1 to {n} (as dead-letters list numbers them)"
                ),
            })
            .into());
        }
    }
    let mut seen = 0u32;
    if has_parking {
        mailbox
            .sweep_parking(cfg.now(), |index, e| {
                seen = index;
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
    }
    mailbox.close().await;
    if matches!(act, Sweep::Replay) {
        unsuppress(&store, &listing)?;
    }
    let acted = Acted {
        act,
        parked: seen,
        selection: sel.describe(),
    };
    render(cfg, &listing, &parking, Some(acted))
}

/// The queues, opened without creating any (a mistyped --queue is refused, and a
/// parking queue that was never made holds nothing): the mailbox, the parking queue's
/// name, and whether it exists.
async fn open(cfg: &Config) -> Result<(Rabbit, String, bool)> {
    let mailbox = Rabbit::open_existing(cfg).await?;
    let parking = mailbox.topology().parking();
    let has_parking = mailbox.exists(Which::Parking).await?;
    Ok((mailbox, parking, has_parking))
}

/// `list`: the first `n` parked mails, in the order `replay --index` numbers them.
async fn list(cfg: &Config, n: u32) -> Result<Report> {
    let (mailbox, parking, has_parking) = open(cfg).await?;
    let mut listing = Listing::default();
    if has_parking {
        let parked = mailbox.browse(Which::Parking, n).await?;
        for (i, e) in parked.iter().enumerate() {
            let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
            listing.messages.push(describe(cfg, index, e));
        }
    }
    mailbox.close().await;
    render(cfg, &listing, &parking, None)
}

/// `recheck`: each mail parked as `uncertain_send` is looked up in Brevo's log (by its
/// recipient, template and the tag every send carries). Found: Brevo sent it, so it is
/// journaled as sent and removed. Absent: it never went, so it is replayed. A mail whose
/// latest attempt is under 20 minutes old ([`LOG_SETTLE`]: Brevo's log may not list it
/// yet, and "absent" would then be a lie) is not asked yet and stays parked; so does one
/// whose log cannot be read.
async fn recheck(
    cfg: &Config,
    mailbox: &mut Rabbit,
    store: &Store,
    has_parking: bool,
) -> Result<Report> {
    let brevo = Brevo::new(&cfg.brevo_url, cfg.require_api_key()?.clone(), cfg.timeout);
    let now = cfg.now();
    let mut r = Recheck::default();
    let mut failed: Option<anyhow::Error> = None;
    if has_parking {
        mailbox
            .sweep_parking(cfg.now(), |_, e| {
                if e.reason.as_deref() != Some(ParkReason::UncertainSend.as_str())
                    || failed.is_some()
                {
                    return Sweep::Keep;
                }
                let Ok(m) = crate::mail::parse(&e.body, cfg.tz) else {
                    return Sweep::Keep;
                };
                // A mail parked at once after its last attempt (retries exhausted on an
                // answer that proved nothing) may not be in the log yet.
                let last = store
                    .uncertainty(&e.identity)
                    .ok()
                    .flatten()
                    .and_then(|(_, last)| last);
                if last.is_some_and(|l| now - l < LOG_SETTLE) {
                    r.unknown += 1;
                    return Sweep::Keep;
                }
                let since = e
                    .parked_at
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map_or(now, |t| t.to_utc());
                let query = LogQuery {
                    email: m.first_recipient().to_string(),
                    template_id: m.template_id,
                    tag: idempotency_key(&e.identity),
                    // Its attempts came before it was parked, by up to a day or so.
                    days: LogQuery::days(since - chrono::Duration::days(1), now),
                };
                let step = match brevo.find_in_log(&query) {
                    LogAnswer::Found => store
                        .record_sent(
                            &e.identity,
                            "(found in Brevo's log)",
                            m.template_id,
                            m.first_recipient(),
                            now,
                        )
                        .map(|()| (&mut r.sent, Sweep::Purge)),
                    LogAnswer::Absent => store
                        .clear_uncertain(&e.identity)
                        .map(|()| (&mut r.replayed, Sweep::Replay)),
                    LogAnswer::Unreachable(_) | LogAnswer::Later { .. } => {
                        Ok((&mut r.unknown, Sweep::Keep))
                    }
                };
                match step {
                    Ok((count, sweep)) => {
                        *count += 1;
                        sweep
                    }
                    Err(err) => {
                        failed = Some(err);
                        Sweep::Keep
                    }
                }
            })
            .await?;
    }
    if let Some(err) = failed {
        return Err(err.context("recording what Brevo's log said"));
    }
    let line = format!(
        "Brevo's log: {} sent (removed from the parking queue, journaled as sent), {} never sent (replayed), {} could not be told (still parked: the log did not answer, or the latest attempt is under 20 minutes old)",
        r.sent, r.replayed, r.unknown
    );
    Ok(Report::json(&r)?.line(line))
}

/// What `recheck` found.
#[derive(Debug, Default, Serialize, JsonSchema)]
#[schemars(title = "acaso-mail dead-letters recheck --json")]
pub struct Recheck {
    /// Found in Brevo's log: journaled as sent and removed.
    pub sent: u32,
    /// Not in the log: replayed to the main queue.
    pub replayed: u32,
    /// The log could not be read: still parked.
    pub unknown: u32,
}

/// What `replay` or `purge` did, for the text.
struct Acted {
    act: Sweep,
    /// Parked mails looked at.
    parked: u32,
    /// The selection in words (empty for `--all`).
    selection: String,
}

/// A replayed `suppressed` mail is one an operator wants sent: its address (fixed or
/// unblocked since) is no longer suppressed, or the next drain would park it again.
fn unsuppress(store: &Store, listing: &Listing) -> Result<()> {
    for m in &listing.messages {
        if let (Some("suppressed"), Some(to)) = (m.reason.as_deref(), m.who.to.as_deref()) {
            store.unsuppress(to)?;
        }
    }
    Ok(())
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

/// When a mail was parked, in `--tz`, to the second.
fn parked_at_cell(cfg: &Config, at: Option<&str>) -> String {
    match at.map(chrono::DateTime::parse_from_rfc3339) {
        Some(Ok(t)) => t
            .with_timezone(&cfg.tz)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Some(Err(_)) => at.unwrap_or("-").to_string(),
        None => "-".into(),
    }
}

/// The report: a table of the mails for people (the answer of `list`), and for
/// `replay` / `purge` what was done, or that the selection matched nothing.
fn render(cfg: &Config, r: &Listing, parking: &str, acted: Option<Acted>) -> Result<Report> {
    let mut report = Report::json(r)?;
    if acted.is_none() {
        report = report.answer();
    }
    if r.messages.is_empty() {
        let line = match &acted {
            None => format!("no parked mail in {parking}"),
            Some(a) if a.parked == 0 => format!("no parked mail in {parking}: nothing to do"),
            Some(a) => format!(
                "none of the {} parked mail(s) in {parking} matches {}: nothing done (see `acaso-mail dead-letters`)",
                a.parked, a.selection
            ),
        };
        return Ok(report.line(line));
    }
    let rows = r.messages.iter().map(|m| {
        vec![
            m.index.to_string(),
            m.reason.clone().unwrap_or_else(|| "-".into()),
            parked_at_cell(cfg, m.parked_at.as_deref()),
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
    let tz = cfg.tz.name();
    let parked_at = format!("parked at ({tz})");
    let headers = [
        "#",
        "reason",
        parked_at.as_str(),
        "template",
        "recipient",
        "detail",
    ];
    report = report.table(&headers, rows);
    match acted.map(|a| a.act) {
        Some(Sweep::Replay) => {
            Ok(report.line(format!("replayed {} mail(s) to the main queue", r.replayed)))
        }
        Some(_) => Ok(report.line(format!("purged {} mail(s)", r.purged))),
        None => Ok(report),
    }
}
