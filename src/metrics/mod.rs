//! Every run visible in Prometheus: acaso-mail runs once and exits, so at the end of each
//! run (failed ones included) it pushes its metrics to a Pushgateway, grouped by job,
//! instance (host) and subcommand. Counters are totals across runs: they are kept in the
//! state store and pushed whole, so a run never resets them.

use std::collections::BTreeMap;

use anyhow::Result;
use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

mod push;

pub use crate::gauges::RunGauges;
pub use push::{GatewayCheck, check as check_pushgateway, hostname, push_run};

use crate::state::Store;

/// The Pushgateway job name.
pub const JOB: &str = "acaso-mail";

/// What one drain adds to the counters kept across runs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    /// Mails Brevo accepted.
    pub sent: u32,
    /// Sends that failed.
    pub failed: u32,
    /// Failed sends put in a retry queue.
    pub retried: u32,
    /// Mails parked because their deadline passed.
    pub expired: u32,
    /// Redelivered mails found already sent.
    pub already_sent: u32,
    /// 429 answers.
    pub rate_limited: u32,
    /// Sent mails per template.
    pub sent_by_template: BTreeMap<u32, u32>,
    /// Sent mails per priority.
    pub sent_by_priority: BTreeMap<u8, u32>,
    /// Parked mails per reason.
    pub parked_by_reason: BTreeMap<String, u32>,
}

/// Adds a drain's counts to the stored totals of `subcommand`.
pub fn record_drain(store: &Store, subcommand: &str, s: &Totals) -> Result<()> {
    let sub = format!("subcommand={subcommand}");
    let add = |name: &str, extra: &str, n: u32| -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let labels = if extra.is_empty() {
            sub.clone()
        } else {
            format!("{sub},{extra}")
        };
        store.add_counter(name, &labels, f64::from(n))
    };
    add("mails_sent_total", "", s.sent)?;
    add("mails_fails_total", "", s.failed)?;
    add("acaso_mail_retries_total", "", s.retried)?;
    add("acaso_mail_expired_total", "", s.expired)?;
    add("acaso_mail_already_sent_total", "", s.already_sent)?;
    add("acaso_mail_rate_limited_total", "", s.rate_limited)?;
    for (t, n) in &s.sent_by_template {
        add("payload_template_total", &format!("template={t}"), *n)?;
    }
    for (p, n) in &s.sent_by_priority {
        add("payload_priority_total", &format!("priority={p}"), *n)?;
    }
    for (r, n) in &s.parked_by_reason {
        add("acaso_mail_parked_total", &format!("reason={r}"), *n)?;
    }
    Ok(())
}

/// Remembers that `subcommand` succeeded at `unix` seconds (a gauge that must survive
/// the failed runs that replace the whole push group).
pub fn record_success(store: &Store, subcommand: &str, unix: f64) -> Result<()> {
    store.set_value(
        "acaso_mail_last_success_timestamp_seconds",
        &format!("subcommand={subcommand}"),
        unix,
    )
}

const HELP: [(&str, &str); 11] = [
    (
        "mails_sent_total",
        "Mails Brevo accepted (the first version's mails_sent).",
    ),
    (
        "mails_fails_total",
        "Sends that failed, retried or parked (the first version's mails_fails).",
    ),
    (
        "payload_template_total",
        "Sent mails per Brevo template (the first version's payload_template).",
    ),
    (
        "payload_priority_total",
        "Sent mails per AMQP priority (the first version's payload_priority).",
    ),
    (
        "acaso_mail_retries_total",
        "Failed sends put in a retry queue.",
    ),
    (
        "acaso_mail_expired_total",
        "Mails parked because their deadline passed.",
    ),
    ("acaso_mail_parked_total", "Mails parked, per reason."),
    (
        "acaso_mail_already_sent_total",
        "Redelivered mails found already sent and acked without sending.",
    ),
    ("acaso_mail_rate_limited_total", "429 answers from Brevo."),
    (
        "acaso_mail_delivery_events_total",
        "Brevo delivery events of acaso-mail's mails, by Brevo's event name and template.",
    ),
    (
        "acaso_mail_last_success_timestamp_seconds",
        "When this subcommand last did its job (UNIX time).",
    ),
];

