//! RabbitMQ unreachable or lost: exit 4, nothing acked that was not sent, nothing sent
//! twice.

use std::time::Duration;

use crate::it::publish::NOW;
// Reading the head of a queue is a bounded consume; taking mail is basic.get.
use crate::support::proxy::Method::{BasicAck, BasicConsume, BasicGet, BasicPublish};
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

// A broker lost during any subcommand ends with exit 4 and one line on stderr saying
// so. Each test below sends the command through a proxy that drops the connection (and
// refuses new ones) at a known AMQP frame, so the loss lands while the command is
// talking to the broker, never before or after. `credits` has no test: it reads Brevo
// only and never connects to RabbitMQ.

/// Runs `args` against this world through a proxy that cuts the connection at the
/// `nth` frame of `method`; checks that the cut happened and the run ended with exit 4
/// and the documented one-line error naming RabbitMQ (or "the broker"). Returns the output.
fn run_cut_at(w: &World, method: proxy::Method, nth: u32, args: &[&str]) -> std::process::Output {
    let proxy = proxy::Proxy::cut_at(method, nth);
    let out = w
        .cmd()
        .env("QUEUE_SERVICE_URL", proxy.url())
        .args(["--now", NOW])
        .args(args)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        proxy.triggered(),
        "{args:?} ended (exit {:?}) before sending frame #{nth} of {method:?}: the cut \
         never happened. stderr: {err}",
        out.status.code()
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "{args:?} with the broker lost at {method:?} #{nth}: stderr: {err:?} stdout: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.starts_with("acaso-mail: error: ") && err.trim_end().lines().count() == 1,
        "{args:?}: not one `acaso-mail: error:` line: {err:?}"
    );
    let lower = err.to_lowercase();
    assert!(
        lower.contains("rabbitmq") || lower.contains("broker"),
        "{args:?}: the error does not say that RabbitMQ (the broker) failed: {err:?}"
    );
    out
}

/// Five mails due tomorrow, through acaso-mail.
fn five_mails(w: &World) {
    w.publish(
        &(0..5)
            .map(|i| job(&format!("m{i}@example.org"), 3, "2026-11-28T10:00:00-03:00"))
            .collect::<Vec<_>>(),
        NOW,
    );
}

/// Three parked mails in the world's parking queue.
fn three_parked(w: &World) {
    w.declare_queues();
    raw_publish(
        &format!("{}.dead", w.queue),
        &[
            (
                br#"{"template_id":3,"to":[{"email":"p1@example.org"}]}"#.to_vec(),
                0,
            ),
            (
                br#"{"template_id":3,"to":[{"email":"p2@example.org"}]}"#.to_vec(),
                0,
            ),
            (
                br#"{"template_id":3,"to":[{"email":"p3@example.org"}]}"#.to_vec(),
                0,
            ),
        ],
    );
}

#[test]
fn broker_lost_mid_publish_is_exit_4() {
    let w = World::new("cut-publish", 300.0);
    w.declare_queues();
    run_cut_at(&w, BasicPublish, 1000, &["publish", "-n", "5000"]);
}

#[test]
fn broker_lost_mid_publish_from_a_file_is_exit_4() {
    let w = World::new("cut-publish-file", 300.0);
    w.declare_queues();
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("jobs.jsonl");
    let lines: String = (0..50)
        .map(|i| {
            format!(
                "{}\n",
                job(&format!("f{i}@example.org"), 3, "2026-11-28T10:00:00-03:00")
            )
        })
        .collect();
    std::fs::write(&file, lines).expect("write jobs");
    let path = file.display().to_string();
    run_cut_at(&w, BasicPublish, 20, &["publish", "--file", &path]);
}

#[test]
fn broker_lost_mid_drain_hourly_is_exit_4_and_loses_nothing() {
    let w = World::new("cut-hourly", 300.0);
    five_mails(&w);
    // Cut when the drain takes its second mail: the first one was sent. (Get #1 is the
    // screen of the queue's head, on a connection of its own, before the drain.)
    run_cut_at(
        &w,
        BasicGet,
        3,
        &["drain-hourly", "--limit", "5", "--concurrency", "1"],
    );
    let sent = u32::try_from(w.fake.accepted().len()).expect("count");
    assert!(sent >= 1, "the drain sent nothing before the cut");
    // Every mail not sent is back in the queue (a sent one may be too: its ack may have
    // been lost; the journal covers it).
    let mut n = 0;
    let back = wait_for(Duration::from_secs(30), || {
        n = w.ready(&w.queue);
        n + sent >= 5
    });
    assert!(back, "{n} queued + {sent} sent < 5: mail lost");
}

#[test]
fn broker_lost_mid_drain_hourly_dry_run_is_exit_4() {
    let w = World::new("cut-hourly-dry", 300.0);
    five_mails(&w);
    run_cut_at(&w, BasicConsume, 1, &["drain-hourly", "--dry-run"]);
    assert!(w.fake.state().received.is_empty(), "a dry run sent mail");
}

#[test]
fn broker_lost_mid_drain_eod_is_exit_4_and_loses_nothing() {
    let w = World::new("cut-eod", 300.0);
    five_mails(&w);
    // Cut when the drain acks its first sent mail: the ack never reaches the broker.
    run_cut_at(&w, BasicAck, 1, &["drain-eod", "--concurrency", "1"]);
    assert_eq!(
        w.fake.accepted().len(),
        1,
        "sends after the broker was lost"
    );
    // The mail whose ack was lost comes back with the rest; the journal knows it.
    w.wait_until_ready_exactly(&w.queue, 5);
    let s = w.json(NOW, &["drain-eod"]);
    assert_eq!(
        (s["sent"].as_u64(), s["already_sent"].as_u64()),
        (Some(4), Some(1)),
        "{s}"
    );
}

