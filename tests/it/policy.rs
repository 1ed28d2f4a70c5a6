//! Sending policy: pacing, paid plans, 429, and a whole day driven by --now.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::DateTime;
use serde_json::{Value, json};

use crate::it::publish::NOW;
use crate::support::*;

fn dated(to: &str, deadline: &str) -> Value {
    json!({"template_id": 5, "to": [{"email": to}], "params": {"DEADLINE": deadline}, "deadline": deadline})
}

#[test]
fn limit_auto_spreads_the_credits_over_the_hours_left() {
    let w = World::new("auto", 300.0);
    w.publish(
        &(0..40)
            .map(|i| dated(&format!("m{i}@example.org"), "2026-11-30T10:00:00-03:00"))
            .collect::<Vec<_>>(),
        NOW,
    );
    // 12:00 in Recife: 12 hourly runs left, 300 - 30 reserved = 270 -> 23 this run.
    let out = w.json(NOW, &["drain-hourly", "--limit", "auto"]);
    assert_eq!(out["sent"], 23);
    // A bigger reserve sends less.
    let out = w
        .cmd()
        .args([
            "--now",
            NOW,
            "--json",
            "drain-hourly",
            "--limit",
            "auto",
            "--reserve",
            "265",
        ])
        .output()
        .expect("run");
    assert_eq!(stdout_json(&out)["budget"], 1);
}

#[test]
fn a_plan_without_daily_limit_sends_everything_due() {
    let w = World::new("unlimited", 0.0);
    {
        let mut st = w.fake.state();
        st.plan_type = "subscription".into();
        st.credits_type = "unlimited".into();
    }
    w.publish(
        &(0..30)
            .map(|i| dated(&format!("m{i}@example.org"), "2026-12-05T10:00:00-03:00"))
            .collect::<Vec<_>>(),
        NOW,
    );
    let out = w.cmd().arg("credits").output().expect("credits");
    assert!(String::from_utf8_lossy(&out.stdout).contains("no daily limit"));
    let out = w.json(NOW, &["drain-hourly", "--limit", "unlimited"]);
    assert_eq!(out["sent"], 30);
    assert_eq!(w.ready(&w.queue), 0);
}

#[test]
fn a_429_pauses_the_run_as_asked_and_loses_nothing() {
    let w = World::new("429", 300.0);
    w.publish(
        &(0..3)
            .map(|i| dated(&format!("m{i}@example.org"), "2026-11-28T10:00:00-03:00"))
            .collect::<Vec<_>>(),
        NOW,
    );
    w.fake.state().script.push_back(Fault::RateLimited {
        retry_after: Some(1),
        reset: 3600,
    });
    let start = Instant::now();
    let out = w.json(NOW, &["drain-eod", "--concurrency", "1"]);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "did not wait the Retry-After"
    );
    let s = out;
    assert_eq!(
        (
            s["sent"].as_u64(),
            s["rate_limited"].as_u64(),
            s["failed"].as_u64()
        ),
        (Some(3), Some(1), Some(0))
    );
    // The rate-limited mail kept its place: order is unchanged.
    assert_eq!(
        recipients(&w.fake),
        ["m0@example.org", "m1@example.org", "m2@example.org"]
    );
}

/// Calendar days from `now` to `deadline` in Recife.
fn days(deadline: &str, now: &str) -> i64 {
    let tz: chrono_tz::Tz = "America/Recife".parse().expect("tz");
    let d = DateTime::parse_from_rfc3339(deadline)
        .expect("deadline")
        .with_timezone(&tz)
        .date_naive();
    let n = DateTime::parse_from_rfc3339(now)
        .expect("now")
        .with_timezone(&tz)
        .date_naive();
    (d - n).num_days()
}

