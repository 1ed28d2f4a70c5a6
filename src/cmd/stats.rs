//! `stats`: the queue, its urgency breakdown, the retry and parking queues, credits,
//! today's tallies, and whether today's urgent mail fits in the credits left.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::open_queues;
use crate::amqp::{RETRY_DELAYS_SECS, retry_queue_name};
use crate::config::Config;
use crate::mail;
use crate::state::{self, DayTally, Store};
use crate::urgency::Urgency;

/// At most this many messages are read to break the queue down by urgency.
pub const SCAN_MAX: u32 = 100_000;

/// The main queue as `stats` reports it.
#[derive(Debug, Serialize)]
pub struct QueueStats {
    /// Its name.
    pub name: String,
    /// Ready messages.
    pub ready: u32,
    /// Whether it survives a broker restart (null: unknown).
    pub durable: Option<bool>,
    /// Its `x-max-priority`.
    pub max_priority: u8,
}

/// Today's urgent mail against the credits.
#[derive(Debug, Serialize)]
pub struct Forecast {
    /// Queued mails due today.
    pub due_today: u32,
    /// Queued mails due tomorrow.
    pub due_tomorrow: u32,
    /// Mails due today that the credits left cannot cover.
    pub today_short: u32,
    /// The verdict, in words.
    pub message: String,
}

/// What `stats` reports.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// The main queue.
    pub queue: QueueStats,
    /// Credits left, when an API key is configured.
    pub credits: Option<f64>,
    /// Queued mails per urgency band (`bad` = unreadable bodies).
    pub bands: BTreeMap<String, u32>,
    /// Whether every ready message was read for `bands`.
    pub bands_complete: bool,
    /// Mails waiting in the retry queues.
    pub retrying: u32,
    /// Mails in the parking queue.
    pub parked: u32,
    /// What was sent and failed today (from this host's journal).
    pub today: DayTally,
    /// Urgent mail against credits (null without credits).
    pub forecast: Option<Forecast>,
    /// Warnings an operator should act on.
    pub warnings: Vec<String>,
}

/// How deep the queues are.
#[derive(Debug, Clone, Default)]
pub struct Depth {
    /// Ready mails per urgency band (`bad` = unreadable), from at most [`SCAN_MAX`].
    pub bands: BTreeMap<String, u32>,
    /// Mails in the retry queues.
    pub retrying: u32,
    /// Mails in the parking queue.
    pub parked: u32,
}

/// Reads the queues' depths; the main queue's `ready` mails are browsed (handed back in
/// place) to count them per urgency band.
pub async fn depth(
    broker: &crate::amqp::Broker,
    cfg: &Config,
    ready: u32,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Depth> {
    let browsed = broker.browse(&cfg.queue, ready.min(SCAN_MAX)).await?;
    let mut bands: BTreeMap<String, u32> = BTreeMap::new();
    for b in &browsed {
        let band = match mail::parse(&b.body, cfg.tz) {
            Ok(m) => Urgency::of(m.deadline, now, cfg.tz).band(),
            Err(_) => "bad",
        };
        *bands.entry(band.to_string()).or_default() += 1;
    }
    let mut retrying = 0;
    for d in RETRY_DELAYS_SECS {
        retrying += broker.ready(&retry_queue_name(&cfg.queue, d)).await?;
    }
    let parked = broker.ready(&cfg.dead_queue()).await?;
    Ok(Depth {
        bands,
        retrying,
        parked,
    })
}

/// Runs `stats`.
pub async fn run(cfg: &Config, lock_wait: Duration) -> Result<Stats> {
    let credits = match cfg.api_key {
        Some(_) => Some(super::credits::account(cfg).await?),
        None => None,
    };
    let _lock = state::lock(&cfg.state_dir, lock_wait)?;
    let (broker, info) = open_queues(cfg).await?;
    let now = cfg.now();
    let Depth {
        bands,
        retrying,
        parked,
    } = depth(&broker, cfg, info.ready, now).await?;
    broker.close().await;
    let today = Store::open(&cfg.state_dir)?.tally(now.with_timezone(&cfg.tz).date_naive())?;

    let mut warnings = Vec::new();
    if info.durable == Some(false) {
        warnings.push(format!(
            "queue {} is NOT durable: a broker restart loses every queued mail (move to a durable queue, see README)",
            info.name
        ));
    }
    if info.max_priority == 0 {
        warnings.push(format!(
            "queue {} is not a priority queue: mails go out in arrival order",
            info.name
        ));
    }
    if parked > 0 {
        warnings.push(format!(
            "{parked} mail(s) parked in {}: see `acaso-mail dead-letters`",
            cfg.dead_queue()
        ));
    }
    let forecast = credits.as_ref().map(|a| {
        let due_today = bands.get("today").copied().unwrap_or(0);
        let due_tomorrow = bands.get("tomorrow").copied().unwrap_or(0);
        let left = if a.unlimited() { u32::MAX } else { a.sendable() };
        let today_short = due_today.saturating_sub(left);
        let message = if today_short > 0 {
            format!(
                "URGENT: {due_today} mail(s) due today but only {left} credit(s) left: {today_short} will not be sent today; upgrade the Brevo plan"
            )
        } else if due_today + due_tomorrow > left {
            format!(
                "today's {due_today} urgent mail(s) fit in {left} credit(s), but with tomorrow's {due_tomorrow} they do not"
            )
        } else {
            format!("all mail due today and tomorrow ({}) fits in {left} credit(s)", due_today + due_tomorrow)
        };
        if today_short > 0 {
            warnings.push(message.clone());
        }
        Forecast { due_today, due_tomorrow, today_short, message }
    });
    Ok(Stats {
        bands_complete: info.ready <= SCAN_MAX,
        queue: QueueStats {
            name: info.name,
            ready: info.ready,
            durable: info.durable,
            max_priority: info.max_priority,
        },
        credits: credits.map(|a| a.credits),
        bands,
        retrying,
        parked,
        today,
        forecast,
        warnings,
    })
}

/// Renders `stats` for people.
pub fn render(s: &Stats, cfg: &Config) -> String {
    let durable = match s.queue.durable {
        Some(true) => "durable",
        Some(false) => "NOT durable",
        None => "durability unknown",
    };
    let mut out = format!(
        "queue {}: {} ready ({durable}, x-max-priority {})\n",
        s.queue.name, s.queue.ready, s.queue.max_priority
    );
    let mut t = crate::output::table(&["urgency", "mails"], cfg.color);
    for band in Urgency::BANDS.iter().copied().chain(["bad"]) {
        if let Some(n) = s.bands.get(band) {
            t.add_row(vec![band.to_string(), n.to_string()]);
        }
    }
    if !s.bands.is_empty() {
        out.push_str(&t.to_string());
        out.push('\n');
    }
    out.push_str(&format!(
        "retrying: {}   parked: {}\n",
        s.retrying, s.parked
    ));
    out.push_str(&match s.credits {
        Some(c) => format!("credits left: {c}\n"),
        None => "credits: unknown (no API key)\n".into(),
    });
    out.push_str(&format!(
        "today: {} sent, {} failed, {} expired, {} parked\n",
        s.today.sent, s.today.failed, s.today.expired, s.today.parked
    ));
    if let Some(f) = &s.forecast {
        out.push_str(&format!("forecast: {}\n", f.message));
    }
    for w in &s.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out.trim_end().to_string()
}
