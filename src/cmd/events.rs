//! `events`: reads Brevo's delivery events since the last successful read (paged,
//! oldest first, bounded per run, each page recorded with the position after it, so a
//! run that fails midway is resumed by the next), and the blocked contacts; records each
//! mail's latest state, the day's counts and the addresses not to mail again; and
//! publishes each outcome to the app's exchange with publisher confirms. Publishing
//! that fails loses nothing: outcomes wait in the journal until the broker confirms them.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::brevo::Brevo;
use crate::brevo::events::{MAX_BLOCKED_PAGE, window};
use crate::config::Config;
use crate::delivery::{Matcher, settle};
use crate::error::Failure;
use crate::mailbox::outcomes::Outcomes;
use crate::output::Report;
use crate::signal::Cancel;
use crate::state::{ReadPosition, Store};

/// The read position's name in the journal.
const READ: &str = "events";
/// Blocked contacts read at most per run (pages of Brevo's largest, 100).
const MAX_BLOCKED: u64 = 10_000;
/// Outcomes read from the journal's outbox at a time.
const OUTBOX_BATCH: u32 = 5_000;
/// How long events seen are remembered: Brevo serves 90 days at most.
const SEEN_KEEP: Duration = Duration::days(91);

/// How `events` reads.
#[derive(Debug, Clone)]
pub struct Args {
    /// The exchange outcomes go to.
    pub exchange: String,
    /// Events asked for per page (Brevo: at most 5,000).
    pub page_size: u32,
    /// Events read at most this run; the next run goes on from there.
    pub max_events: u32,
}

/// What `events` did (`--json`).
#[derive(Debug, Default, Serialize, JsonSchema)]
#[schemars(title = "acaso-mail events --json")]
pub struct Summary {
    /// The first and last day of the events window read (UTC, as Brevo's dates).
    pub window: (String, String),
    /// Rows Brevo returned this run.
    pub read: u64,
    /// Of those, events not seen before.
    pub new: u32,
    /// Of the new ones, events about mails acaso-mail sent (the others are another
    /// sender's on the same account, or older than the journal).
    pub matched: u32,
    /// New events of acaso-mail's mails, by Brevo's event name.
    pub by_event: BTreeMap<String, u32>,
    /// Whether every event up to now was read (false: stopped at --max-events, by a
    /// signal, or by a failure; the next run goes on from where this one stopped).
    pub complete: bool,
    /// Blocked contacts Brevo listed.
    pub blocked: u32,
    /// Addresses newly suppressed (by events or as blocked contacts).
    pub newly_suppressed: u32,
    /// Addresses suppressed in all.
    pub suppressed: u64,
    /// Outcomes the broker confirmed this run.
    pub published: u32,
    /// Of those, outcomes no queue was bound for.
    pub unrouted: u32,
    /// Outcomes still waiting to be published (after a publishing failure).
    pub pending: u32,
}

impl Summary {
    fn line(&self) -> String {
        let by: Vec<String> = self
            .by_event
            .iter()
            .map(|(e, n)| format!("{e} {n}"))
            .collect();
        let mut s = format!(
            "read {} event(s) ({} new, {} of acaso-mail's mails{}); {} blocked contact(s); {} address(es) suppressed ({} new); {} outcome(s) published",
            self.read,
            self.new,
            self.matched,
            if by.is_empty() {
                String::new()
            } else {
                format!(": {}", by.join(", "))
            },
            self.blocked,
            self.suppressed,
            self.newly_suppressed,
            self.published,
        );
        if self.unrouted > 0 {
            s.push_str(&format!(
                " ({} with no queue bound to the exchange for their event)",
                self.unrouted
            ));
        }
        if !self.complete {
            s.push_str("; more events to read: the next run goes on from here");
        }
        s
    }
}

/// Runs `events`.
pub async fn run(cfg: &Config, args: &Args, cancel: &Cancel) -> Result<Report> {
    let key = cfg.require_api_key()?.clone();
    let store = Store::locked(cfg.state(), cfg.lock_wait)?;
    let now = cfg.now();
    store.prune_delivery(now - SEEN_KEEP)?;
    let brevo = Brevo::new(&cfg.brevo_url, key, cfg.timeout);
    let mut s = Summary::default();
    let mut failure = read_events(cfg, &store, &brevo, args, &mut s, cancel).await?;
    if failure.is_none() {
        failure = read_blocked(&store, &brevo, now, &mut s).await?.err();
    }
    s.suppressed = store.suppressed_count()?;
    // What was read is recorded: publishing it goes ahead even when Brevo failed.
    if let Err(e) = publish(cfg, &store, &args.exchange, &mut s).await {
        s.pending = u32::try_from(store.pending_outcomes(u32::MAX)?.len()).unwrap_or(u32::MAX);
        return Err(e.context(format!(
            "{} outcome(s) wait in the journal for the next run; the events read are kept",
            s.pending
        )));
    }
    let failure = failure.or_else(|| cancel.received().map(Failure::Interrupted));
    let mut report = Report::json(&s)?.line(s.line());
    report.failure = failure;
    Ok(report)
}