/// Every metric name acaso-mail pushes (dashboards and alerts may use only these).
pub const EXPORTED: [&str; 20] = [
    "mails_sent_total",
    "mails_fails_total",
    "payload_template_total",
    "payload_priority_total",
    "acaso_mail_retries_total",
    "acaso_mail_expired_total",
    "acaso_mail_parked_total",
    "acaso_mail_already_sent_total",
    "acaso_mail_rate_limited_total",
    "acaso_mail_last_success_timestamp_seconds",
    "acaso_mail_last_run_timestamp_seconds",
    "acaso_mail_last_run_success",
    "acaso_mail_run_duration_seconds",
    "acaso_mail_queue_ready",
    "acaso_mail_queue_ready_by_urgency",
    "acaso_mail_retrying",
    "acaso_mail_parked",
    "acaso_mail_brevo_credits",
    "acaso_mail_credits_next_reset_timestamp_seconds",
    "acaso_mail_delivery_events_total",
];

/// The drain counters and their known label sets: (name, label name, label values).
/// A counter, its label name (if any) and its known label values (`None`: unlabelled).
type Known = (&'static str, Option<&'static str>, Vec<Option<String>>);

fn known_series() -> Vec<Known> {
    let plain = [
        "mails_sent_total",
        "mails_fails_total",
        "acaso_mail_retries_total",
        "acaso_mail_expired_total",
        "acaso_mail_already_sent_total",
        "acaso_mail_rate_limited_total",
    ];
    let mut out: Vec<_> = plain.iter().map(|n| (*n, None, vec![None])).collect();
    let templates = crate::mail::LEGACY_TEMPLATES
        .iter()
        .map(|(t, _)| Some(t.to_string()));
    out.push((
        "payload_template_total",
        Some("template"),
        templates.collect(),
    ));
    let priorities = (0..=crate::urgency::OUR_MAX_PRIORITY).map(|p| Some(p.to_string()));
    out.push((
        "payload_priority_total",
        Some("priority"),
        priorities.collect(),
    ));
    let reasons = crate::park::ParkReason::ALL
        .iter()
        .map(|r| Some(r.to_string()));
    out.push(("acaso_mail_parked_total", Some("reason"), reasons.collect()));
    out
}

/// A stored metric: its label names, and (label values, value) rows.
type Series = (Vec<String>, Vec<(Vec<String>, f64)>);

