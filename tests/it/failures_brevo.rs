//! Brevo failing: rejected mail parked, a bad key, the quota running out, transient
//! failures retried, Brevo down. Nothing lost, nothing sent twice.

use crate::it::publish::NOW;
use crate::support::*;

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
    let out = w
        .cmd()
        .args(["--now", NOW, "--json", "drain-eod", "--concurrency", "1"])
        .output()
        .expect("run");
    // No send went through: the run says so with exit 4, and still reports its work.
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let s = stdout_json(&out);
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

    // A mail at its last attempt is parked instead of retried; a dropped connection
    // may hide an acceptance, so it waits for `dead-letters recheck` (Brevo's log).
    let w2 = World::new("retry-park", 300.0);
    w2.publish(&[job("c@example.org", 3, "2026-11-28T10:00:00-03:00")], NOW);
    w2.fake.state().script.push_back(Fault::Drop);
    let out = w2
        .cmd()
        .args(["--now", NOW, "drain-eod", "--max-attempts", "1"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(4), "its only send failed: {out:?}");
    let parked = w2.take_all(&format!("{}.dead", w2.queue));
    assert_eq!(parked.len(), 1);
    assert_eq!(
        header_str(&parked[0].0, "x-acaso-reason").as_deref(),
        Some("uncertain_send")
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
    w.fake.state().script.extend((0..8).map(|i| {
        let down = Fault::Status(503, "<html>down</html>".into());
        // The run stops after five; the other three answer a run that would not.
        if i < 5 { down } else { down.optional() }
    }));
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

#[test]
fn a_mail_with_no_params_or_empty_params_is_sent_without_them() {
    // Brevo answers 400 "params is blank" to `"params": {}`: a mail with no parameters
    // must be sent without the field, not parked as rejected.
    let w = World::new("no-params", 300.0);
    let none = serde_json::json!({"template_id": 3, "to": [{"email": "a@example.org"}],
                                  "deadline": "2026-11-28T10:00:00-03:00"});
    let empty = serde_json::json!({"template_id": 3, "to": [{"email": "b@example.org"}],
                                   "params": {}, "deadline": "2026-11-28T10:00:00-03:00"});
    w.publish(&[none, empty], NOW);
    let s = w.json(NOW, &["drain-eod", "--concurrency", "1"]);
    assert_eq!(counts(&s, &["sent", "parked"]), [Some(2), Some(0)], "{s}");
    for m in w.fake.accepted() {
        assert!(m.get("params").is_none(), "{m}");
    }
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 0);
}

/// Five mails, and Brevo answering the first send with `status` and `body`: the run
/// must stop with `exit`, park nothing, and leave all five queued.
fn a_refusal_of_every_send_parks_nothing(name: &str, status: u16, body: &str, exit: i32) {
    let w = World::new(name, 300.0);
    w.publish(
        &(0..5)
            .map(|i| job(&format!("m{i}@example.org"), 3, "2026-11-28T10:00:00-03:00"))
            .collect::<Vec<_>>(),
        NOW,
    );
    w.fake
        .state()
        .script
        .push_back(Fault::Status(status, body.into()));
    let out = w
        .cmd()
        .args(["--now", NOW, "drain-eod", "--concurrency", "1"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(exit), "{status} {body}: {err}");
    assert!(err.contains(&status.to_string()), "{err}");
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        let said = v["message"].as_str().unwrap_or_default();
        assert!(err.contains(said), "Brevo's message is not shown: {err}");
    }
    assert_eq!(
        w.fake.state().received.len(),
        1,
        "no send after the refusal"
    );
    assert!(w.fake.accepted().is_empty());
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 0, "{status} {body}");
    assert_eq!(w.ready(&w.queue), 5);
}

#[test]
fn an_account_level_refusal_stops_the_run_with_exit_5_and_parks_nothing() {
    for (i, (status, code)) in [
        (400, "account_under_validation"),
        (402, "account_under_validation"),
        (400, "unauthorized"),
        (403, "permission_denied"),
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(r#"{{"code":"{code}","message":"said by Brevo {i}"}}"#);
        a_refusal_of_every_send_parks_nothing(&format!("acct-{i}"), status, &body, 5);
    }
}

#[test]
fn a_404_from_the_send_endpoint_stops_the_run_with_exit_4_and_parks_nothing() {
    let body = r#"{"code":"not_found","message":"Invalid route"}"#;
    a_refusal_of_every_send_parks_nothing("send-404", 404, body, 4);
    a_refusal_of_every_send_parks_nothing("send-404-html", 404, "<html>Not Found</html>", 4);
}