/// Reads the events, page by page, recording each page with the position after it.
/// A Brevo failure ends the reading (returned, to end the run with it once what was
/// read is published); a journal failure is an error.
async fn read_events(
    cfg: &Config,
    store: &Store,
    brevo: &Brevo,
    args: &Args,
    s: &mut Summary,
    cancel: &Cancel,
) -> Result<Option<Failure>> {
    let now = cfg.now();
    let today = now.date_naive();
    let first = match store.read_position(READ)? {
        Some(p) => p,
        None => ReadPosition {
            // The first read starts the day before the oldest mail in the journal.
            since: store.oldest_sent()?.map_or(today, |t| t.date_naive()) - Duration::days(1),
            position: 0,
        },
    };
    let (since, until) = window(first.since, now);
    s.window = (since.to_string(), until.to_string());
    let mut position = if since == first.since {
        first.position
    } else {
        0
    };
    let matcher = Matcher::new(store.sent_mails()?);
    let tz = cfg.tz;
    let day_of = move |t: DateTime<Utc>| t.with_timezone(&tz).date_naive();
    let max = u64::from(args.max_events.max(1));
    loop {
        if cancel.received().is_some() || s.read >= max {
            return Ok(None);
        }
        let limit = u32::try_from(u64::from(args.page_size).min(max - s.read)).unwrap_or(1);
        let b = brevo.clone();
        let page =
            match tokio::task::spawn_blocking(move || b.events((since, until), limit, position))
                .await
            {
                Ok(Ok(page)) => page,
                Ok(Err(f)) => return Ok(Some(f)),
                Err(e) => return Err(anyhow::anyhow!("reading Brevo's events: {e}")),
            };
        let rows = page.rows as u64;
        position += rows;
        s.read += rows;
        let settled = settle(page.events, &matcher);
        let rec =
            store.record_events(&settled, (READ, ReadPosition { since, position }), day_of)?;
        for (event, n) in rec.by_event {
            *s.by_event.entry(event).or_default() += n;
        }
        s.new += rec.new;
        s.matched += rec.matched;
        s.newly_suppressed += rec.suppressed;
        if rows < u64::from(limit) {
            s.complete = true;
            break;
        }
    }
    // A window more than a day old moves up to yesterday: the rows from there on are
    // read again once (each event is counted and published once all the same), and the
    // window never grows past Brevo's 90 days.
    let yesterday: NaiveDate = today - Duration::days(1);
    if since < yesterday {
        store.set_read_position(
            READ,
            ReadPosition {
                since: yesterday,
                position: 0,
            },
        )?;
    }
    Ok(None)
}

/// Reads the whole list of blocked contacts (bounded) and records it.
async fn read_blocked(
    store: &Store,
    brevo: &Brevo,
    now: DateTime<Utc>,
    s: &mut Summary,
) -> Result<Result<(), Failure>> {
    let mut contacts = Vec::new();
    let mut offset = 0u64;
    let mut unreadable = false;
    let whole = loop {
        if offset >= MAX_BLOCKED {
            break false;
        }
        let b = brevo.clone();
        let page =
            match tokio::task::spawn_blocking(move || b.blocked(MAX_BLOCKED_PAGE, offset)).await {
                Ok(Ok(page)) => page,
                Ok(Err(f)) => {
                    s.newly_suppressed += store.record_blocked(&contacts, false, now)?;
                    return Ok(Err(f));
                }
                Err(e) => return Err(anyhow::anyhow!("reading Brevo's blocked contacts: {e}")),
            };
        offset += page.rows as u64;
        let last = page.rows < MAX_BLOCKED_PAGE as usize;
        // A row that could not be read leaves the list incomplete: no suppression is
        // lifted for an address that may be on it.
        unreadable |= page.contacts.len() < page.rows;
        contacts.extend(page.contacts);
        if last {
            break !unreadable;
        }
    };
    s.blocked = u32::try_from(contacts.len()).unwrap_or(u32::MAX);
    s.newly_suppressed += store.record_blocked(&contacts, whole, now)?;
    Ok(Ok(()))
}

/// Publishes every outcome waiting in the journal; each one the broker confirmed leaves
/// the journal (also when a later one fails).
async fn publish(cfg: &Config, store: &Store, exchange: &str, s: &mut Summary) -> Result<()> {
    let mut batch = store.pending_outcomes(OUTBOX_BATCH)?;
    if batch.is_empty() {
        return Ok(());
    }
    let mut out = Outcomes::open(cfg, exchange).await?;
    while !batch.is_empty() {
        let mut sent = Ok(());
        for (key, routing, body) in &batch {
            sent = out.publish(key, routing, body.as_bytes()).await;
            if sent.is_err() {
                break;
            }
        }
        if sent.is_ok() {
            sent = out.finish().await;
        }
        let done = out.take_confirmed();
        store.outcomes_published(&done.keys)?;
        s.published += u32::try_from(done.keys.len()).unwrap_or(u32::MAX);
        s.unrouted += done.unrouted;
        sent?;
        batch = store.pending_outcomes(OUTBOX_BATCH)?;
    }
    out.close().await;
    Ok(())
}
