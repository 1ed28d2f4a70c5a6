//! Two "hosts" (two state directories) and one `--state-url`: the run lock and the
//! journal are shared through PostgreSQL, so one drains at a time and a mail one host
//! sent, or tried with its answer unseen, is never sent again by the other, even past
//! Brevo's idempotency window. And PostgreSQL stopped mid-drain loses and doubles
//! nothing. These tests keep their state in PostgreSQL whatever the suite's mode.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::it::failures_interrupts::kill_drain_mid_send;
use crate::it::publish::NOW;
use crate::support::*;

/// `NOW` plus `minutes`, as (RFC 3339 for `--now`, Unix seconds for the fake).
fn at(minutes: i64) -> (String, i64) {
    let t = chrono::DateTime::parse_from_rfc3339(NOW).expect("NOW")
        + chrono::Duration::minutes(minutes);
    (t.to_rfc3339(), t.timestamp())
}

/// A world whose state is in a database of its own, and a second host's state directory.
fn two_hosts(name: &str, url: Option<String>) -> (World, tempfile::TempDir) {
    let mut w = World::new(name, 1000.0);
    w.state_url = Some(url.unwrap_or_else(|| pg::shared().new_database()));
    (w, private_dir("host B's state directory"))
}

/// Host B: the same world, its own state directory.
fn host_b(w: &World, b: &tempfile::TempDir) -> std::process::Command {
    let mut c = w.std_cmd();
    c.env("ACASO_MAIL_STATE_DIR", b.path());
    c
}

/// How many times Brevo accepted each recipient.
fn accepted_per_recipient(w: &World) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for r in recipients(&w.fake) {
        *n.entry(r).or_insert(0) += 1;
    }
    n
}

fn mails(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| job(&format!("m{i}@example.org"), 3, "2026-11-28T10:00:00-03:00"))
        .collect()
}

/// Nothing of the state was written to either host's directory.
fn nothing_local(w: &World, b: &tempfile::TempDir) {
    for dir in [w.state.path(), b.path()] {
        let files: Vec<_> = std::fs::read_dir(dir).expect("dir").flatten().collect();
        assert!(files.is_empty(), "{}: {files:?}", dir.display());
    }
}

#[test]
fn two_hosts_draining_at_once_take_turns_and_send_each_mail_once() {
    let (w, b) = two_hosts("two-hosts-at-once", None);
    w.publish(&mails(30), NOW);
    w.fake.state().latency = Duration::from_millis(50);
    let args = ["--now", NOW, "--json", "--lock-wait", "120", "drain-eod"];
    let mut a_run = spawn(w.std_cmd().args(args));
    let mut b_run = spawn(host_b(&w, &b).args(args));
    let (a_out, b_out) = (a_run.wait_with_output(), b_run.wait_with_output());
    let mut sent = Vec::new();
    for out in [&a_out, &b_out] {
        sent.push(json_of(out, 0)["sent"].as_u64());
    }
    sent.sort_unstable();
    // One drained everything; the other waited for the lock and found nothing.
    assert_eq!(sent, [Some(0), Some(30)]);
    let per = accepted_per_recipient(&w);
    assert_eq!(per.len(), 30);
    assert!(per.values().all(|&n| n == 1), "sent twice: {per:?}");
    assert_eq!(w.ready(&w.queue), 0);
    nothing_local(&w, &b);
}