/// The first version was checked by publishing 400 mock mails and watching a day. This is
/// that day, automated: queued days ahead, reprioritized after midnight, 22 hourly drains
/// with urgent mail arriving mid-afternoon, then the end-of-day drain.
#[test]
fn the_day_experiment() {
    let w = World::new("day", 300.0);
    let pg = Pushgateway::start();
    let day = "2026-12-01";
    let mut published: HashMap<String, String> = HashMap::new();
    let mut batch = |prefix: &str, n: usize, when: &str, deadline_of: &dyn Fn(usize) -> String| {
        let jobs: Vec<Value> = (0..n)
            .map(|i| {
                let to = format!("{prefix}{i}@example.org");
                let d = deadline_of(i);
                published.insert(to.clone(), d.clone());
                dated(&to, &d)
            })
            .collect();
        w.publish(&jobs, when);
    };
    // Queued three days before and the day before: deadlines 0-10 days from the day.
    let spread = |i: usize| {
        let date = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").expect("day")
            + chrono::Duration::days((i % 11) as i64);
        format!("{date}T{:02}:30:00-03:00", 8 + (i % 13))
    };
    batch("early", 170, "2026-11-28T12:00:00-03:00", &spread);
    batch("eve", 170, "2026-11-30T12:00:00-03:00", &|i| spread(i + 5));

    let at = |h: u32, m: u32| format!("{day}T{h:02}:{m:02}:00-03:00");
    let out = w
        .cmd()
        .args(["--now", &at(0, 5), "--json", "reprioritize"])
        .output()
        .expect("reprioritize");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut sent_so_far = 0usize;
    let mut check_drain = |now: &str, args: &[&str]| {
        let out = w
            .cmd()
            .env("PUSHGATEWAY_URL", &pg.url)
            .args(["--now", now, "--json"])
            .args(args)
            .output()
            .expect("drain");
        assert!(
            out.status.success(),
            "{now}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{now}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let accepted = w.fake.accepted();
        let new: Vec<i64> = accepted[sent_so_far..]
            .iter()
            .map(|m| days(m["params"]["DEADLINE"].as_str().expect("deadline"), now))
            .collect();
        sent_so_far = accepted.len();
        let peek = w
            .cmd()
            .args(["--now", now, "--json", "peek", "-n", "1000"])
            .output()
            .expect("peek");
        let queued: Vec<i64> = stdout_json(&peek)["messages"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|m| m["deadline"].as_str().map(|d| days(d, now)))
            .collect();
        // Day by day up to +6; beyond, the contract allows coarser bands.
        let band = |d: i64| match d {
            ..=6 => d,
            7..=13 => 7,
            14..=29 => 14,
            _ => 30,
        };
        let new: Vec<i64> = new.into_iter().map(band).collect();
        let queued: Vec<i64> = queued.into_iter().map(band).collect();
        if let (Some(worst_sent), Some(best_left)) = (new.iter().max(), queued.iter().min()) {
            assert!(
                worst_sent <= best_left,
                "{now}: sent a +{worst_sent} mail while a +{best_left} one stayed queued"
            );
        }
        // Nothing due today stays behind after any drain while credits remain.
        if w.fake.state().credits >= 1.0 {
            assert!(
                !queued.contains(&0),
                "{now}: mail due today left in the queue"
            );
        }
    };
    for h in 1..=22 {
        if h == 16 {
            // Urgent mail arrives mid-afternoon, due tonight and tomorrow.
            batch("urgent", 40, &at(15, 30), &|i| {
                format!("{day}T{:02}:45:00-03:00", 18 + (i % 5))
            });
            batch("soon", 20, &at(15, 30), &|_| {
                "2026-12-02T09:00:00-03:00".to_string()
            });
        }
        check_drain(&at(h, 0), &["drain-hourly"]);
    }
    check_drain(&at(23, 5), &["drain-eod"]);

    let st = w.fake.state();
    assert_eq!(st.accepted.len(), 300, "the credits are used exactly");
    assert_eq!(st.received.len(), 300, "no send was refused (no 402)");
    assert_eq!(st.credits, 0.0);
    let sent: Vec<String> = st
        .accepted
        .iter()
        .map(|m| m["to"][0]["email"].as_str().unwrap_or("").to_string())
        .collect();
    drop(st);
    let due_today: Vec<&String> = published
        .iter()
        .filter(|(_, d)| d.starts_with(day))
        .map(|(to, _)| to)
        .collect();
    assert!(due_today.len() > 40);
    for to in &due_today {
        assert!(sent.contains(to), "{to}, due today, was not sent");
    }
    // Nothing lost, nothing twice: every mail is either sent once or still queued.
    let unique: std::collections::HashSet<&String> = sent.iter().collect();
    assert_eq!(unique.len(), sent.len(), "a mail was sent twice");
    let left = w.ready(&w.queue) as usize;
    assert_eq!(sent.len() + left, published.len(), "mails lost");
    // The pushed counters agree with what Brevo received.
    let pushed: f64 = ["drain-hourly", "drain-eod"]
        .iter()
        .filter_map(|s| pg.value("mails_sent_total", &[&format!("subcommand=\"{s}\"")]))
        .sum();
    assert_eq!(pushed, 300.0);
    assert_eq!(
        pg.value("acaso_mail_brevo_credits", &["subcommand=\"drain-eod\""]),
        Some(0.0)
    );
}
