//! Bad mail on the queue and bad publish input: parked or refused, never blocking the
//! good mail, nothing lost.

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
    // Both go out in one burst of concurrent sends, so their arrival order at Brevo is
    // not the point here (the ordering tests run with --concurrency 1).
    let mut sent = recipients(&w.fake);
    sent.sort();
    assert_eq!(sent, ["ok1@example.org", "ok2@example.org"]);
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
fn a_poison_date_at_the_head_of_the_queue_is_parked_and_the_mail_behind_is_sent() {
    // Dates at chrono's edges used to panic every command that read them (exit 101),
    // run after run, and nothing behind them was ever sent.
    let w = World::new("poison", 300.0);
    w.publish(
        &[
            job("ok1@example.org", 3, "2026-11-28T10:00:00-03:00"),
            job("ok2@example.org", 3, "2026-11-29T10:00:00-03:00"),
        ],
        NOW,
    );
    let legacy = br#"{"mail_params":{"mentor_name":"A","mentoring_datetime":"-262143-01-01T00:00:00"},"recipient":{"name":"A","email":"a@example.org"},"template":9}"#;
    let generic = br#"{"template_id":3,"to":[{"email":"b@example.org"}],"deadline":"+262142-12-31T23:59:59"}"#;
    raw_publish(&w.queue, &[(legacy.to_vec(), 9), (generic.to_vec(), 9)]);
    for args in [
        &["peek"][..],
        &["--tz", "Asia/Tokyo", "stats"],
        &["drain-eod", "--dry-run"],
        &["--tz", "Asia/Tokyo", "reprioritize", "--dry-run"],
    ] {
        let out = w
            .cmd()
            .args(["--now", NOW])
            .args(args)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    }
    let s = w.json(NOW, &["--tz", "Asia/Tokyo", "drain-eod"]);
    assert_eq!(
        (s["sent"].as_u64(), s["parked"].as_u64()),
        (Some(2), Some(2)),
        "{s}"
    );
    let mut sent = recipients(&w.fake);
    sent.sort();
    assert_eq!(sent, ["ok1@example.org", "ok2@example.org"]);
    let parked = w.take_all(&format!("{}.dead", w.queue));
    let reasons: Vec<String> = parked
        .iter()
        .filter_map(|(h, _)| header_str(h, "x-acaso-reason"))
        .collect();
    assert_eq!(reasons, ["malformed", "malformed"]);
}

#[test]
fn publish_refuses_a_poison_date_naming_its_line() {
    let w = World::new("poison-publish", 300.0);
    let input = format!(
        "{}\n{}\n",
        job("a@example.org", 1, "2026-11-28T10:00:00-03:00"),
        r#"{"template_id":3,"to":[{"email":"b@example.org"}],"deadline":"+262142-12-31T23:59:59"}"#,
    );
    let out = w
        .cmd()
        .args(["--now", NOW, "--tz", "Asia/Tokyo", "publish", "--file", "-"])
        .write_stdin(input)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("out of range"),
        "{err}"
    );
}
