//! Answers that do not prove Brevo refused a mail (a 5xx, a 408, a 2xx cut short, a
//! dropped connection) mean "maybe sent": the next run, past Brevo's idempotency
//! window, asks Brevo's log before any resend. Each mail is sent exactly once.

use crate::it::publish::NOW;
use crate::support::*;

/// `NOW` plus `minutes`, as (RFC 3339 for `--now`, Unix seconds for the fake).
fn at(minutes: i64) -> (String, i64) {
    let t = chrono::DateTime::parse_from_rfc3339(NOW).expect("NOW")
        + chrono::Duration::minutes(minutes);
    (t.to_rfc3339(), t.timestamp())
}

/// An hourly drain that must exit with `code` (4: no send went through).
fn run(w: &World, now: &str, code: i32) -> serde_json::Value {
    let out = w
        .cmd()
        .args(["--now", now, "--json", "drain-hourly", "--concurrency", "1"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_json(&out)
}

/// Three mails, Brevo accepting each and answering `fault`; an hourly drain, then the
/// next one an hour later (both clocks moved, the retry delays let pass).
fn accepted_then(name: &str, code: i32, fault: impl Fn() -> Fault) -> World {
    let w = World::new(name, 300.0);
    let jobs: Vec<_> = (0..3)
        .map(|i| job(&format!("m{i}@example.org"), 3, "2026-11-27T20:00:00-03:00"))
        .collect();
    w.publish(&jobs, NOW);
    w.fake.set_now(at(15).1);
    w.fake.state().script.extend((0..3).map(|_| fault()));
    let first = run(&w, &at(15).0, code);
    assert_eq!(w.fake.accepted().len(), 3, "{first}");
    let (later, unix) = at(75);
    w.fake.set_now(unix);
    census::release_retries(&w.amqp, &w.queue, 3600);
    let next = w.json(&later, &["drain-hourly", "--concurrency", "1"]);
    let mut sent = recipients(&w.fake);
    sent.sort();
    assert_eq!(
        sent,
        ["m0@example.org", "m1@example.org", "m2@example.org"],
        "each mail once; first run {first}, next run {next}"
    );
    assert_eq!(w.ready(&w.queue), 0, "{next}");
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 0, "{next}");
    w
}

#[test]
fn brevo_accepting_then_answering_5xx_is_not_sent_again_an_hour_later() {
    for status in [500u16, 502, 503, 504, 408] {
        let w = accepted_then(&format!("accept-{status}"), 4, || {
            Fault::AcceptThenStatus(status, r#"{"code":"internal","message":"oops"}"#.into())
        });
        assert_eq!(w.fake.state().log_calls, 3, "{status}: each looked up once");
        // Brevo documents the log at 2 requests a second: the look-ups are paced.
        let times = w.fake.state().log_call_times.clone();
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap.as_millis() >= 450, "{status}: look-ups {gap:?} apart");
        }
    }
}

#[test]
fn brevo_accepting_with_an_unreadable_201_is_not_sent_again() {
    // A 2xx proves the acceptance: journaled as sent at once, never looked up.
    let w = accepted_then("accept-cut", 0, || Fault::AcceptThenCut);
    assert_eq!(w.fake.state().log_calls, 0);
}

#[test]
fn a_5xx_brevo_did_not_accept_is_sent_once_its_log_says_so() {
    let w = World::new("refused-500", 300.0);
    w.publish(&[job("a@example.org", 3, "2026-11-27T20:00:00-03:00")], NOW);
    w.fake.set_now(at(15).1);
    w.fake.state().script.push_back(Fault::Status(
        500,
        r#"{"code":"internal","message":"oops"}"#.into(),
    ));
    run(&w, &at(15).0, 4);
    assert!(w.fake.accepted().is_empty());
    let (later, unix) = at(75);
    w.fake.set_now(unix);
    census::release_retries(&w.amqp, &w.queue, 3600);
    let s = w.json(&later, &["drain-hourly"]);
    assert_eq!(s["sent"].as_u64(), Some(1), "{s}");
    assert_eq!(recipients(&w.fake), ["a@example.org"]);
    assert_eq!(w.fake.state().log_calls, 1);
}

