//! `stats`: the queue, its urgency breakdown, the retry and parking queues, credits,
//! today's tallies, and whether today's urgent mail fits in the credits left.

use std::collections::BTreeMap;

use anyhow::Result;
use schemars::JsonSchema;
use serde::Serialize;

use crate::census::{Census, all_bands};
use crate::cmd::brevo_day;
use crate::cmd::staging::finish_interrupted;
use crate::config::Config;
use crate::day::Today;
use crate::mailbox::{Depth, Rabbit, Which};
use crate::metrics::RunGauges;
use crate::output::Report;
use crate::state::{DayTally, Store};

/// The main queue as `stats` reports it.
#[derive(Debug, Serialize, JsonSchema)]
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
#[derive(Debug, Serialize, JsonSchema)]
pub struct Forecast {
    /// Queued mails due today.
    pub due_today: u32,
    /// Queued mails due tomorrow.
    pub due_tomorrow: u32,
    /// Mails due today that the credits left cannot cover.
    pub today_short: u32,
    /// Mails the credits left must cover before Brevo's next reset: today's, and
    /// tomorrow's too when the reset comes after local midnight.
    pub due_before_reset: u32,
    /// Whether `due_today` and `due_tomorrow` are exact (else they are lower bounds:
    /// the read of the queue's head stopped inside those bands).
    pub exact: bool,
    /// The verdict, in words.
    pub message: String,
}

/// What `stats` reports.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "acaso-mail stats --json")]
pub struct Stats {
    /// The main queue.
    pub queue: QueueStats,
    /// Credits left, when an API key is configured and Brevo answered.
    pub credits: Option<f64>,
    /// Why the credits could not be read (a refused key, Brevo unreachable), if so.
    pub credits_error: Option<String>,
    /// Brevo's `relay.enabled`: whether the account may send transactional mail
    /// (`false`: every send will be refused); null when the account was not read or
    /// Brevo's answer does not say.
    pub relay_enabled: Option<bool>,
    /// Mails per urgency band (`bad` = unreadable bodies) among those read from the
    /// head of the queue (at most `--scan`).
    pub bands: BTreeMap<String, u32>,
    /// Whether every ready message was read for `bands`, and none waits in the staging
    /// queue of an interrupted `reprioritize`.
    pub bands_complete: bool,
    /// Mails read from the head of the queue for `bands`.
    pub bands_read: u32,
    /// The bands whose count is exact; the others are lower bounds ("at least").
    pub bands_exact: Vec<String>,
    /// Messages in the staging queue of an interrupted `reprioritize`: batches of up to
    /// 250 mails each (0 when none).
    pub reprioritizing: u32,
    /// Mails waiting in the retry queues.
    pub retrying: u32,
    /// Mails in the parking queue.
    pub parked: u32,
    /// What was sent and failed today from this queue (from the state: this host's
    /// journal, or every host's when the state is in PostgreSQL).
    pub today: DayTally,
    /// Where the state lives: `SQLite at PATH` or `PostgreSQL at URL` (password masked).
    pub state: String,
    /// Today's delivery events (in --tz) and the suppressed addresses.
    pub delivery: crate::delivery::DeliveryDay,
    /// Urgent mail against credits (null without credits).
    pub forecast: Option<Forecast>,
    /// When Brevo's credits reset and how that is known (null only for a date out of
    /// range).
    pub credits_reset: Option<brevo_day::CreditsReset>,
    /// The last `doctor --idempotency-probe` (null: never run).
    pub idempotency_probe: Option<IdempotencyProbe>,
    /// Warnings an operator should act on.
    pub warnings: Vec<String>,
}

/// Whether Brevo refused a repeated idempotency key when last asked.
#[derive(Debug, Serialize, JsonSchema)]
pub struct IdempotencyProbe {
    /// Whether it did: when not, the drain settles every unseen answer through Brevo's
    /// log before any resend.
    pub passed: bool,
    /// When the probe ran (RFC 3339).
    pub at: String,
}

