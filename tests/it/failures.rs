//! Every failure path: nothing lost, nothing sent twice.

use std::time::Duration;

use crate::it::publish::NOW;
use crate::support::*;

#[test]
fn bad_and_expired_messages_are_parked_with_reasons_and_never_block() {
    let w = World::new("park", 300.0);
    w.publish(
        &[job("ok1@example.org", 3, "2026-11-28T10:00:00-03:00")],
        NOW,
    );
    let unknown = br#"{"mail_params":{"mentor_name":"A","mentoring_datetime":"2026-11-28 10:00:00-03:00"},"recipient":{"name":"A","email":"a@example.org"},"template":99}"#;
    let bad_addr = br#"{"template_id":3,"to":[{"email":"not-an-address"}]}"#;
    let expired = br#"{"template_id":3,"to":[{"email":"late@example.org"}],"deadline":"2026-11-27T11:00:00-03:00"}"#;
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    // Published at the top priority so they come first and must not block the good mail.
    raw_publish(
        &w.queue,
        &[
            (b"{not json".to_vec(), 9),
            (vec![0xff, 0xfe, 0x00], 9),
            (unknown.to_vec(), 9),
            (bad_addr.to_vec(), 9),
            (expired.to_vec(), 9),
            (deep.into_bytes(), 9),
            (vec![b' '; 300 * 1024], 9),
        ],
    );
    w.publish(
        &[job("ok2@example.org", 3, "2026-11-29T10:00:00-03:00")],
        NOW,
    );
    let s = w.json(NOW, &["drain-eod"]);
    assert_eq!(
        (
            s["sent"].as_u64(),
            s["expired"].as_u64(),
            s["parked"].as_u64()
        ),
        (Some(2), Some(1), Some(6)),
        "{s}"
    );
    assert_eq!(recipients(&w.fake), ["ok1@example.org", "ok2@example.org"]);
    let parked = w.take_all(&format!("{}.dead", w.queue));
    let mut reasons: Vec<String> = parked
        .iter()
        .filter_map(|(h, _)| header_str(h, "x-acaso-reason"))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "expired",
            "invalid_address",
            "malformed",
            "malformed",
            "not_utf8",
            "too_large",
            "unknown_template"
        ]
    );
    assert!(
        parked
            .iter()
            .all(|(h, _)| header_str(h, "x-acaso-parked-at").is_some())
    );
    // Bodies intact, byte for byte.
    assert!(parked.iter().any(|(_, b)| b == &vec![0xff, 0xfe, 0x00]));
    assert!(parked.iter().any(|(_, b)| b.as_slice() == unknown));
}

