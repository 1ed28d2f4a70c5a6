//! A census under faults, on a private RabbitMQ node: a drain killed with SIGKILL while
//! Brevo holds sends it has accepted, time moved on (acaso-mail's `--now` and the fake
//! Brevo's clock together), then clean drains. Every mail must end sent exactly once,
//! or in exactly one queue (see `support::census`). `scripts/soak` repeats this, with
//! more kinds of faults, many times.

use std::time::Duration;

use crate::it::publish::NOW;
use crate::support::node::{NodeOptions, PrivateNode};
use crate::support::*;

const MAILS: usize = 40;

/// `NOW` plus `minutes`, as (RFC 3339 for `--now`, Unix seconds for the fake).
fn at(minutes: i64) -> (String, i64) {
    let t = chrono::DateTime::parse_from_rfc3339(NOW).expect("NOW")
        + chrono::Duration::minutes(minutes);
    (t.to_rfc3339(), t.timestamp())
}

/// A world on `node` with [`MAILS`] mails queued (`m0@example.org`...), due in 3 days.
fn world_with_mails(node: &PrivateNode, name: &str) -> World {
    let w = World::on(&node.amqp_url(), name, 1_000_000.0);
    w.fake.set_now(at(0).1);
    let jobs: Vec<_> = (0..MAILS)
        .map(|n| job(&census::mail_to(n), 3, "2026-11-30T10:00:00-03:00"))
        .collect();
    w.publish(&jobs, NOW);
    w
}

/// Starts a drain-eod at `NOW` and kills it (SIGKILL) once Brevo has accepted 10
/// sends and holds more, accepted but unanswered.
fn kill_a_drain_mid_run(w: &World) {
    w.fake.state().latency = Duration::from_millis(400);
    let child = spawn(
        w.std_cmd()
            .args(["--now", NOW, "-q", "drain-eod", "--concurrency", "4"]),
    );
    w.fake.wait_for_sends(10, Duration::from_secs(60));
    assert!(w.fake.in_flight() >= 1, "no send in flight at the kill");
    child.kill_mid_run();
    w.fake.state().latency = Duration::ZERO;
    let sent = w.fake.accepted().len();
    assert!((10..MAILS).contains(&sent), "{sent} accepted at the kill");
}

/// A clean drain-eod `minutes` after `NOW`, after moving the fake's clock and letting
/// the retry queues' delays pass.
fn clean_drain(w: &World, minutes: i64) -> serde_json::Value {
    let (now, unix) = at(minutes);
    w.fake.set_now(unix);
    census::release_retries(&w.amqp, &w.queue, 3600);
    w.json(&now, &["drain-eod"])
}

fn assert_exact(w: &World, what: &str) {
    let c = census::take(&w.amqp, &w.queue, &w.fake, MAILS);
    assert!(c.exact(), "{what}: the census is not exact:\n{}", c.table());
    assert_eq!(
        c.sent,
        MAILS,
        "{what}: not every mail was sent:\n{}",
        c.table()
    );
}

/// Killed mid-run, taken again within Brevo's idempotency window (Brevo refuses the
/// repeats), then time passes: every mail sent once.
#[test]
fn census_after_a_drain_killed_mid_run_and_recovered_within_the_window() {
    let node = PrivateNode::start(NodeOptions::default());
    let w = world_with_mails(&node, "census-within");
    kill_a_drain_mid_run(&w);
    clean_drain(&w, 5);
    clean_drain(&w, 120);
    assert_exact(&w, "recovered 5 min after the kill");
}

/// Killed mid-run, then the next drain comes only after Brevo's 30-minute idempotency
/// window (the drain schedule missed, or the host was down): the sends the killed run
/// left unanswered must neither go out twice nor stay queued after Brevo took them.
#[test]
fn census_after_a_drain_killed_mid_run_then_time_past_the_window() {
    let node = PrivateNode::start(NodeOptions::default());
    let w = world_with_mails(&node, "census-past");
    kill_a_drain_mid_run(&w);
    clean_drain(&w, 31);
    clean_drain(&w, 120);
    assert_exact(&w, "taken again 31 min after the kill");
}
