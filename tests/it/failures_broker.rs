//! RabbitMQ unreachable or lost: exit 4, nothing acked that was not sent, nothing sent
//! twice.

use std::time::Duration;

use crate::it::publish::NOW;
use crate::support::*;

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
fn broker_lost_during_publish_reports_what_was_confirmed_and_fails() {
    let w = World::new("lost-publish", 300.0);
    let proxy = proxy::Proxy::start();
    // Declare the queues directly first, so that the only thing cut is the publish.
    w.declare_queues();
    let mut child = spawn(
        w.std_cmd()
            .env("QUEUE_SERVICE_URL", proxy.url())
            .args(["publish", "-n", "2000000"]),
    );
    // Wait until messages flow, then cut the connection.
    w.wait_until_ready(1000);
    assert!(child.is_running(), "the publish ended before the cut");
    proxy.cut();
    let out = child.wait_with_output();
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
    let mut child = spawn(w.std_cmd().env("QUEUE_SERVICE_URL", proxy.url()).args([
        "--now",
        NOW,
        "--json",
        "drain-eod",
        "--concurrency",
        "1",
    ]));
    w.fake.wait_for_sends(1, Duration::from_secs(30));
    // The cut lands mid-send: Brevo has not answered the first mail yet.
    assert_eq!(w.fake.in_flight(), 1, "the send was already answered");
    proxy.cut();
    let out = child.wait_with_output();
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
    w.wait_until_ready_exactly(&w.queue, 4);
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