#[test]
fn brevo_400_parks_the_mail_and_the_run_goes_on() {
    let w = World::new("brevo-400", 300.0);
    w.fake.state().missing_templates.insert(77);
    w.publish(
        &[
            job("a@example.org", 77, "2026-11-28T10:00:00-03:00"),
            job("b@example.org", 3, "2026-11-29T10:00:00-03:00"),
        ],
        NOW,
    );
    let s = w.json(NOW, &["drain-eod", "--concurrency", "1"]);
    assert_eq!(
        (
            s["sent"].as_u64(),
            s["failed"].as_u64(),
            s["parked"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    let parked = w.take_all(&format!("{}.dead", w.queue));
    assert_eq!(parked.len(), 1);
    assert_eq!(
        header_str(&parked[0].0, "x-acaso-reason").as_deref(),
        Some("brevo_rejected")
    );
    assert!(
        header_str(&parked[0].0, "x-acaso-detail").is_some_and(|d| d.contains("invalid_parameter"))
    );
}

#[test]
fn bad_key_stops_at_once_and_acks_nothing() {
    let w = World::new("401", 300.0);
    w.publish(&[job("a@example.org", 3, "2026-11-28T10:00:00-03:00")], NOW);
    let out = w
        .cmd()
        .env("SENDINBLUE_API_KEY", "xkeysib-wrong-key-SECRET123")
        .args(["--now", NOW, "drain-eod"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("check SENDINBLUE_API_KEY"), "{err}");
    assert!(!err.contains("SECRET123"));
    assert!(w.fake.accepted().is_empty());
    assert_eq!(w.ready(&w.queue), 1);
}

#[test]
fn out_of_credits_mid_run_keeps_the_rest_queued() {
    // The quota runs out after two sends although /account said 300: as 402, or as 400.
    for status in [402u16, 400] {
        let w = World::new("402", 300.0);
        w.publish(
            &(0..5)
                .map(|i| job(&format!("m{i}@example.org"), 3, "2026-11-28T10:00:00-03:00"))
                .collect::<Vec<_>>(),
            NOW,
        );
        let quota = Fault::Status(
            status,
            r#"{"code":"not_enough_credits","message":"Not enough credits"}"#.into(),
        );
        w.fake
            .state()
            .script
            .extend([Fault::Pass, Fault::Pass, quota]);
        let s = w.json(NOW, &["drain-eod", "--concurrency", "1"]);
        assert_eq!(s["sent"], 2, "{s}");
        assert_eq!(
            w.fake.state().received.len(),
            3,
            "no send after the quota answer"
        );
        assert_eq!(w.ready(&w.queue), 3);
    }
}

#[test]
fn quota_answer_beyond_reported_credits_stops_sending() {
    let w = World::new("quota-script", 300.0);
    w.publish(
        &(0..4)
            .map(|i| job(&format!("m{i}@example.org"), 3, "2026-11-28T10:00:00-03:00"))
            .collect::<Vec<_>>(),
        NOW,
    );
    w.fake.state().script.extend([Fault::Status(
        400,
        r#"{"code":"not_enough_credits","message":"quota"}"#.into(),
    )]);
    let s = w.json(NOW, &["drain-eod", "--concurrency", "1"]);
    assert_eq!(s["sent"], 0);
    assert!(
        s["stopped"].as_str().is_some_and(|r| r.contains("credits")),
        "{s}"
    );
    assert_eq!(w.ready(&w.queue), 4);
    assert_eq!(
        w.fake.state().received.len(),
        1,
        "no send after the quota answer"
    );
}

#[test]
fn transient_failures_go_to_retry_then_park_after_max_attempts() {
    let w = World::new("retry", 300.0);
    w.publish(
        &[
            job("a@example.org", 3, "2026-11-28T10:00:00-03:00"),
            job("b@example.org", 3, "2026-11-29T10:00:00-03:00"),
        ],
        NOW,
    );
    w.fake
        .state()
        .script
        .extend([Fault::Status(500, String::new()), Fault::Drop]);
    let s = w.json(NOW, &["drain-eod", "--concurrency", "1"]);
    assert_eq!(
        (
            s["sent"].as_u64(),
            s["failed"].as_u64(),
            s["retried"].as_u64()
        ),
        (Some(0), Some(2), Some(2))
    );
    assert_eq!(w.ready(&w.queue), 0);
    let retried = w.take_all(&format!("{}.retry.60s", w.queue));
    assert_eq!(
        retried.len(),
        2,
        "first attempts wait in the 60 s retry queue"
    );
    assert_eq!(
        retried[0]
            .0
            .inner()
            .get("x-acaso-attempts")
            .map(|v| format!("{v:?}")),
        Some("LongUInt(1)".into())
    );

    // A mail at its last attempt is parked instead of retried.
    let w2 = World::new("retry-park", 300.0);
    w2.publish(&[job("c@example.org", 3, "2026-11-28T10:00:00-03:00")], NOW);
    w2.fake.state().script.push_back(Fault::Drop);
    w2.json(NOW, &["drain-eod", "--max-attempts", "1"]);
    let parked = w2.take_all(&format!("{}.dead", w2.queue));
    assert_eq!(parked.len(), 1);
    assert_eq!(
        header_str(&parked[0].0, "x-acaso-reason").as_deref(),
        Some("retries_exhausted")
    );
}

#[test]
fn brevo_down_stops_the_run_with_exit_4_and_loses_nothing() {
    let w = World::new("brevo-down", 300.0);
    w.publish(
        &(0..8)
            .map(|i| job(&format!("m{i}@example.org"), 3, "2026-11-28T10:00:00-03:00"))
            .collect::<Vec<_>>(),
        NOW,
    );
    w.fake
        .state()
        .script
        .extend((0..8).map(|_| Fault::Status(503, "<html>down</html>".into())));
    let out = w
        .cmd()
        .args(["--now", NOW, "--json", "drain-eod", "--concurrency", "1"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = stdout_json(&out);
    assert_eq!(s["failed"], 5, "stops after 5 failures in a row: {s}");
    let retrying = w.ready(&format!("{}.retry.60s", w.queue));
    assert_eq!(retrying + w.ready(&w.queue), 8);
}

/// Publishes one mail, starts a drain-eod, and kills it with SIGKILL while Brevo, which
/// has accepted the mail, is still answering.
fn kill_drain_mid_send(w: &World) {
    w.publish(
        &[job("once@example.org", 3, "2026-11-28T10:00:00-03:00")],
        NOW,
    );
    w.fake.state().latency = Duration::from_secs(3);
    let mut child = w
        .std_cmd()
        .args(["--now", NOW, "-q", "drain-eod"])
        .spawn()
        .expect("spawn");
    assert!(
        w.fake.wait_for_sends(1, Duration::from_secs(30)),
        "the drain never reached Brevo"
    );
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    w.fake.state().latency = Duration::ZERO;
    assert_eq!(w.fake.accepted().len(), 1);
}

#[test]
fn a_drain_killed_mid_send_never_sends_twice() {
    let w = World::new("sigkill", 300.0);
    kill_drain_mid_send(&w);
    // The broker gives the unacked mail back; the next drain must not send it again.
    let s = w.json(NOW, &["drain-eod"]);
    assert_eq!(
        (s["sent"].as_u64(), s["already_sent"].as_u64()),
        (Some(0), Some(1)),
        "{s}"
    );
    assert_eq!(w.fake.accepted().len(), 1, "Brevo received the mail twice");
    assert_eq!(w.ready(&w.queue), 0);
    // And a third run finds nothing to do.
    let out = w
        .cmd()
        .args(["--now", NOW, "--json", "drain-eod"])
        .output()
        .expect("run");
    assert_eq!(stdout_json(&out)["already_sent"], 0);
}

#[test]
fn overlapping_runs_wait_for_the_lock_then_give_up() {
    let w = World::new("lock", 300.0);
    w.publish(&[job("a@example.org", 3, "2026-11-28T10:00:00-03:00")], NOW);
    w.fake.state().latency = Duration::from_secs(4);
    let mut first = w
        .std_cmd()
        .args(["--now", NOW, "-q", "drain-eod"])
        .spawn()
        .expect("spawn");
    assert!(w.fake.wait_for_sends(1, Duration::from_secs(30)));
    let out = w
        .cmd()
        .args(["--now", NOW, "--lock-wait", "1", "drain-hourly"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another acaso-mail run"));
    assert!(first.wait().expect("wait").success());
    assert_eq!(w.fake.accepted().len(), 1);
}

#[test]
fn sigterm_finishes_in_flight_and_leaves_the_rest_queued() {
    let w = World::new("sigterm", 300.0);
    w.publish(
        &(0..5)
            .map(|i| job(&format!("m{i}@example.org"), 3, "2026-11-28T10:00:00-03:00"))
            .collect::<Vec<_>>(),
        NOW,
    );
    w.fake.state().latency = Duration::from_secs(2);
    let child = w
        .std_cmd()
        .args(["--now", NOW, "--json", "drain-eod", "--concurrency", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    assert!(w.fake.wait_for_sends(1, Duration::from_secs(30)));
    signal(&child, "TERM");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = stdout_json(&out);
    assert_eq!(s["sent"], 1, "the in-flight send was finished: {s}");
    assert_eq!(w.fake.accepted().len(), 1);
    assert_eq!(w.ready(&w.queue), 4);
}

#[test]
fn rabbitmq_unreachable_is_exit_4_without_the_password() {
    let w = World::new("no-broker", 300.0);
    let out = w
        .cmd()
        .env(
            "QUEUE_SERVICE_URL",
            "amqp://guest:PASSWORD-XYZZY@127.0.0.1:1/%2f",
        )
        .args(["publish", "-n", "1"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rabbitmq-server") && !err.contains("XYZZY"),
        "{err}"
    );
}

#[test]
fn secrets_never_reach_any_output() {
    let w = World::new("secrets", 300.0);
    let key = "xkeysib-SECRETKEY-4242";
    let pass = "PW-SECRET-7777";
    let runs: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["drain-eod"],
            format!("amqp://guest:{pass}@127.0.0.1:1/%2f"),
        ),
        (vec!["--json", "credits"], AMQP.to_string()),
        (vec!["--amqp-url", "http://nope", "stats"], AMQP.to_string()),
        (
            vec!["--tz", "Nowhere/Place", "credits"],
            format!("amqp://guest:{pass}@127.0.0.1:5672/%2f"),
        ),
        (
            vec!["--help"],
            format!("amqp://guest:{pass}@127.0.0.1:5672/%2f"),
        ),
        (
            vec!["drain-hourly", "--help"],
            format!("amqp://guest:{pass}@127.0.0.1:5672/%2f"),
        ),
        (
            vec!["--amqp-url", "amqp://u:PW-SECRET-7777@", "stats"],
            AMQP.to_string(),
        ),
    ];
    for (args, url) in runs {
        let out = w
            .cmd()
            .env("SENDINBLUE_API_KEY", key)
            .env("QUEUE_SERVICE_URL", &url)
            .env("RUST_BACKTRACE", "1")
            .args(&args)
            .output()
            .expect("run");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains("SECRETKEY") && !all.contains(pass),
            "{args:?} leaked: {all}"
        );
    }
}

#[test]
fn broker_lost_during_publish_reports_what_was_confirmed_and_fails() {
    let w = World::new("lost-publish", 300.0);
    let proxy = proxy::Proxy::start();
    // Declare the queues directly first, so that the only thing cut is the publish.
    w.declare_queues();
    let child = w
        .std_cmd()
        .env("QUEUE_SERVICE_URL", proxy.url())
        .args(["publish", "-n", "2000000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until messages flow, then cut the connection.
    w.wait_until_ready(1000);
    proxy.cut();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("confirmed message(s)"), "{err}");
    // Everything it claims as confirmed is really queued.
    let confirmed: u64 = err
        .split("after ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a count of confirmed messages");
    assert!(
        u64::from(w.ready(&w.queue)) >= confirmed,
        "{confirmed} confirmed but fewer queued"
    );
}

#[test]
fn broker_lost_during_a_drain_acks_nothing_unsent_and_sends_nothing_twice() {
    let w = World::new("lost-drain", 300.0);
    w.publish(
        &(0..4)
            .map(|i| job(&format!("m{i}@example.org"), 3, "2026-11-28T10:00:00-03:00"))
            .collect::<Vec<_>>(),
        NOW,
    );
    let proxy = proxy::Proxy::start();
    w.fake.state().latency = Duration::from_secs(2);
    let child = w
        .std_cmd()
        .env("QUEUE_SERVICE_URL", proxy.url())
        .args(["--now", NOW, "--json", "drain-eod", "--concurrency", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    assert!(w.fake.wait_for_sends(1, Duration::from_secs(30)));
    proxy.cut();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        w.fake.accepted().len(),
        1,
        "Brevo accepted the mail that was in flight"
    );
    // All four are back in the queue: the one Brevo accepted could not be acked.
    let mut n = 0;
    for _ in 0..50 {
        n = w.ready(&w.queue);
        if n == 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(n, 4);
    w.fake.state().latency = Duration::ZERO;
    let s = w.json(NOW, &["drain-eod"]);
    assert_eq!(
        (s["sent"].as_u64(), s["already_sent"].as_u64()),
        (Some(3), Some(1)),
        "{s}"
    );
    let mut sent = recipients(&w.fake);
    sent.sort();
    assert_eq!(
        sent,
        [
            "m0@example.org",
            "m1@example.org",
            "m2@example.org",
            "m3@example.org"
        ]
    );
}

#[test]
fn sigint_during_publish_reports_what_was_confirmed_and_exits_130() {
    let w = World::new("sigint-publish", 300.0);
    w.declare_queues();
    let child = w
        .std_cmd()
        .args(["publish", "-n", "5000000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    w.wait_until_ready(500);
    signal(&child, "INT");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let confirmed: u32 = err
        .split("interrupted: ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no confirmed count in {err:?}"));
    // Every confirmed message is queued, and nothing beyond what was published.
    assert_eq!(w.ready(&w.queue), confirmed);
}

#[test]
fn hostile_publish_input_is_refused_cleanly() {
    let w = World::new("hostile", 300.0);
    // A 10 MB line.
    let big = format!(
        "{{\"template_id\": 1, \"to\": [{{\"email\": \"a@example.org\"}}], \"params\": {{\"x\": \"{}\"}}}}\n",
        "y".repeat(10 * 1024 * 1024)
    );
    let out = w
        .cmd()
        .args(["publish", "--file", "-"])
        .write_stdin(big)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
    // Deep nesting, wrong types, invalid UTF-8.
    for bad in [
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        br#"{"template_id": "seven", "to": "a@example.org"}"#.to_vec(),
        br#"{"template": 9, "mail_params": [], "recipient": 3}"#.to_vec(),
        vec![0xc3, 0x28, b'\n'],
    ] {
        let out = w
            .cmd()
            .args(["publish", "--file", "-"])
            .write_stdin(bad)
            .output()
            .expect("run");
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A count beyond the cap is a usage error, not an attempt.
    let out = w
        .cmd()
        .args(["publish", "-n", "99999999999"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    // Validation comes before any I/O: the queue was not even declared. Declare it and
    // check that it is empty.
    w.declare_queues();
    assert_eq!(w.ready(&w.queue), 0, "something was published");
}

#[test]
fn a_killed_send_found_after_the_idempotency_window_is_parked_not_resent() {
    let w = World::new("sigkill-late", 300.0);
    kill_drain_mid_send(&w);
    // The next drain runs an hour later: Brevo would no longer refuse the key.
    let s = w.json("2026-11-27T13:00:00-03:00", &["drain-eod"]);
    assert_eq!(
        (s["sent"].as_u64(), s["parked"].as_u64()),
        (Some(0), Some(1)),
        "{s}"
    );
    assert_eq!(w.fake.accepted().len(), 1, "sent twice");
    let parked = w.take_all(&format!("{}.dead", w.queue));
    assert_eq!(
        header_str(&parked[0].0, "x-acaso-reason").as_deref(),
        Some("uncertain_send")
    );
    // Not lost either: it waits in the parking queue, not in the main one.
    assert_eq!(w.ready(&w.queue), 0);
}