/// Runs `stats`.
pub async fn run(cfg: &Config, cancel: &crate::signal::Cancel) -> Result<Report> {
    // The queue figures need no Brevo: a refused key or an unreachable Brevo is said,
    // not fatal.
    // Recorded as read when Brevo answered, not after the lock and RabbitMQ.
    let (credits, read, credits_error) = match cfg.api_key {
        Some(_) => match crate::brevo::account::read_account(cfg).await {
            Ok((a, read)) => (Some(a), Some(read), None),
            Err(e) => (None, None, Some(format!("{e:#}"))),
        },
        None => (None, None, None),
    };
    let store = Store::locked(cfg.state(), cfg.lock_wait)?;
    let mut mailbox = Rabbit::open(cfg).await?;
    // Counted where the drains will find them: mails an interrupted reprioritize left in
    // its staging queue go back first (if that is cut short, the bands say incomplete).
    let put_back =
        finish_interrupted(&mut mailbox, &store, cfg.tz, cfg.now_not_ahead(), cancel).await?;
    let mut info = mailbox.info().clone();
    if put_back > 0 {
        info.ready = mailbox.ready().await?;
    }
    let now = cfg.now();
    let Depth {
        retrying,
        parked,
        staging,
        ..
    } = mailbox.depth().await?;
    let head = mailbox
        .browse(Which::Main, info.ready.min(cfg.scan))
        .await?;
    let census = Census::of(&head, info.ready, info.scale(), now, cfg.tz);
    drop(head);
    let parking = mailbox.topology().parking();
    let staging_queue = mailbox.topology().staging();
    mailbox.close().await;
    let learned = match (&credits, read) {
        (Some(a), Some(read)) => brevo_day::learn(&store, cfg, read, a, "stats")?,
        _ => brevo_day::known(Some(&store), cfg)?,
    };
    let Today {
        learned,
        position,
        name,
    } = Today::at(learned, now, cfg.tz);
    // "Today" is Brevo's day once its reset is known.
    let today = store.tally(&cfg.queue, name)?;
    let delivery = store.delivery_day(now.with_timezone(&cfg.tz).date_naive())?;
    let eod_seen = store.last_reading_by("drain-eod")?;
    let probe = store.last_probe()?;
    let state = store.place().to_string();
    drop(store);

    let mut warnings = Vec::new();
    if let Some(e) = &credits_error {
        warnings.push(format!("the credits could not be read: {e}"));
    }
    if let Some(p) = probe.as_ref().filter(|p| !p.passed) {
        warnings.push(format!(
            "Brevo accepted a repeated idempotency key in the probe of {}: the drain does not rely on the key, and settles every unseen answer through Brevo's log before any resend",
            p.at.with_timezone(&cfg.tz).format("%Y-%m-%d %H:%M")
        ));
    }
    if credits.as_ref().and_then(|a| a.relay_enabled) == Some(false) {
        warnings.push(
            "Brevo says this account may not send transactional mail (GET /account: relay.enabled is false): every send will be refused; see the account in Brevo".into(),
        );
    }
    if info.durable == Some(false) {
        warnings.push(format!(
            "queue {} is NOT durable: a broker restart loses every queued mail (move to a durable queue, see docs/sending-policy.md, \"Urgency and priorities\")",
            info.name
        ));
    }
    if info.max_priority == 0 {
        warnings.push(format!(
            "queue {} is not a priority queue: mails go out in arrival order",
            info.name
        ));
    }
    if staging > 0 {
        warnings.push(format!(
            "{staging} batch(es) of mails wait in {staging_queue}, left by an interrupted reprioritize, out of the drains' reach: run `acaso-mail reprioritize`"
        ));
    }
    if parked > 0 {
        warnings.push(format!(
            "{parked} mail(s) parked in {parking}: see `acaso-mail dead-letters`"
        ));
    }
    let forecast = credits.as_ref().map(|a| {
        let due_today = census.get("today");
        let due_tomorrow = census.get("tomorrow");
        let exact = census.is_exact("today") && census.is_exact("tomorrow");
        let at_least = if exact { "" } else { "at least " };
        let left = if a.unlimited() { u32::MAX } else { a.sendable() };
        let today_short = due_today.saturating_sub(left);
        // The credits left last until the reset: past local midnight, tomorrow's mail too.
        let tomorrow = now
            .with_timezone(&cfg.tz)
            .date_naive()
            .succ_opt()
            .and_then(|d| {
                use chrono::TimeZone;
                cfg.tz.from_local_datetime(&d.and_time(chrono::NaiveTime::MIN)).earliest()
            });
        let spans = match (&position, tomorrow) {
            (Some(p), Some(t)) => p.next.after >= t.with_timezone(&chrono::Utc),
            _ => false,
        };
        let due_before_reset = due_today + if spans { due_tomorrow } else { 0 };
        let message = if today_short > 0 {
            format!(
                "URGENT: {at_least}{due_today} mail(s) due today but only {left} credit(s) left: {at_least}{today_short} will not be sent today; upgrade the Brevo plan"
            )
        } else if due_today + due_tomorrow > left {
            format!(
                "today's {due_today} urgent mail(s) fit in {left} credit(s), but with tomorrow's {at_least}{due_tomorrow} they do not"
            )
        } else if exact {
            format!("all mail due today and tomorrow ({}) fits in {left} credit(s)", due_today + due_tomorrow)
        } else {
            format!("at least {} mail(s) due today and tomorrow, {left} credit(s): the read of the queue (--scan) stopped before the end of those bands", due_today + due_tomorrow)
        };
        if today_short > 0 {
            warnings.push(message.clone());
        }
        Forecast { due_today, due_tomorrow, today_short, due_before_reset, exact, message }
    });
    let credits_reset = position
        .as_ref()
        .and_then(|p| brevo_day::reset_report(cfg.tz, &learned, p, eod_seen, now));
    if let Some(r) = &credits_reset
        && r.drain_eod_after_reset
    {
        warnings.push(r.message.clone());
    }
    let stats = Stats {
        // Mails still staged are in no band: the bands are not the whole story.
        bands_complete: census.complete() && staging == 0,
        bands_read: census.read,
        bands_exact: census.exact.clone(),
        reprioritizing: staging,
        queue: QueueStats {
            name: info.name,
            ready: info.ready,
            durable: info.durable,
            max_priority: info.max_priority,
        },
        relay_enabled: credits.as_ref().and_then(|a| a.relay_enabled),
        credits: credits.map(|a| a.credits),
        credits_error,
        bands: census.bands.clone(),
        retrying,
        parked,
        today,
        state,
        delivery,
        forecast,
        credits_reset,
        idempotency_probe: probe.map(|p| IdempotencyProbe {
            passed: p.passed,
            at: p.at.with_timezone(&cfg.tz).to_rfc3339(),
        }),
        warnings,
    };
    let mut report = Report::json(&stats)?.answer();
    report.gauges = RunGauges {
        queue_ready: Some(stats.queue.ready),
        bands: Some(census.exact_counts()),
        retrying: Some(stats.retrying),
        parked: Some(stats.parked),
        credits: stats.credits,
        next_reset: position.map(|p| p.next.by.timestamp() as f64),
        ..RunGauges::default()
    };
    Ok(render(&stats, report))
}

