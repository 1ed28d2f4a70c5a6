//! Cost bounded by the work: reprioritize in chunks through its staging queue, and
//! urgency bands from a bounded read of the head of the queue.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::support::*;

fn staging(w: &World) -> String {
    format!("{}.reprioritize", w.queue)
}

/// Polls until `ok` holds (at most 60 s); panics with `what` otherwise.
fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never saw {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most 60 s) until the broker has requeued what a killed run held: nothing
/// unacknowledged in `main` or `stage` (the killed run was their only client; `kill_mid_run`
/// has reaped it, but the broker sees its connection go only a moment later).
fn wait_for_requeue(main: &str, stage: &str) {
    wait_for("the killed run's mails requeued", || {
        unacked(&[main, stage]) == [0, 0]
    });
}

/// Every mail of the main queue, each exactly once, and nothing left in staging.
fn assert_exactly_once(w: &World, n: usize) {
    assert_eq!(w.ready(&staging(w)), 0, "mails left in staging");
    let all = w.take_all(&w.queue);
    let bodies: HashSet<Vec<u8>> = all.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(all.len(), n, "mails in the queue");
    assert_eq!(bodies.len(), n, "duplicated bodies in the queue");
}

#[test]
fn reprioritize_keeps_every_mail_once_oldest_first_within_a_priority() {
    let w = World::new("scale-order", 300.0);
    // Published on different days for Dec 2nd and 3rd: on Dec 2nd the first three are
    // all "today" (one priority), the last two "tomorrow"; oldest must come first.
    let at = |to: &str, deadline: &str, published: &str| {
        w.publish(&[job(to, 3, deadline)], published);
    };
    at(
        "a@example.org",
        "2026-12-02T18:00:00-03:00",
        "2026-11-27T12:00:00-03:00",
    );
    at(
        "d@example.org",
        "2026-12-03T18:00:00-03:00",
        "2026-11-27T12:00:00-03:00",
    );
    at(
        "c@example.org",
        "2026-12-02T12:00:00-03:00",
        "2026-11-29T12:00:00-03:00",
    );
    at(
        "b@example.org",
        "2026-12-02T10:00:00-03:00",
        "2026-12-01T12:00:00-03:00",
    );
    at(
        "e@example.org",
        "2026-12-03T10:00:00-03:00",
        "2026-12-01T12:00:00-03:00",
    );
    let now = "2026-12-02T00:05:00-03:00";
    let s = w.json(now, &["reprioritize"]);
    assert_eq!(
        (s["requeued"].as_u64(), s["duplicates"].as_u64()),
        (Some(5), Some(0)),
        "{s}"
    );
    assert_eq!(s["staged"], 0, "{s}");
    let p = w.json(now, &["peek", "-n", "10"]);
    let order: Vec<(String, u64)> = p["messages"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| {
            (
                m["to"].as_str().unwrap_or("").to_string(),
                m["priority"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    let want = [("a", 9), ("c", 9), ("b", 9), ("d", 8), ("e", 8)]
        .map(|(who, p)| (format!("{who}@example.org"), p));
    assert_eq!(order, want);
    assert_exactly_once(&w, 5);
}

/// One "now" for the whole kill test, so that no mock mail expires on the way.
const KILL_NOW: &str = "2026-11-28T06:00:00-03:00";

/// Starts a reprioritize, waits until `mid` says it is halfway, and returns it.
fn start_and_wait(w: &World, mid: impl FnMut() -> bool) -> Running {
    let child = spawn(
        w.std_cmd()
            .env("ACASO_MAIL_NOW", KILL_NOW)
            .args(["-q", "reprioritize"]),
    );
    wait_for("the run halfway", mid);
    child
}

#[test]
fn reprioritize_killed_or_stopped_mid_run_then_rerun_loses_and_duplicates_nothing() {
    let w = World::new("scale-kill", 300.0);
    const N: u32 = 20_000;
    w.cmd()
        .env("ACASO_MAIL_NOW", KILL_NOW)
        .args(["-q", "publish", "-n", "20000"])
        .assert()
        .success();
    let (main, stage) = (w.queue.clone(), staging(&w));

    // Mails travel to staging in batches of up to 250: the staging queue's depth counts
    // batches; `staged` unpacks them.
    let staged = || census::staged_mails(AMQP, &w.queue);
    const BATCHES: u32 = N / 250;

    // kill -9 on the way out: some mails in staging, the rest still in the main queue.
    let child = start_and_wait(&w, || {
        let s = ready(&stage);
        s > 4 && s < BATCHES - 8
    });
    child.kill_mid_run();
    wait_for_requeue(&main, &stage);
    let (m, s) = (ready(&main), staged());
    assert!(m > 0 && s > 0, "landed mid-run: {m} queued, {s} staged");
    assert!(m + s >= N, "lost mail: {m} + {s}");

    // kill -9 on the way back: this run first moves the rest out (the main queue only
    // shrinks), then back (it grows again).
    let mut out_done = false;
    let child = start_and_wait(&w, || {
        let (m, s) = (ready(&main), ready(&stage));
        out_done |= m < 2000;
        out_done && m > 3000 && s > 4
    });
    child.kill_mid_run();
    wait_for_requeue(&main, &stage);
    let (m, s) = (ready(&main), staged());
    assert!(
        m > 0 && s > 0,
        "landed mid-way back: {m} queued, {s} staged"
    );
    assert!(m + s >= N, "lost mail: {m} + {s}");

    // SIGTERM: the run stops between mails, says so, and exits 143.
    // (once it is moving mails, so that its signal handler is in place)
    let before = ready(&main);
    let mut child = start_and_wait(&w, || ready(&main) + 500 < before);
    signal(&child, "TERM");
    let out = child.wait_with_output();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // stats, holding the run lock, puts back first what the interrupted runs left in
    // staging, and counts every mail; the next reprioritize re-orders them all.
    let st = w
        .cmd()
        .env_remove("SENDINBLUE_API_KEY")
        .env("ACASO_MAIL_NOW", KILL_NOW)
        .args(["--json", "stats"])
        .output()
        .expect("stats");
    let err = String::from_utf8_lossy(&st.stderr).to_string();
    let st = stdout_json(&st);
    assert!(err.contains("put back"), "{err}");
    assert_eq!(st["reprioritizing"].as_u64(), Some(0), "{st}");
    let out = w
        .cmd()
        .env("ACASO_MAIL_NOW", KILL_NOW)
        .args(["--json", "reprioritize"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = stdout_json(&out);
    assert_eq!(s["requeued"].as_u64(), Some(u64::from(N)), "{s}");
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 0, "nothing expired");
    assert_exactly_once(&w, N as usize);
}

#[test]
fn reprioritize_finishes_what_an_older_run_left_and_parks_a_batch_it_cannot_read() {
    // What an older version left in staging (one mail a message), a batch of this one
    // (two mails), and a batch whose body is cut short: every readable mail goes back
    // to the main queue once, and the unreadable batch is parked whole, not lost.
    let w = World::new("scale-legacy", 300.0);
    w.declare_queues();
    let now = "2026-11-28T06:00:00-03:00";
    let body =
        |to: &str| serde_json::to_vec(&job(to, 3, "2026-12-01T10:00:00-03:00")).expect("json");
    raw_publish(
        &staging(&w),
        &[(body("old1@example.org"), 9), (body("old2@example.org"), 9)],
    );
    let mut b = acaso_mail::mailbox::batch::Batch::default();
    for to in ["new1@example.org", "new2@example.org"] {
        b.push(
            &lapin::BasicProperties::default().with_priority(3),
            &body(to),
        )
        .expect("push");
    }
    let (good, headers) = b.take("an-older-run");
    let props = lapin::BasicProperties::default()
        .with_priority(9)
        .with_headers(headers);
    let cut = good[..good.len() - 5].to_vec();
    raw_publish_with(&staging(&w), &[(good, props.clone()), (cut, props)]);
    w.publish(
        &[job("main@example.org", 3, "2026-12-01T10:00:00-03:00")],
        now,
    );
    let s = w.json(now, &["reprioritize"]);
    assert_eq!(
        counts(
            &s,
            &["requeued", "resumed", "parked", "staged", "duplicates"]
        ),
        [Some(5), Some(4), Some(1), Some(0), Some(0)],
        "{s}"
    );
    let parked = w.take_all(&format!("{}.dead", w.queue));
    assert_eq!(parked.len(), 1);
    let reason = header_str(&parked[0].0, "x-acaso-reason");
    assert!(
        matches!(reason.as_deref(), Some("malformed" | "not_utf8")),
        "{reason:?}"
    );
    assert!(
        header_str(&parked[0].0, "x-acaso-detail")
            .is_some_and(|d| d.contains("reprioritize batch"))
            && parked[0].0.inner().contains_key("x-acaso-batch"),
        "{:?}",
        parked[0].0
    );
    let mut to: Vec<String> = w
        .take_all(&w.queue)
        .iter()
        .map(|(_, b)| {
            serde_json::from_slice::<serde_json::Value>(b).expect("json")["to"][0]["email"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    to.sort();
    assert_eq!(
        to,
        [
            "main@example.org",
            "new1@example.org",
            "new2@example.org",
            "old1@example.org",
            "old2@example.org"
        ]
    );
}

#[test]
fn an_unreadable_batch_is_parked_once_across_a_crash() {
    // Killed as it acks the batch whose copy it has just parked: the journal says a copy
    // may be parked, so the next run does not park it again but hands it to the drain,
    // which finds the copy in the parking queue and drops the original.
    let w = World::new("scale-bad-crash", 300.0);
    w.declare_queues();
    let now = "2026-11-28T06:00:00-03:00";
    let mut b = acaso_mail::mailbox::batch::Batch::default();
    let one =
        serde_json::to_vec(&job("x@example.org", 3, "2026-12-01T10:00:00-03:00")).expect("json");
    b.push(&lapin::BasicProperties::default(), &one)
        .expect("push");
    let (good, headers) = b.take("an-older-run");
    let props = lapin::BasicProperties::default()
        .with_priority(9)
        .with_headers(headers);
    raw_publish_with(&staging(&w), &[(good[..good.len() - 5].to_vec(), props)]);
    let dead = format!("{}.dead", w.queue);
    let proxy = proxy::Proxy::hold_at(proxy::Method::BasicAck, 1);
    let child = spawn(w.std_cmd().env("QUEUE_SERVICE_URL", proxy.url()).args([
        "--now",
        now,
        "-q",
        "reprioritize",
    ]));
    proxy.wait_triggered(Duration::from_secs(60));
    child.kill_mid_run();
    drop(proxy);
    wait_for("the batch back in staging", || w.ready(&staging(&w)) == 1);
    assert_eq!(w.ready(&dead), 1, "its copy was parked before the ack");
    let s = w.json(now, &["reprioritize"]);
    assert_eq!(
        (w.ready(&staging(&w)), w.ready(&dead), w.ready(&w.queue)),
        (0, 1, 1),
        "{s}"
    );
    let d = w.json(now, &["drain-eod"]);
    assert_eq!(d["already_parked"], 1, "{d}");
    assert_eq!((w.ready(&dead), w.ready(&w.queue)), (1, 0), "{d}");
}

#[test]
fn a_batch_parked_by_an_older_version_is_replayed_as_its_mails() {
    // A version before batches, run on an interrupted run's staging queue, parks each
    // batch whole as an unreadable mail: replaying it puts back the mails it holds.
    let w = World::new("scale-replay-batch", 300.0);
    w.declare_queues();
    let mut b = acaso_mail::mailbox::batch::Batch::default();
    let mails: Vec<Vec<u8>> = ["r1@example.org", "r2@example.org"]
        .iter()
        .map(|to| serde_json::to_vec(&job(to, 3, "2026-12-01T10:00:00-03:00")).expect("json"))
        .collect();
    for m in &mails {
        let p = lapin::BasicProperties::default()
            .with_message_id(format!("id-{}", m.len()).as_str().into());
        b.push(&p, m).expect("push");
    }
    let (body, mut headers) = b.take("an-older-run");
    headers.insert(
        "x-acaso-reason".into(),
        lapin::types::AMQPValue::LongString("not_utf8".into()),
    );
    let props = lapin::BasicProperties::default().with_headers(headers);
    raw_publish_with(&format!("{}.dead", w.queue), &[(body, props)]);
    let r = w.json(
        "2026-11-28T06:00:00-03:00",
        &["dead-letters", "replay", "--reason", "not_utf8"],
    );
    assert_eq!(r["replayed"], 1, "{r}");
    let mut back: Vec<(Vec<u8>, bool)> = w
        .take_all(&w.queue)
        .into_iter()
        .map(|(h, b)| (b, h.inner().contains_key("x-acaso-replayed-at")))
        .collect();
    back.sort();
    let mut want: Vec<(Vec<u8>, bool)> = mails.into_iter().map(|m| (m, true)).collect();
    want.sort();
    assert!(
        back == want,
        "{} message(s) back in the main queue",
        back.len()
    );
}

#[test]
fn reprioritize_carries_large_mails_intact_in_bounded_batches() {
    // Forty mails of 200 KB (under the 256 KiB a mail may weigh): at most 20 fit in one
    // staging batch (4 MiB), so they travel in several (seen by stopping a run after its
    // first). Each comes back byte for byte, once.
    let w = World::new("scale-big", 300.0);
    w.declare_queues();
    let mut bodies: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            let mut j = job(
                &format!("big{i}@example.org"),
                3,
                "2026-12-01T10:00:00-03:00",
            );
            j["params"] = serde_json::json!({ "text": "x".repeat(200_000 + i) });
            serde_json::to_vec(&j).expect("json")
        })
        .collect();
    raw_publish(
        &w.queue,
        &bodies.iter().map(|b| (b.clone(), 4)).collect::<Vec<_>>(),
    );
    // Killed as its second staging message goes out: the first batch is in staging.
    let proxy = proxy::Proxy::hold_at(proxy::Method::BasicPublish, 2);
    let child = spawn(w.std_cmd().env("QUEUE_SERVICE_URL", proxy.url()).args([
        "--now",
        "2026-11-28T06:00:00-03:00",
        "-q",
        "reprioritize",
    ]));
    proxy.wait_triggered(Duration::from_secs(60));
    child.kill_mid_run();
    drop(proxy);
    wait_for("the first batch in staging", || w.ready(&staging(&w)) >= 1);
    let first = census::staged_mails(&w.amqp, &w.queue);
    let cap = acaso_mail::mailbox::batch::MAX_BYTES;
    assert!(
        first >= 1 && first as usize * 200_000 <= cap,
        "{first} mails of 200 KB in the first batch, over {cap} bytes"
    );
    let s = w.json("2026-11-28T06:00:00-03:00", &["reprioritize"]);
    assert_eq!(
        counts(&s, &["requeued", "parked", "staged", "duplicates"]),
        [Some(40), Some(0), Some(0), Some(u64::from(first))],
        "{s}"
    );
    let mut back: Vec<Vec<u8>> = w.take_all(&w.queue).into_iter().map(|(_, b)| b).collect();
    back.sort();
    bodies.sort();
    assert!(
        back == bodies,
        "{} mails came back, not the same bytes",
        back.len()
    );
}

#[test]
fn stats_beyond_the_scan_says_at_least_and_is_exact_above_it() {
    let w = World::new("scale-scan", 3.0);
    let now = "2026-11-28T08:00:00-03:00";
    let mut jobs = Vec::new();
    for (i, deadline) in [
        "2026-11-28T20:00:00-03:00",
        "2026-11-29T20:00:00-03:00",
        "2026-11-30T20:00:00-03:00",
    ]
    .iter()
    .enumerate()
    {
        for k in 0..5 {
            jobs.push(job(&format!("m{i}-{k}@example.org"), 3, deadline));
        }
    }
    w.publish(&jobs, now);
    let s = w.json(now, &["--scan", "7", "stats"]);
    assert_eq!(s["queue"]["ready"], 15, "{s}");
    assert_eq!(
        (s["bands_complete"].as_bool(), s["bands_read"].as_u64()),
        (Some(false), Some(7)),
        "{s}"
    );
    assert_eq!(
        (
            s["bands"]["today"].as_u64(),
            s["bands"]["tomorrow"].as_u64()
        ),
        (Some(5), Some(2)),
        "{s}"
    );
    assert!(s["bands"].get("+2").is_none(), "not read, not guessed: {s}");
    assert_eq!(s["bands_exact"], serde_json::json!(["today"]), "{s}");
    assert_eq!(s["forecast"]["exact"], false, "{s}");
    assert!(
        s["forecast"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("at least"),
        "{s}"
    );
    let text = w
        .cmd()
        .args(["--now", now, "--scan", "7", "stats"])
        .output()
        .expect("stats");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("at least 2") && text.contains("(not read)") && text.contains(" 8 "),
        "{text}"
    );
    // A read that reaches the end is exact for every band.
    let all = w.json(now, &["stats"]);
    assert_eq!(all["bands_complete"], true);
    assert_eq!(all["bands"]["+2"], 5);
    assert_eq!(all["forecast"]["exact"], true);
}
