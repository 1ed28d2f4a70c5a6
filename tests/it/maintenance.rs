//! `reprioritize` and `dead-letters`.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::*;

#[test]
fn reprioritize_puts_old_mail_back_in_day_order_and_parks_the_expired() {
    let w = World::new("reprio", 300.0);
    // Queued on Nov 27th: due Dec 2nd (+5 then), and one due Dec 1st morning.
    w.publish(
        &[job("old@example.org", 3, "2026-12-02T18:00:00-03:00")],
        "2026-11-27T12:00:00-03:00",
    );
    w.publish(
        &[job("gone@example.org", 3, "2026-12-01T10:00:00-03:00")],
        "2026-11-27T12:00:00-03:00",
    );
    // Queued on Dec 1st: due Dec 3rd (+2 then, a higher priority than "old" got).
    w.publish(
        &[job("new@example.org", 3, "2026-12-03T18:00:00-03:00")],
        "2026-12-01T12:00:00-03:00",
    );
    let after_midnight = "2026-12-02T00:05:00-03:00";
    let stale = w
        .cmd()
        .args(["--now", after_midnight, "--json", "peek"])
        .output()
        .expect("peek");
    let first = stdout_json(&stale)["messages"][0]["to"].clone();
    assert_eq!(
        first, "new@example.org",
        "without reprioritize the stale order shows"
    );

    let s = w.json(after_midnight, &["reprioritize"]);
    assert_eq!(
        (s["requeued"].as_u64(), s["expired"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
    let peek = w
        .cmd()
        .args(["--now", after_midnight, "--json", "peek"])
        .output()
        .expect("peek");
    let p = stdout_json(&peek);
    let order: Vec<&str> = p["messages"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["to"].as_str())
        .collect();
    assert_eq!(order, ["old@example.org", "new@example.org"]);
    assert_eq!(p["messages"][0]["priority"], 9);
    assert_eq!(p["messages"][1]["priority"], 8);
    let parked = w.take_all(&format!("{}.dead", w.queue));
    assert_eq!(parked.len(), 1);
    assert_eq!(
        header_str(&parked[0].0, "x-acaso-reason").as_deref(),
        Some("expired")
    );
}

#[test]
fn reprioritize_killed_at_any_point_loses_and_duplicates_nothing() {
    use proxy::Method::{BasicAck, BasicConsume, BasicPublish};
    let w = World::new("reprio-kill", 300.0);
    w.cmd()
        .args(["-q", "publish", "-n", "4000"])
        .assert()
        .success();
    // Killed (SIGKILL) while held at each step of the chunked protocol, so that every
    // kill is known to land mid-run: the first and a late batch on the way out to the
    // staging queue (16 batches of 250), copies early and late on the way back, and an
    // ack of confirmed copies.
    for (method, nth) in [
        (BasicConsume, 1),
        (BasicPublish, 1),
        (BasicPublish, 12),
        (BasicPublish, 1500),
        (BasicPublish, 3500),
        (BasicAck, 2),
    ] {
        let proxy = proxy::Proxy::hold_at(method, nth);
        let child = spawn(
            w.std_cmd()
                .env("QUEUE_SERVICE_URL", proxy.url())
                .args(["-q", "reprioritize"]),
        );
        proxy.wait_triggered(Duration::from_secs(120));
        child.kill_mid_run();
        drop(proxy);
        // The broker returns the unacked originals once it sees the connection gone. A
        // mail is then in the main queue, in the staging queue, or in both (copy
        // confirmed, original not yet acked): never in neither.
        let mut n = 0;
        let back = wait_for(Duration::from_secs(30), || {
            n = w.ready(&w.queue) + census::staged_mails(&w.amqp, &w.queue);
            n >= 4000
        });
        assert!(
            back,
            "{n} mails queued, not 4000, after a kill at {method:?} #{nth}"
        );
    }
    // The next run finishes the job: each mail exactly once, nothing left in staging.
    w.cmd().args(["-q", "reprioritize"]).assert().success();
    assert_eq!(w.ready(&format!("{}.reprioritize", w.queue)), 0);
    let all = w.take_all(&w.queue);
    let ids: HashSet<Vec<u8>> = all.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(all.len(), 4000, "mails in the queue");
    assert_eq!(ids.len(), 4000, "duplicated bodies in the queue");
}

#[test]
fn dead_letters_lists_replays_and_purges() {
    let w = World::new("dead", 300.0);
    let now = "2026-11-27T12:00:00-03:00";
    // Let acaso-mail declare its queues first (a publish to a missing queue is dropped).
    w.declare_queues();
    raw_publish(&w.queue, &[
        (b"{broken".to_vec(), 9),
        (br#"{"template_id":3,"to":[{"email":"late@example.org"}],"deadline":"2026-11-27T11:00:00-03:00"}"#.to_vec(), 9),
        (br#"{"template_id":3,"to":[{"email":"x"}]}"#.to_vec(), 9),
    ]);
    let out = w
        .cmd()
        .args(["--now", now, "-q", "drain-eod"])
        .output()
        .expect("drain");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = w
        .cmd()
        .args(["--json", "dead-letters"])
        .output()
        .expect("list");
    let l = stdout_json(&list);
    let reasons: Vec<&str> = l["messages"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["reason"].as_str())
        .collect();
    assert_eq!(reasons.len(), 3);
    assert!(
        reasons.contains(&"expired")
            && reasons.contains(&"malformed")
            && reasons.contains(&"invalid_address")
    );
    let text = w.cmd().arg("dead-letters").output().expect("list");
    assert!(String::from_utf8_lossy(&text.stdout).contains("late@example.org"));

    // Replay the expired one (say its deadline was a producer bug): back in the queue, body unchanged.
    let out = w
        .cmd()
        .args(["--json", "dead-letters", "replay", "--reason", "expired"])
        .output()
        .expect("replay");
    assert_eq!(stdout_json(&out)["replayed"], 1);
    assert_eq!(w.ready(&w.queue), 1);
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 2);
    // Purge one by index; the other stays.
    let out = w
        .cmd()
        .args(["--json", "dead-letters", "purge", "--index", "1"])
        .output()
        .expect("purge");
    assert_eq!(stdout_json(&out)["purged"], 1);
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 1);
    let replayed = w.take_all(&w.queue);
    assert!(String::from_utf8_lossy(&replayed[0].1).contains("late@example.org"));
    assert!(
        header_str(&replayed[0].0, "x-acaso-reason").is_none(),
        "parking headers removed on replay"
    );
    // Selecting nothing is a usage error.
    assert_eq!(
        w.cmd()
            .args(["dead-letters", "purge"])
            .output()
            .expect("run")
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn reprioritize_parks_one_copy_of_a_mail_queued_twice() {
    // A legacy body published twice is one mail (same identity): one copy is parked,
    // the other dropped; the drain already did the same.
    let w = World::new("reprio-twins", 300.0);
    let (body, parking) = one_expired_mail(&w);
    raw_publish(&w.queue, &[(body, 5)]);
    let r = w.json(crate::it::publish::NOW, &["reprioritize"]);
    assert_eq!(
        counts(&r, &["expired", "duplicates"]),
        [Some(1), Some(1)],
        "{r}"
    );
    assert_eq!((w.ready(&w.queue), w.ready(&parking)), (0, 1));
}
