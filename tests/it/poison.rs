//! A message whose headers nest 20,000 arrays deep (it fits a 128 KiB frame), published
//! over raw AMQP at the head of the queue: no command aborts, the message is parked as
//! `malformed` with its body, and the mails behind it are sent.

use crate::it::publish::NOW;
use crate::support::*;

const BEHIND: usize = 20;

fn poisoned(name: &str) -> World {
    poisoned_at(name, 9)
}

/// The 20 mails (priority 2 or more), and the poison with `priority`.
fn poisoned_at(name: &str, priority: u8) -> World {
    let w = World::new(name, 300.0);
    let jobs: Vec<_> = (0..BEHIND)
        .map(|i| job(&format!("m{i}@example.org"), 3, "2026-11-28T10:00:00-03:00"))
        .collect();
    w.publish(&jobs, NOW);
    let body = serde_json::to_vec(&job("poison@example.org", 3, "2026-11-28T10:00:00-03:00"))
        .expect("json");
    let props = raw_amqp::nested_properties(20_000, priority, "poison-1");
    raw_amqp::publish(5672, &w.queue, &props, &body);
    assert_eq!(w.ready(&w.queue), BEHIND as u32 + 1);
    w
}

/// Runs a command; it must end by itself, not abort.
fn runs(w: &World, args: &[&str]) -> std::process::Output {
    let out = w
        .cmd()
        .args(["--now", NOW, "--json"])
        .args(args)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some() && !err.contains("overflow"),
        "{args:?} aborted: {:?} {err}",
        out.status
    );
    out
}

fn assert_parked_malformed(w: &World) {
    let parked = w.take_all(&format!("{}.dead", w.queue));
    assert_eq!(parked.len(), 1, "one parked message");
    assert_eq!(
        header_str(&parked[0].0, "x-acaso-reason").as_deref(),
        Some("malformed")
    );
    let mail: serde_json::Value = serde_json::from_slice(&parked[0].1).expect("the body, intact");
    assert_eq!(mail["to"][0]["email"], "poison@example.org");
}

#[test]
fn every_command_gets_past_headers_nested_20000_deep() {
    for (i, args) in [
        &["peek"][..],
        &["stats"],
        &["drain-eod"],
        &["drain-hourly"],
        &["reprioritize"],
    ]
    .iter()
    .enumerate()
    {
        let w = poisoned(&format!("poison-{i}"));
        let out = runs(&w, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Whatever ran first, the drain that follows sends the 20 mails.
        let s = w.json(NOW, &["drain-eod"]);
        let mut sent = recipients(&w.fake);
        sent.sort();
        assert_eq!(sent.len(), BEHIND, "{args:?} then drain-eod: {s}");
        assert!(!sent.iter().any(|r| r == "poison@example.org"));
        assert_parked_malformed(&w);
        assert_eq!(w.ready(&w.queue), 0);
    }
}

#[test]
fn headers_nested_20000_deep_behind_the_head_end_one_run_and_are_parked() {
    // Priority 0: behind every mail. The drain meets it only after sending them; lapin
    // closes the connection on it, and the run parks it before it ends.
    let w = poisoned_at("poison-tail", 0);
    let out = runs(&w, &["drain-eod"]);
    assert_eq!(recipients(&w.fake).len(), BEHIND);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("parked 1 message"), "{err}");
    assert_parked_malformed(&w);
    // The next run is a clean one: mails whose acks the closed connection lost are
    // known to the journal, acked, not sent again.
    let s = w.json(NOW, &["drain-eod"]);
    assert_eq!(s["sent"].as_u64(), Some(0), "{s}");
    assert_eq!(recipients(&w.fake).len(), BEHIND);
    assert_eq!(w.ready(&w.queue), 0);
}

/// Without its parking queue (a new deploy before `publish -n 0`, or one deleted by
/// hand), the screen parks nothing: RabbitMQ would confirm a copy no queue takes, and
/// acking the original then would lose it. The message stays at the head of the queue.
#[test]
fn without_a_parking_queue_the_unreadable_message_stays_where_it_is() {
    let w = poisoned("poison-no-parking");
    let parking = format!("{}.dead", w.queue);
    delete_queue(&parking);
    let out = w
        .cmd()
        .args(["--now", NOW, "--json", "peek"])
        .output()
        .expect("peek");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some(),
        "peek aborted: {:?} {err}",
        out.status
    );
    assert!(!queue_exists(&parking), "the screen created {parking}");
    assert_eq!(
        w.ready(&w.queue),
        BEHIND as u32 + 1,
        "a message was lost: {err}"
    );
}