#[test]
fn a_lookup_answered_429_is_asked_again_later_not_parked() {
    // Accepted behind a 500; an hour later Brevo's log answers 429 (then 503): the mail
    // waits, still in doubt; the run after that finds it in the log. Sent once, never
    // parked.
    let w = World::new("lookup-429", 300.0);
    w.publish(&[job("a@example.org", 3, "2026-11-27T20:00:00-03:00")], NOW);
    w.fake.set_now(at(15).1);
    w.fake.state().script.push_back(Fault::AcceptThenStatus(
        500,
        r#"{"code":"internal","message":"oops"}"#.into(),
    ));
    run(&w, &at(15).0, 4);
    for (minutes, status) in [(75, 429u16), (140, 503)] {
        w.fake.state().log_faults.push_back(status);
        let (later, unix) = at(minutes);
        w.fake.set_now(unix);
        census::release_retries(&w.amqp, &w.queue, 3600);
        let s = w.json(&later, &["drain-hourly"]);
        assert_eq!(
            counts(&s, &["sent", "already_sent", "parked", "retried"]),
            [Some(0), Some(0), Some(0), Some(1)],
            "{status}: {s}"
        );
        assert_eq!(w.ready(&format!("{}.dead", w.queue)), 0, "{status}: parked");
    }
    let (later, unix) = at(240);
    w.fake.set_now(unix);
    census::release_retries(&w.amqp, &w.queue, 3600);
    let s = w.json(&later, &["drain-hourly"]);
    assert_eq!(
        counts(&s, &["sent", "already_sent", "parked"]),
        [Some(0), Some(1), Some(0)],
        "{s}"
    );
    assert_eq!(recipients(&w.fake), ["a@example.org"]);
    assert_eq!(w.fake.state().log_calls, 3);
    assert_eq!(w.ready(&w.queue), 0);
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 0);
}

/// A mail parked as `uncertain_send` at once (its last allowed attempt answered 500,
/// though Brevo accepted it) and rechecked before Brevo's log can list it: "absent"
/// would be a lie, so it stays parked; rechecked once the log has settled, it is found
/// and never sent again.
#[test]
fn a_recheck_before_the_log_can_list_the_mail_keeps_it_parked() {
    let w = World::new("recheck-early", 300.0);
    w.publish(
        &[job("early@example.org", 3, "2026-11-27T20:00:00-03:00")],
        NOW,
    );
    w.fake.set_now(at(5).1);
    w.fake.state().script.push_back(Fault::AcceptThenStatus(
        500,
        r#"{"code":"internal","message":"oops"}"#.into(),
    ));
    let out = w
        .cmd()
        .args([
            "--now",
            &at(5).0,
            "--json",
            "drain-eod",
            "--max-attempts",
            "1",
        ])
        .output()
        .expect("drain");
    let first = stdout_json(&out);
    assert_eq!(w.fake.accepted().len(), 1, "{first}");
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 1, "{first}");
    // Three minutes later the log does not list it yet.
    w.fake.state().log_lag = 1;
    w.fake.set_now(at(8).1);
    let early = w.json(&at(8).0, &["dead-letters", "recheck"]);
    assert_eq!(
        early["replayed"], 0,
        "replayed before the log settled: {early}"
    );
    assert_eq!(early["unknown"], 1, "{early}");
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 1);
    // Half an hour later it does: found, journaled as sent, removed; never resent.
    w.fake.state().log_lag = 0;
    w.fake.set_now(at(35).1);
    let settled = w.json(&at(35).0, &["dead-letters", "recheck"]);
    assert_eq!(settled["sent"], 1, "{settled}");
    let again = w.json(&at(40).0, &["drain-eod"]);
    assert_eq!(recipients(&w.fake), ["early@example.org"], "{again}");
}
