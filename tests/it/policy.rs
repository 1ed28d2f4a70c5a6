//! Sending policy: pacing, paid plans, 429, and a whole day driven by --now.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::DateTime;
use serde_json::{Value, json};

use crate::it::publish::NOW;
use crate::support::*;

/// Publishes `n` mails (`m0@example.org`...) due at `deadline`.
fn publish_due(w: &World, n: usize, deadline: &str) {
    let jobs: Vec<Value> = (0..n)
        .map(|i| dated(&format!("m{i}@example.org"), deadline))
        .collect();
    w.publish(&jobs, NOW);
}

fn dated(to: &str, deadline: &str) -> Value {
    json!({"template_id": 5, "to": [{"email": to}], "params": {"DEADLINE": deadline}, "deadline": deadline})
}

#[test]
fn limit_auto_spreads_the_credits_over_the_hours_left() {
    let w = World::new("auto", 300.0);
    publish_due(&w, 40, "2026-11-30T10:00:00-03:00");
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
    publish_due(&w, 30, "2026-12-05T10:00:00-03:00");
    let out = w.cmd().arg("credits").output().expect("credits");
    assert!(String::from_utf8_lossy(&out.stdout).contains("no daily limit"));
    let out = w.json(NOW, &["drain-hourly", "--limit", "unlimited"]);
    assert_eq!(out["sent"], 30);
    assert_eq!(w.ready(&w.queue), 0);
}

/// A drain-eod that runs early in Brevo's day (just after the reset) paces like an
/// hourly run, and says so: when the reset is, and what to change.
#[test]
fn a_drain_eod_after_the_reset_says_so_and_what_to_change() {
    let w = World::new("eod-late", 300.0);
    publish_due(&w, 3, "2026-12-05T10:00:00-03:00");
    let note = "drain-eod ran after Brevo's credits reset (configured at 03:00 America/Recife): it paced like an hourly run";
    for (now, early) in [
        ("2026-12-03T04:05:00-03:00", true),
        ("2026-12-03T02:05:00-03:00", false),
    ] {
        let out = w
            .cmd()
            .args(["--now", now, "--credits-reset", "03:00", "drain-eod"])
            .output()
            .expect("drain-eod");
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{now}: {err}");
        assert_eq!(text.contains(note), early, "{now}: {text}");
    }
}