/// The text exposition of everything `subcommand` pushes.
pub fn render(
    store: Option<&Store>,
    subcommand: &str,
    g: &RunGauges,
    now_unix: f64,
) -> Result<String> {
    let registry = Registry::new();
    let sub = format!("subcommand={subcommand}");
    let mut vecs: BTreeMap<String, Series> = BTreeMap::new();
    // A drain's counters start at 0, with every known label set, so that a dashboard or
    // rate() sees a series before the first failure, retry or parked mail.
    if subcommand.starts_with("drain-") {
        for (name, label, values) in known_series() {
            let entry = vecs
                .entry(name.to_string())
                .or_insert_with(|| (label.iter().map(|l| l.to_string()).collect(), Vec::new()));
            for v in values {
                entry.1.push((v.into_iter().collect(), 0.0));
            }
        }
    }
    if subcommand == "events" {
        // Every Brevo event name for every known template, from 0.
        let entry = vecs
            .entry(crate::state::EVENTS_COUNTER.to_string())
            .or_insert_with(|| (vec!["event".into(), "template".into()], Vec::new()));
        for e in crate::brevo::events::EVENT_NAMES {
            for (t, _) in crate::mail::LEGACY_TEMPLATES {
                entry.1.push((vec![e.to_string(), t.to_string()], 0.0));
            }
        }
    }
    if let Some(store) = store {
        for (name, labels, value) in store.counters()? {
            let mut pairs: Vec<(String, String)> = labels
                .split(',')
                .filter_map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect();
            if !pairs
                .iter()
                .any(|(k, v)| k == "subcommand" && format!("subcommand={v}") == sub)
            {
                continue;
            }
            pairs.retain(|(k, _)| k != "subcommand");
            let entry = vecs
                .entry(name)
                .or_insert_with(|| (pairs.iter().map(|(k, _)| k.clone()).collect(), Vec::new()));
            entry
                .1
                .push((pairs.into_iter().map(|(_, v)| v).collect(), value));
        }
    }
    for (name, (label_names, rows)) in vecs {
        let help = HELP
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("acaso-mail metric", |(_, h)| *h);
        let names: Vec<&str> = label_names.iter().map(String::as_str).collect();
        if name.ends_with("_total") {
            let c = IntCounterVec::new(Opts::new(name.clone(), help), &names)?;
            for (values, v) in rows {
                let vals: Vec<&str> = values.iter().map(String::as_str).collect();
                // Counters are whole mails; stored as REAL for SQLite's sake.
                c.with_label_values(&vals).inc_by(v.max(0.0).round() as u64);
            }
            registry.register(Box::new(c))?;
        } else {
            let gv = GaugeVec::new(Opts::new(name.clone(), help), &names)?;
            for (values, v) in rows {
                let vals: Vec<&str> = values.iter().map(String::as_str).collect();
                gv.with_label_values(&vals).set(v);
            }
            registry.register(Box::new(gv))?;
        }
    }
    let gauge = |name: &str, help: &str, v: f64| -> Result<()> {
        let g = prometheus::Gauge::new(name, help)?;
        g.set(v);
        registry.register(Box::new(g))?;
        Ok(())
    };
    let success = if g.success { 1.0 } else { 0.0 };
    let run_gauges = [
        (
            "acaso_mail_last_run_timestamp_seconds",
            "When this subcommand last ran (UNIX time).",
            Some(now_unix),
        ),
        (
            "acaso_mail_last_run_success",
            "1 if the last run did its job, else 0.",
            Some(success),
        ),
        (
            "acaso_mail_run_duration_seconds",
            "How long the last run took.",
            Some(g.duration.as_secs_f64()),
        ),
        (
            "acaso_mail_queue_ready",
            "Mails ready in the main queue after the run.",
            g.queue_ready.map(f64::from),
        ),
        (
            "acaso_mail_retrying",
            "Mails waiting in the retry queues.",
            g.retrying.map(f64::from),
        ),
        (
            "acaso_mail_parked",
            "Mails in the parking queue.",
            g.parked.map(f64::from),
        ),
        (
            "acaso_mail_brevo_credits",
            "Brevo email credits left after the run.",
            g.credits,
        ),
        (
            "acaso_mail_credits_next_reset_timestamp_seconds",
            "When Brevo's daily credits are next expected to reset, at the latest (UNIX time).",
            g.next_reset,
        ),
    ];
    for (name, help, value) in run_gauges {
        if let Some(v) = value {
            gauge(name, help, v)?;
        }
    }
    if let Some(bands) = &g.bands {
        let gv = GaugeVec::new(
            Opts::new(
                "acaso_mail_queue_ready_by_urgency",
                "Mails ready in the main queue per urgency band.",
            ),
            &["band"],
        )?;
        // Only the bands counted exactly are given (see `census`): no guess is pushed.
        for band in crate::census::all_bands() {
            if let Some(n) = bands.get(band) {
                gv.with_label_values(&[band]).set(f64::from(*n));
            }
        }
        registry.register(Box::new(gv))?;
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out)?;
    Ok(String::from_utf8(out)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn totals_survive_runs_and_stay_in_their_subcommand() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        let mut s = Totals {
            sent: 3,
            failed: 1,
            ..Totals::default()
        };
        s.sent_by_template.insert(9, 3);
        s.sent_by_priority.insert(8, 3);
        s.parked_by_reason.insert("expired".into(), 1);
        record_drain(&store, "drain-hourly", &s).expect("record");
        record_drain(&store, "drain-hourly", &s).expect("record");
        record_drain(&store, "drain-eod", &s).expect("record");
        record_success(&store, "drain-hourly", 1000.0).expect("ok");
        record_success(&store, "drain-hourly", 2000.0).expect("ok");
        let g = RunGauges {
            success: true,
            credits: Some(12.5),
            ..RunGauges::default()
        };
        let text = render(Some(&store), "drain-hourly", &g, 2000.0).expect("render");
        assert!(text.contains("mails_sent_total 6"), "{text}");
        assert!(text.contains("mails_fails_total 2"), "{text}");
        assert!(
            text.contains("payload_template_total{template=\"9\"} 6"),
            "{text}"
        );
        assert!(
            text.contains("payload_priority_total{priority=\"8\"} 6"),
            "{text}"
        );
        assert!(
            text.contains("acaso_mail_parked_total{reason=\"expired\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("acaso_mail_last_success_timestamp_seconds 2000"),
            "{text}"
        );
        assert!(text.contains("acaso_mail_brevo_credits 12.5"), "{text}");
        assert!(text.contains("# TYPE mails_sent_total counter"), "{text}");
        // Every exported name is listed in EXPORTED, and the other way round.
        let mut all = Totals::default();
        for (i, n) in [1u32; 6].iter().enumerate() {
            all.sent_by_template
                .insert(u32::try_from(i).expect("i"), *n);
        }
        all.sent_by_priority.insert(1, 1);
        all.parked_by_reason.insert("x".into(), 1);
        (
            all.sent,
            all.failed,
            all.retried,
            all.expired,
            all.already_sent,
            all.rate_limited,
        ) = (1, 1, 1, 1, 1, 1);
        record_drain(&store, "full", &all).expect("record");
        record_success(&store, "full", 1.0).expect("ok");
        let labels = "subcommand=full,event=delivered,template=9";
        store
            .add_counter(crate::state::EVENTS_COUNTER, labels, 1.0)
            .expect("count");
        let full = RunGauges {
            success: true,
            duration: Duration::from_secs(1),
            queue_ready: Some(1),
            bands: Some(BTreeMap::from([("today".to_string(), 1)])),
            retrying: Some(1),
            parked: Some(1),
            credits: Some(1.0),
            next_reset: Some(86_400.0),
        };
        let text = render(Some(&store), "full", &full, 1.0).expect("render");
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let mut sorted_names = names.clone();
        sorted_names.sort_unstable();
        let mut exported = EXPORTED.to_vec();
        exported.sort_unstable();
        assert_eq!(sorted_names, exported);
        // A drain's counters are there from the start, at 0, with their known labels.
        let fresh = render(None, "drain-hourly", &g, 1.0).expect("render");
        for series in [
            "mails_sent_total 0",
            "mails_fails_total 0",
            "acaso_mail_retries_total 0",
            "acaso_mail_rate_limited_total 0",
            "acaso_mail_parked_total{reason=\"expired\"} 0",
            "acaso_mail_parked_total{reason=\"uncertain_send\"} 0",
            "payload_template_total{template=\"16\"} 0",
            "payload_priority_total{priority=\"9\"} 0",
        ] {
            assert!(fresh.contains(series), "{series}: {fresh}");
        }
        // `events` pushes every Brevo event name for every known template from 0.
        let events = render(None, "events", &g, 1.0).expect("render");
        let zero = "acaso_mail_delivery_events_total{event=\"hardBounces\",template=\"9\"} 0";
        assert!(events.contains(zero), "{events}");
        let eod = render(Some(&store), "drain-eod", &g, 2000.0).expect("render");
        assert!(eod.contains("mails_sent_total 3"), "{eod}");
        assert!(!eod.contains("last_success"), "{eod}");
    }
}