#[test]
fn broker_lost_mid_peek_is_exit_4() {
    let w = World::new("cut-peek", 300.0);
    five_mails(&w);
    run_cut_at(&w, BasicConsume, 1, &["peek", "-n", "5"]);
    w.wait_until_ready_exactly(&w.queue, 5);
}

#[test]
fn broker_lost_mid_stats_is_exit_4() {
    let w = World::new("cut-stats", 300.0);
    five_mails(&w);
    run_cut_at(&w, BasicConsume, 1, &["stats"]);
    w.wait_until_ready_exactly(&w.queue, 5);
}

#[test]
fn broker_lost_mid_reprioritize_is_exit_4_and_changes_nothing() {
    let w = World::new("cut-reprio", 300.0);
    five_mails(&w);
    // Cut while the batch of the five goes out to the staging queue: nothing was acked
    // yet.
    run_cut_at(&w, BasicPublish, 1, &["reprioritize"]);
    w.wait_until_ready_exactly(&w.queue, 5);
}

#[test]
fn broker_lost_mid_reprioritize_dry_run_is_exit_4() {
    let w = World::new("cut-reprio-dry", 300.0);
    five_mails(&w);
    run_cut_at(&w, BasicConsume, 1, &["reprioritize", "--dry-run"]);
    w.wait_until_ready_exactly(&w.queue, 5);
}

#[test]
fn broker_lost_mid_dead_letters_list_is_exit_4() {
    let w = World::new("cut-dead-list", 300.0);
    three_parked(&w);
    run_cut_at(&w, BasicConsume, 1, &["dead-letters"]);
    w.wait_until_ready_exactly(&format!("{}.dead", w.queue), 3);
}

#[test]
fn broker_lost_mid_dead_letters_replay_is_exit_4_and_loses_nothing() {
    let w = World::new("cut-dead-replay", 300.0);
    three_parked(&w);
    // Cut when it takes the second parked mail: the first was replayed and acked.
    run_cut_at(
        &w,
        BasicGet,
        2,
        &["dead-letters", "replay", "--index", "1,2,3"],
    );
    w.wait_until_ready_exactly(&format!("{}.dead", w.queue), 2);
    assert_eq!(w.ready(&w.queue), 1, "the first parked mail was replayed");
}

#[test]
fn broker_lost_mid_dead_letters_purge_is_exit_4() {
    let w = World::new("cut-dead-purge", 300.0);
    three_parked(&w);
    run_cut_at(&w, BasicGet, 2, &["dead-letters", "purge", "--all"]);
    w.wait_until_ready_exactly(&format!("{}.dead", w.queue), 2);
}

#[test]
fn broker_lost_between_a_parking_copy_and_the_ack_parks_the_mail_once() {
    // The drain parks an expired mail: its copy is confirmed, then the connection is
    // cut as the ack goes out. The original returns to the main queue; the next drain
    // knows (the journal) that its copy is parked and drops it.
    let w = World::new("park-cut", 300.0);
    let (_, parking) = one_expired_mail(&w);
    run_cut_at(&w, proxy::Method::BasicAck, 1, &["drain-eod"]);
    w.wait_until_ready_exactly(&w.queue, 1);
    assert_eq!(
        w.ready(&parking),
        1,
        "the copy was not confirmed before the ack"
    );
    crate::it::failures_interrupts::drain_parks_once(&w, &parking, 0, 1);
}

#[test]
fn an_original_whose_copy_is_parked_is_dropped_by_the_drain_and_left_to_it_by_reprioritize() {
    // What a run killed between the parking copy's confirm and the original's ack
    // leaves: the copy parked, the original queued, the journal saying it parked it.
    let w = World::new("park-left", 300.0);
    let (body, parking) = one_expired_mail(&w);
    raw_publish(&parking, &[(body.clone(), 5)]);
    let journal = acaso_mail::state::Store::open(w.state.path()).expect("journal");
    let id = acaso_mail::mailbox::identity(None, &body);
    journal
        .record_parking(
            [id.as_str()],
            chrono::DateTime::parse_from_rfc3339(NOW)
                .expect("NOW")
                .to_utc(),
        )
        .expect("journal");
    drop(journal);
    // reprioritize does not park it a second time: it goes back to the head of the queue.
    let r = w.json(NOW, &["reprioritize"]);
    assert_eq!(
        counts(&r, &["expired", "requeued"]),
        [Some(0), Some(1)],
        "{r}"
    );
    assert_eq!((w.ready(&w.queue), w.ready(&parking)), (1, 1));
    // The drain finds the copy in the parking queue and drops the original.
    crate::it::failures_interrupts::drain_parks_once(&w, &parking, 0, 1);
}

#[test]
fn a_replayed_mail_parked_again_under_a_cut_ack_is_parked_once() {
    let w = World::new("park-replay-cut", 300.0);
    let (_, parking) = one_expired_mail(&w);
    crate::it::failures_interrupts::drain_parks_once(&w, &parking, 1, 0);
    crate::it::failures_interrupts::dead_letters_all(&w, "replay");
    assert_eq!((w.ready(&w.queue), w.ready(&parking)), (1, 0));
    // Parked again; the connection is cut as the original's ack goes out.
    run_cut_at(&w, proxy::Method::BasicAck, 1, &["drain-eod"]);
    w.wait_until_ready_exactly(&w.queue, 1);
    assert_eq!(w.ready(&parking), 1);
    crate::it::failures_interrupts::drain_parks_once(&w, &parking, 0, 1);
    let r = w.json(NOW, &["reprioritize"]);
    assert_eq!((w.ready(&w.queue), w.ready(&parking)), (0, 1), "{r}");
}
