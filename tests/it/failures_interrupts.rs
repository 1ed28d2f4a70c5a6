//! Runs killed, interrupted or overlapping: a kill (even SIGKILL) mid-send never sends
//! twice, signals finish what is in flight, a second run waits for the lock.

use std::time::Duration;

use crate::it::publish::NOW;
use crate::support::*;

/// The recipient of the mail `kill_drain_mid_send` publishes in this file's tests.
const ONCE: &str = "once@example.org";

/// Publishes one mail to `to`, starts a drain-eod, and kills it with SIGKILL while
/// Brevo, which has accepted the mail, is still answering.
pub fn kill_drain_mid_send(w: &World, to: &str) {
    w.publish(&[job(to, 3, "2026-11-28T10:00:00-03:00")], NOW);
    w.fake.state().latency = Duration::from_secs(3);
    let child = spawn(w.std_cmd().args(["--now", NOW, "-q", "drain-eod"]));
    w.fake.wait_for_sends(1, Duration::from_secs(30));
    // The kill lands mid-send: Brevo holds the request and has not answered yet.
    assert_eq!(w.fake.in_flight(), 1, "the send was already answered");
    child.kill_mid_run();
    assert_eq!(w.fake.accepted().len(), 1);
    w.fake.state().latency = Duration::ZERO;
}

#[test]
fn a_drain_killed_mid_send_never_sends_twice() {
    let w = World::new("sigkill", 300.0);
    kill_drain_mid_send(&w, ONCE);
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
fn a_killed_send_taken_after_the_idempotency_window_is_looked_up_in_brevos_log() {
    // The next drain runs an hour later: Brevo would no longer refuse the key, so a
    // blind resend could deliver it twice. Brevo's log shows it went: acked as sent.
    let w = World::new("sigkill-late", 300.0);
    kill_drain_mid_send(&w, ONCE);
    let s = w.json("2026-11-27T13:00:00-03:00", &["drain-eod"]);
    assert_eq!(
        counts(&s, &["sent", "already_sent", "parked"]),
        [Some(0), Some(1), Some(0)],
        "{s}"
    );
    assert_eq!(w.fake.accepted().len(), 1, "sent twice");
    assert_eq!(w.fake.state().log_calls, 1);
    assert_eq!(w.ready(&w.queue), 0);
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 0);
}

#[test]
fn reprioritize_leaves_an_expired_mail_that_may_have_gone_to_the_drains_lookup() {
    // The killed run's mail went to Brevo; its deadline passes before the next drain.
    // Parked as expired by reprioritize, it would be both sent and queued: it goes back
    // to the main queue instead, where the drain finds it in Brevo's log.
    let w = World::new("sigkill-expired", 300.0);
    kill_drain_mid_send(&w, ONCE);
    let after = "2026-11-29T00:30:00-03:00";
    let r = w.json(after, &["reprioritize"]);
    assert_eq!(
        (r["expired"].as_u64(), r["requeued"].as_u64()),
        (Some(0), Some(1)),
        "{r}"
    );
    assert_eq!(
        w.ready(&format!("{}.dead", w.queue)),
        0,
        "parked as expired"
    );
    let s = w.json(after, &["drain-eod"]);
    assert_eq!(
        counts(&s, &["sent", "already_sent", "parked"]),
        [Some(0), Some(1), Some(0)],
        "{s}"
    );
    assert_eq!(w.fake.accepted().len(), 1, "sent twice");
    assert_eq!(w.ready(&w.queue), 0);
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 0);
}