#[test]
fn a_429_pauses_the_run_as_asked_and_loses_nothing() {
    let w = World::new("429", 300.0);
    publish_due(&w, 3, "2026-11-28T10:00:00-03:00");
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
fn days_to(deadline: &str, now: &str) -> i64 {
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

/// When the fake Brevo resets its credits in a day experiment.
#[derive(Clone, Copy)]
struct BrevoReset {
    /// Seconds after midnight UTC.
    utc_secs: i64,
    /// The same, as `HH:MM` in Recife.
    local: &'static str,
}

fn unix(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("instant")
        .timestamp()
}

/// Whether `hh_mm` falls in the window (`after`, `by`] of the day (times `HH:MM`).
fn in_window(hh_mm: &str, after: &str, by: &str) -> bool {
    let mins = |t: &str| {
        let (h, m) = t.split_once(':').expect("HH:MM");
        h.parse::<i64>().expect("hour") * 60 + m.parse::<i64>().expect("minute")
    };
    let d = (mins(hh_mm) - mins(after)).rem_euclid(1440);
    let len = (mins(by) - mins(after)).rem_euclid(1440);
    d > 0 && d <= len
}

/// The first version was checked by publishing 400 mock mails and watching a day. This is
/// that day, automated, twice over, with Brevo's credits resetting at `reset`: mail queued
/// days ahead, reprioritized after midnight, 22 hourly drains with urgent mail arriving
/// mid-afternoon, then the end-of-day drain at 23:05, on the schedule as installed. The
/// first day teaches acaso-mail when the credits reset; the Brevo day that starts at that
/// reset must then spend exactly its 300 credits, none refused, with every mail due that
/// day sent, and none of the following Brevo day's credits spent early.
fn day_experiment(name: &str, reset: BrevoReset) {
    let w = World::new(name, 300.0);
    let pg = Pushgateway::start();
    let days = ["2026-12-01", "2026-12-02"];
    let at = |day: &str, h: u32, m: u32| format!("{day}T{h:02}:{m:02}:00-03:00");
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
    // Queued before the first day: deadlines 0-20 days ahead, about 33 a day.
    let spread = |i: usize| {
        let date = chrono::NaiveDate::parse_from_str(days[0], "%Y-%m-%d").expect("day")
            + chrono::Duration::days((i % 21) as i64);
        format!("{date}T{:02}:30:00-03:00", 8 + (i % 13))
    };
    batch("early", 350, "2026-11-28T12:00:00-03:00", &spread);
    batch("eve", 350, "2026-11-30T12:00:00-03:00", &|i| spread(i + 7));

    // The fake's clock follows --now; its credits go back to 300 at the reset.
    w.fake.set_now(unix(&at(days[0], 0, 0)));
    w.fake.reset_daily_at(reset.utc_secs);

    let mut sent_so_far = 0usize;
    let mut eod_outs = Vec::new();
    let run = |now: &str, args: &[&str]| -> Value {
        w.fake.set_now(unix(now));
        let out = w
            .cmd()
            .env("PUSHGATEWAY_URL", &pg.url)
            .args(["--now", now, "--json"])
            .args(args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{now} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{now}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout_json(&out)
    };
    let mut check_drain = |now: &str, args: &[&str]| {
        let summary = run(now, args);
        if args == ["drain-eod"] {
            eod_outs.push(summary);
        }
        let accepted = w.fake.accepted();
        let new: Vec<i64> = accepted[sent_so_far..]
            .iter()
            .map(|m| days_to(m["params"]["DEADLINE"].as_str().expect("deadline"), now))
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
            .filter_map(|m| m["deadline"].as_str().map(|d| days_to(d, now)))
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
    for day in days {
        let out = w
            .cmd()
            .args(["--now", &at(day, 0, 5), "--json", "reprioritize"])
            .output()
            .expect("reprioritize");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let next_day = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").expect("day")
            + chrono::Duration::days(1);
        for h in 1..=22 {
            if h == 16 {
                // Urgent mail arrives mid-afternoon, due tonight and tomorrow.
                batch(&format!("urgent{day}."), 40, &at(day, 15, 30), &|i| {
                    format!("{day}T{:02}:45:00-03:00", 18 + (i % 5))
                });
                batch(&format!("soon{day}."), 20, &at(day, 15, 30), &|_| {
                    format!("{next_day}T09:00:00-03:00")
                });
            }
            check_drain(&at(day, h, 0), &["drain-hourly"]);
        }
        check_drain(&at(day, 23, 5), &["drain-eod"]);
    }

    // What stats says at the end: the reset, observed, and when drain-eod runs.
    let end = at(days[1], 23, 10);
    let stats = run(&end, &["stats"]);
    let r = &stats["credits_reset"];
    assert_eq!(r["source"], "observed", "{r}");
    let (after, by) = (
        r["after"].as_str().expect("after"),
        r["by"].as_str().expect("by"),
    );
    assert!(
        in_window(reset.local, after, by),
        "the reset at {} is not in ({after}, {by}]: {r}",
        reset.local
    );
    assert_eq!(r["drain_eod_seen"], true, "{r}");
    assert_eq!(r["drain_eod_at"], "23:05", "{r}");
    let eod_late = reset.local != "00:00";
    assert_eq!(r["drain_eod_after_reset"], eod_late, "{r}");
    let warned = stats["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .any(|w| {
            w.as_str()
                .is_some_and(|w| w.contains("acaso-mail-drain-eod.timer"))
        });
    assert_eq!(warned, eod_late, "{stats}");
    let text = w
        .cmd()
        .args(["--now", &end, "stats"])
        .output()
        .expect("stats");
    let text = String::from_utf8_lossy(&text.stdout);
    if eod_late {
        assert!(text.contains("after Brevo's credits reset"), "{text}");
    } else {
        assert!(text.contains("(observed:"), "{text}");
    }

    let st = w.fake.state();
    assert_eq!(
        st.refused_no_credits, 0,
        "a send was refused for want of credits"
    );
    assert_eq!(st.received.len(), st.accepted.len(), "a send was refused");
    // Sends per Brevo day: the day that began at the first reset, once it was learned
    // at the first run after it, spent exactly its 300 credits.
    let brevo_day = |t: i64| (t - reset.utc_secs).div_euclid(86_400);
    let learned = brevo_day(unix(&at(days[0], 0, 5))) + 1;
    let per_day = |d: i64| {
        st.accepted_at
            .iter()
            .filter(|t| brevo_day(**t) == d)
            .count()
    };
    assert!(per_day(learned - 1) <= 300);
    assert_eq!(
        per_day(learned),
        300,
        "the Brevo day after the reset was learned"
    );
    // The following Brevo day (begun at 21:00 when the reset is at 21:00) has spent at
    // most a few hourly runs' worth, not its whole credits at 23:05.
    assert!(
        per_day(learned + 1) < 100,
        "{} of the next Brevo day's credits spent early",
        per_day(learned + 1)
    );
    let sent: Vec<String> = st
        .accepted
        .iter()
        .map(|m| m["to"][0]["email"].as_str().unwrap_or("").to_string())
        .collect();
    drop(st);
    for day in days {
        let due: Vec<&String> = published
            .iter()
            .filter(|(_, d)| d.starts_with(day))
            .map(|(to, _)| to)
            .collect();
        assert!(due.len() > 40);
        for to in &due {
            assert!(sent.contains(to), "{to}, due {day}, was not sent");
        }
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
    assert_eq!(pushed, sent.len() as f64);
    // The next reset drain-eod pushed: soon after it when it runs before the reset,
    // most of a day away when it runs after (what the alert looks at).
    let next = pg
        .value(
            "acaso_mail_credits_next_reset_timestamp_seconds",
            &["subcommand=\"drain-eod\""],
        )
        .expect("the next reset is pushed");
    let ahead = next - unix(&at(days[1], 23, 5)) as f64;
    assert_eq!(
        ahead > 12.0 * 3600.0,
        eod_late,
        "next reset {ahead} s ahead"
    );
    if eod_late {
        // It paced rather than spend the new day's credits.
        let last = &eod_outs[eod_outs.len() - 1];
        assert!(last["budget"].as_u64() < Some(100), "{last}");
    }
}

/// `stats` reads the credits, then waits for the run lock: the reading is recorded as
/// of Brevo's answer, not of the end of the wait (a reset during the wait would be put
/// after it).
#[test]
fn stats_records_the_credits_when_brevo_answered_not_after_the_lock() {
    let w = World::new("read-at", 300.0);
    w.declare_queues();
    let held = acaso_mail::state::lock(w.state.path(), Duration::ZERO).expect("lock");
    let started = chrono::Utc::now().timestamp();
    let mut child = spawn(
        std::process::Command::new(assert_cmd::cargo::cargo_bin("acaso-mail"))
            .env_clear()
            .envs(w.env())
            .args(["--json", "--lock-wait", "60", "stats"]),
    );
    // It reads the credits, then waits for the lock.
    wait_until(
        "stats to ask Brevo for the credits",
        Duration::from_secs(60),
        || w.fake.state().account_calls >= 1,
    );
    wait_until_waiting_for_lock(&mut child, w.state.path());
    // A second later on the clock the reading is stamped with: `at < released` holds
    // only if the reading was stamped when Brevo answered, before the lock was free.
    let answered = chrono::Utc::now().timestamp();
    wait_until(
        "the clock to pass the answer's second",
        Duration::from_secs(5),
        || chrono::Utc::now().timestamp() > answered,
    );
    let released = chrono::Utc::now().timestamp();
    drop(held);
    let out = child.wait_with_output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history = acaso_mail::state::Store::open(w.state.path())
        .expect("store")
        .credit_history()
        .expect("history");
    let (_, asked, at, credits, ..) = history.last().cloned().expect("a reading");
    assert_eq!(credits, 300.0);
    assert!(
        started <= asked && asked <= at && at < released,
        "asked {asked}, answered {at}: started {started}, lock released {released}"
    );
}

#[test]
fn the_day_experiment() {
    day_experiment(
        "day",
        BrevoReset {
            utc_secs: 3 * 3600,
            local: "00:00",
        },
    );
}

#[test]
fn the_day_experiment_with_the_reset_at_21_local() {
    day_experiment(
        "day21",
        BrevoReset {
            utc_secs: 0,
            local: "21:00",
        },
    );
}