#[test]
fn a_run_on_one_host_locks_out_the_other_with_exit_6() {
    let (w, b) = two_hosts("two-hosts-locked", None);
    w.publish(&mails(1), NOW);
    w.fake.state().latency = Duration::from_secs(3);
    let a_run = spawn(w.std_cmd().args(["--now", NOW, "-q", "drain-eod"]));
    w.fake.wait_for_sends(1, Duration::from_secs(30));
    let out = output_within(
        host_b(&w, &b).args(["--now", NOW, "--lock-wait", "0", "drain-eod"]),
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(
        err.contains("PostgreSQL at postgres://postgres@127.0.0.1"),
        "{err}"
    );
    // The holder is killed: the server frees its lock with its connection, at once.
    a_run.kill_mid_run();
    w.fake.state().latency = Duration::ZERO;
    let out = output_within(
        host_b(&w, &b).args(["--now", NOW, "--json", "--lock-wait", "10", "drain-eod"]),
        Duration::from_secs(60),
    );
    assert_eq!(json_of(&out, 0)["already_sent"], 1);
    assert_eq!(w.fake.accepted().len(), 1);
}

#[test]
fn a_send_host_a_never_saw_answered_is_not_sent_again_by_host_b_past_brevos_window() {
    let (w, b) = two_hosts("two-hosts-unseen", None);
    w.fake.set_now(at(0).1);
    kill_drain_mid_send(&w, "once@example.org");
    // 40 minutes later on host B: Brevo's window is over (the fake would accept the key
    // again), so only the shared journal keeps the mail from going twice.
    let (later, unix) = at(40);
    w.fake.set_now(unix);
    let out = output_within(
        host_b(&w, &b).args(["--now", &later, "--json", "drain-eod"]),
        Duration::from_secs(60),
    );
    let s = json_of(&out, 0);
    assert_eq!(
        (s["sent"].as_u64(), s["already_sent"].as_u64()),
        (Some(0), Some(1)),
        "{s}"
    );
    assert_eq!(w.fake.accepted().len(), 1, "sent twice");
    assert_eq!(w.fake.state().log_calls, 1, "settled through Brevo's log");
    assert_eq!(w.ready(&w.queue), 0);
}

#[test]
fn drains_killed_in_turn_on_both_hosts_lose_nothing_and_send_nothing_twice() {
    let (w, b) = two_hosts("two-hosts-kills", None);
    w.fake.set_now(at(0).1);
    w.publish(&mails(12), NOW);
    let mut kills = 0;
    for round in 0..4i64 {
        // Each round 20 minutes after the last: past Brevo's window from the second on.
        let (now, unix) = at(round * 20);
        w.fake.set_now(unix);
        w.fake.state().latency = Duration::from_millis(700);
        let before = w.fake.state().received.len();
        let mut c = if round % 2 == 0 {
            w.std_cmd()
        } else {
            host_b(&w, &b)
        };
        let run = spawn(c.args(["--now", &now, "-q", "drain-eod", "--concurrency", "2"]));
        w.fake.wait_for_sends(
            u64::try_from(before).expect("n") + 1,
            Duration::from_secs(60),
        );
        if run_is_over(run) {
            break;
        }
        kills += 1;
    }
    assert_eq!(kills, 4, "every round's drain was killed mid-run");
    w.fake.state().latency = Duration::ZERO;
    let (last, unix) = at(120);
    w.fake.set_now(unix);
    let s = drain_the_rest(&w, &last, 12);
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 0, "{s}");
    nothing_local(&w, &b);
}

/// A clean drain-eod at `now`, after which each of the `mails` was accepted exactly once
/// and the main queue is empty; returns its report.
fn drain_the_rest(w: &World, now: &str, mails: usize) -> serde_json::Value {
    let s = w.json(now, &["drain-eod"]);
    let per = accepted_per_recipient(w);
    assert_eq!(per.len(), mails, "lost: {per:?}; {s}");
    assert!(per.values().all(|&n| n == 1), "sent twice: {per:?}; {s}");
    assert_eq!(w.ready(&w.queue), 0, "{s}");
    s
}

/// Kills the run if it is still going (true when it had already ended).
fn run_is_over(run: Running) -> bool {
    run.try_kill_mid_run().is_err()
}

#[test]
fn postgres_stopped_mid_drain_is_exit_4_and_the_next_run_loses_and_doubles_nothing() {
    let cluster = pg::Cluster::start(false);
    let (w, _b) = two_hosts("pg-stopped", Some(cluster.new_database()));
    w.fake.set_now(at(0).1);
    w.publish(&mails(10), NOW);
    w.fake.state().latency = Duration::from_millis(500);
    let mut run = spawn(
        w.std_cmd()
            .args(["--now", NOW, "drain-eod", "--concurrency", "1"]),
    );
    w.fake.wait_for_sends(3, Duration::from_secs(60));
    cluster.stop();
    let out = run.wait_with_output();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("state store"), "{err}");
    let taken = w.fake.accepted().len();
    assert!(
        taken < 10,
        "the run went on after losing its state: {taken}"
    );
    cluster.start_again();
    w.fake.state().latency = Duration::ZERO;
    // An hour later: the mail in flight at the stop is settled through Brevo's log.
    let (later, unix) = at(60);
    w.fake.set_now(unix);
    drain_the_rest(&w, &later, 10);
}

#[test]
fn stats_and_doctor_say_where_the_state_lives_with_the_password_masked() {
    let (mut w, b) = two_hosts("two-hosts-where", None);
    // A password in the URL (trust auth ignores it): never shown.
    let url = w.state_url.take().expect("url");
    w.state_url = Some(url.replace("postgres@", "postgres:hunter2@"));
    w.declare_queues();
    let s = w.json(NOW, &["stats"]);
    let state = s["state"].as_str().expect("state");
    assert!(
        state.starts_with("PostgreSQL at postgres://postgres:***@127.0.0.1:"),
        "{s}"
    );
    let out = output_within(
        host_b(&w, &b).args(["--now", NOW, "--json", "doctor"]),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!text.contains("hunter2"), "{text}");
    let doc = stdout_json(&out);
    assert_lock_ok_at(&doc, "PostgreSQL at postgres://postgres:***@127.0.0.1:");
    let text = String::from_utf8_lossy(
        &output_within(
            w.std_cmd().args(["--now", NOW, "stats"]),
            Duration::from_secs(60),
        )
        .stdout,
    )
    .to_string();
    assert!(
        text.contains("state: PostgreSQL at postgres://postgres:***@"),
        "{text}"
    );
    nothing_local(&w, &b);
}