/// Adds the text for people to the report.
fn render(s: &Stats, report: Report) -> Report {
    let durable = match s.queue.durable {
        Some(true) => "durable",
        Some(false) => "NOT durable",
        None => "durability unknown",
    };
    let mut report = report.line(format!(
        "queue {}: {} ready ({durable}, x-max-priority {})",
        s.queue.name, s.queue.ready, s.queue.max_priority
    ));
    let mut rows: Vec<Vec<String>> = all_bands()
        .filter_map(|band| {
            let n = s.bands.get(band)?;
            let exact = s.bands_exact.iter().any(|b| b == band);
            let shown = if exact {
                n.to_string()
            } else {
                format!("at least {n}")
            };
            Some(vec![band.to_string(), shown])
        })
        .collect();
    if !s.bands_complete {
        let rest = s.queue.ready.saturating_sub(s.bands_read);
        rows.push(vec!["(not read)".into(), rest.to_string()]);
        report = report.line(format!(
            "urgency of the first {} mails (--scan); the rest not read",
            s.bands_read
        ));
    }
    if !rows.is_empty() {
        report = report.table(&["urgency", "mails"], rows);
    }
    let mut out = format!("retrying: {}   parked: {}\n", s.retrying, s.parked);
    if s.reprioritizing > 0 {
        out.push_str(&format!("staged by reprioritize: {}\n", s.reprioritizing));
    }
    out.push_str(&match s.credits {
        Some(c) => format!(
            "credits left: {c}   transactional sending (relay): {}\n",
            match s.relay_enabled {
                Some(true) => "enabled",
                Some(false) => "DISABLED",
                None => "not said by Brevo",
            }
        ),
        None if s.credits_error.is_some() => {
            "credits: could not be read (see the warning)\n".into()
        }
        None => "credits: unknown (no API key)\n".into(),
    });
    out.push_str(&format!(
        "today: {} sent, {} failed, {} expired, {} parked\n",
        s.today.sent, s.today.failed, s.today.expired, s.today.parked
    ));
    out.push_str(&format!("state: {}\n", s.state));
    out.push_str(&format!("{}\n", s.delivery.line()));
    if let Some(r) = &s.credits_reset
        && !r.drain_eod_after_reset
    {
        // When it runs after the reset, the warning below says it all.
        out.push_str(&format!("credits reset: {}\n", r.message));
    }
    if let Some(f) = &s.forecast {
        out.push_str(&format!("forecast: {}\n", f.message));
    }
    out.push_str(&match &s.idempotency_probe {
        Some(p) if p.passed => format!(
            "idempotency probe: passed ({}): Brevo refuses a repeated key\n",
            p.at
        ),
        Some(p) => format!("idempotency probe: FAILED ({}): see the warning\n", p.at),
        None => String::new(),
    });
    for w in &s.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    report.line(out.trim_end())
}