#[test]
fn a_killed_send_brevo_never_got_is_sent_once_its_log_says_so() {
    let w = World::new("sigkill-absent", 300.0);
    w.publish(
        &[job("once@example.org", 3, "2026-11-28T10:00:00-03:00")],
        NOW,
    );
    // The connection is dropped after 3 s without Brevo accepting anything.
    w.fake.state().latency = Duration::from_secs(3);
    w.fake.state().script.push_back(Fault::Drop);
    let child = spawn(w.std_cmd().args(["--now", NOW, "-q", "drain-eod"]));
    w.fake.wait_for_sends(1, Duration::from_secs(30));
    assert_eq!(w.fake.in_flight(), 1, "the send was already answered");
    child.kill_mid_run();
    w.fake.state().latency = Duration::ZERO;
    let s = w.json("2026-11-27T13:00:00-03:00", &["drain-eod"]);
    assert_eq!(
        (s["sent"].as_u64(), s["parked"].as_u64()),
        (Some(1), Some(0)),
        "{s}"
    );
    assert_eq!(recipients(&w.fake), ["once@example.org"]);
}

#[test]
fn a_killed_send_is_parked_when_brevos_log_cannot_tell() {
    let w = World::new("sigkill-nolog", 300.0);
    kill_drain_mid_send(&w, ONCE);
    // Down for hours: a look-up that gets no answer is asked again for 6 hours after
    // the attempt in doubt, then the mail is set aside for a person.
    w.fake.state().log_down = true;
    let s = w.json("2026-11-27T19:00:00-03:00", &["drain-eod"]);
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

#[test]
fn overlapping_runs_wait_for_the_lock_then_give_up() {
    let w = World::new("lock", 300.0);
    w.publish(&[job("a@example.org", 3, "2026-11-28T10:00:00-03:00")], NOW);
    w.fake.state().latency = Duration::from_secs(4);
    let mut first = spawn(w.std_cmd().args(["--now", NOW, "-q", "drain-eod"]));
    w.fake.wait_for_sends(1, Duration::from_secs(30));
    let out = w
        .cmd()
        .args(["--now", NOW, "--lock-wait", "1", "drain-hourly"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another acaso-mail run"));
    assert!(
        first.is_running(),
        "the first run ended before the second one tried the lock"
    );
    let first = first.wait_with_output();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
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
    let mut child =
        spawn(
            w.std_cmd()
                .args(["--now", NOW, "--json", "drain-eod", "--concurrency", "1"]),
        );
    w.fake.wait_for_sends(1, Duration::from_secs(30));
    // The signal lands mid-send: the first mail's answer is still pending.
    assert_eq!(w.fake.in_flight(), 1, "the send was already answered");
    signal(&child, "TERM");
    let out = child.wait_with_output();
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
fn sigint_during_publish_reports_what_was_confirmed_and_exits_130() {
    let w = World::new("sigint-publish", 300.0);
    w.declare_queues();
    let mut child = spawn(w.std_cmd().args(["publish", "-n", "5000000"]));
    w.wait_until_ready(500);
    // Mid-run: 5,000,000 mails take far longer than this test may run.
    assert!(child.is_running(), "the publish ended before the signal");
    signal(&child, "INT");
    let out = child.wait_with_output();
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
    // It says what publish does on a signal, not what the drains do.
    assert!(err.contains("signal received: publishing no more"), "{err}");
    assert!(!err.contains("taking no new mail"), "{err}");
    // Every confirmed message is queued, and nothing beyond what was published.
    assert_eq!(w.ready(&w.queue), confirmed);
}

#[test]
fn a_signal_ends_a_lock_wait_at_once() {
    // SIGTERM used to be ignored until --lock-wait ran out (then exit 6).
    let w = World::new("lock-signal", 300.0);
    w.publish(&[job("a@example.org", 3, "2026-11-28T10:00:00-03:00")], NOW);
    // Under the 5 s timeout the world sets, so the first run succeeds.
    w.fake.state().latency = Duration::from_secs(4);
    let mut first = spawn(w.std_cmd().args(["--now", NOW, "-q", "drain-eod"]));
    w.fake.wait_for_sends(1, Duration::from_secs(30));
    let mut waiting = spawn(
        w.std_cmd()
            .args(["--now", NOW, "--lock-wait", "60", "drain-hourly"]),
    );
    wait_until_waiting_for_lock(&mut waiting, w.state.path());
    assert!(
        waiting.is_running(),
        "the second run did not wait for the lock"
    );
    let start = std::time::Instant::now();
    signal(&waiting, "TERM");
    let out = waiting.wait_with_output();
    assert_eq!(out.status.code(), Some(143), "{out:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?} to stop",
        start.elapsed()
    );
    assert!(first.is_running(), "the first run ended before the signal");
    assert!(first.wait_with_output().status.success());
    assert_eq!(w.fake.accepted().len(), 1);
}

#[test]
fn dead_letters_recheck_settles_uncertain_mail_by_brevos_log() {
    // Two mails parked as uncertain_send while the log was down: one Brevo had sent,
    // one it never got. Once the log answers, recheck removes the first (journaled as
    // sent) and replays the second, which the next drain sends: each mail once.
    let w = World::new("recheck", 300.0);
    kill_drain_mid_send(&w, ONCE);
    // Past the 6 hours a look-up that gets no answer is asked again.
    let late = "2026-11-27T19:00:00-03:00";
    w.fake.state().log_down = true;
    let s = w.json(late, &["drain-eod"]);
    assert_eq!(s["parked"].as_u64(), Some(1), "{s}");
    w.publish(
        &[job("never@example.org", 3, "2026-11-28T10:00:00-03:00")],
        NOW,
    );
    w.fake.state().latency = Duration::from_secs(3);
    w.fake.state().script.push_back(Fault::Drop);
    let child = spawn(w.std_cmd().args(["--now", NOW, "-q", "drain-eod"]));
    w.fake.wait_for_sends(2, Duration::from_secs(30));
    // Brevo holds the request (it will drop it without accepting): the run is mid-send.
    child.kill_mid_run();
    w.fake.state().latency = Duration::ZERO;
    let s = w.json(late, &["drain-eod"]);
    assert_eq!(s["parked"].as_u64(), Some(1), "{s}");
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 2);

    w.fake.state().log_down = false;
    // recheck asks the log only 20 minutes after a mail's latest journaled attempt (the
    // drain at `late` opened one), when the log can list it.
    let r = w.json("2026-11-27T19:25:00-03:00", &["dead-letters", "recheck"]);
    assert_eq!(
        (
            r["sent"].as_u64(),
            r["replayed"].as_u64(),
            r["unknown"].as_u64()
        ),
        (Some(1), Some(1), Some(0)),
        "{r}"
    );
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 0);
    let s = w.json("2026-11-27T19:30:00-03:00", &["drain-eod"]);
    assert_eq!(s["sent"].as_u64(), Some(1), "{s}");
    let mut sent = recipients(&w.fake);
    sent.sort();
    assert_eq!(sent, ["never@example.org", "once@example.org"]);
    assert_eq!(w.ready(&w.queue), 0);
}

/// `dead-letters <action> --all` at [`NOW`], which must succeed.
pub(crate) fn dead_letters_all(w: &World, action: &str) {
    let out = w
        .cmd()
        .args(["--now", NOW, "-q", "dead-letters", action, "--all"])
        .output()
        .expect("dead-letters");
    assert!(
        out.status.success(),
        "dead-letters {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A drain-eod at [`NOW`] that parks `expired` mails as expired and drops
/// `already_parked` leftovers, after which the main queue is empty and `parking` holds
/// one copy.
pub(crate) fn drain_parks_once(w: &World, parking: &str, expired: u64, already_parked: u64) {
    let s = w.json(NOW, &["drain-eod"]);
    assert_eq!(
        counts(&s, &["expired", "already_parked"]),
        [Some(expired), Some(already_parked)],
        "{s}"
    );
    assert_eq!((w.ready(&w.queue), w.ready(parking)), (0, 1));
}

#[test]
fn an_original_left_behind_after_its_parking_is_dropped_not_parked_twice() {
    // A run that dies (or loses the broker) between the parking copy's confirm and the
    // original's ack leaves the original queued: the next run must not park it again.
    let w = World::new("park-twin", 300.0);
    let (body, parking) = one_expired_mail(&w);
    drain_parks_once(&w, &parking, 1, 0);
    // The original as the dead run left it (same body), its copy parked.
    raw_publish(&w.queue, &[(body.clone(), 5)]);
    drain_parks_once(&w, &parking, 0, 1);
    // reprioritize does not park it again: it leaves it at the head of the queue for
    // the next drain, which drops it.
    raw_publish(&w.queue, &[(body.clone(), 5)]);
    let r = w.json(NOW, &["reprioritize"]);
    assert_eq!(
        counts(&r, &["expired", "requeued"]),
        [Some(0), Some(1)],
        "{r}"
    );
    assert_eq!((w.ready(&w.queue), w.ready(&parking)), (1, 1));
    drain_parks_once(&w, &parking, 0, 1);
    // A copy replayed by dead-letters is not a leftover (no copy is parked any more): it
    // is handled again (and, expired, parked again), not dropped.
    dead_letters_all(&w, "replay");
    assert_eq!((w.ready(&w.queue), w.ready(&parking)), (1, 0));
    drain_parks_once(&w, &parking, 1, 0);
}

#[test]
fn a_drain_killed_as_it_parks_leaves_the_mail_to_be_parked_once() {
    // Killed (SIGKILL) while the parking copy's publish is held on its way: the journal
    // says a copy may be parked, but none is; the next drain looks, finds none, and
    // parks the mail; reprioritize then leaves the one copy alone.
    let w = World::new("park-kill", 300.0);
    let (_, parking) = one_expired_mail(&w);
    let proxy = proxy::Proxy::hold_at(proxy::Method::BasicPublish, 1);
    let child = spawn(w.std_cmd().env("QUEUE_SERVICE_URL", proxy.url()).args([
        "--now",
        NOW,
        "-q",
        "drain-eod",
    ]));
    proxy.wait_triggered(Duration::from_secs(60));
    child.kill_mid_run();
    drop(proxy);
    w.wait_until_ready_exactly(&w.queue, 1);
    assert_eq!(w.ready(&parking), 0);
    drain_parks_once(&w, &parking, 1, 0);
    let r = w.json(NOW, &["reprioritize"]);
    assert_eq!(r["duplicates"], 0, "{r}");
    assert_eq!((w.ready(&w.queue), w.ready(&parking)), (0, 1));
}

#[test]
fn a_mail_parked_then_purged_and_published_again_is_sent() {
    // The journal remembers the parking for 30 days; the copy is gone (purged): the
    // mail published again must not be taken for a leftover.
    let w = World::new("park-purged", 300.0);
    w.declare_queues();
    let parking = format!("{}.dead", w.queue);
    let body = serde_json::to_vec(&job("fixed@example.org", 3, "2026-11-29T10:00:00-03:00"))
        .expect("json");
    raw_publish(&w.queue, &[(body.clone(), 5)]);
    w.fake.state().script.push_back(Fault::Status(
        400,
        r#"{"code":"invalid_parameter","message":"template inactive"}"#.into(),
    ));
    let s = w.json(NOW, &["drain-eod"]);
    assert_eq!(w.ready(&parking), 1, "{s}");
    dead_letters_all(&w, "purge");
    raw_publish(&w.queue, &[(body, 5)]);
    let s = w.json(NOW, &["drain-eod"]);
    assert_eq!(
        counts(&s, &["sent", "already_parked"]),
        [Some(1), Some(0)],
        "{s}"
    );
    assert_eq!(recipients(&w.fake), ["fixed@example.org"]);
    assert_eq!((w.ready(&w.queue), w.ready(&parking)), (0, 0));
}
