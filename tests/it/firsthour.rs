//! Issue 13, "a newcomer's first hour": commands that surprised a newcomer, each held
//! to what it should do.

use crate::support::*;

const NOW: &str = "2026-11-27T12:00:00-03:00";

fn sample_jobs() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/jobs.jsonl")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_sample_jobs_file_publishes_on_any_day() {
    let w = World::new("sample-jobs", 300.0);
    let lines = std::fs::read_to_string(sample_jobs())
        .expect("examples/jobs.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    assert!(lines >= 5, "{lines}");
    // Today (the clock), and on the last day of 2098.
    for now in [None, Some("2098-12-31T23:00:00-03:00")] {
        let mut cmd = w.cmd();
        if let Some(now) = now {
            cmd.args(["--now", now]);
        }
        let out = cmd
            .args(["--json", "publish", "--file"])
            .arg(sample_jobs())
            .output()
            .expect("publish");
        assert!(out.status.success(), "{now:?}: {}", stderr(&out));
        assert_eq!(stdout_json(&out)["published"], lines);
    }
    assert_eq!(w.ready(&w.queue), u32::try_from(2 * lines).expect("n"));
}

#[test]
fn reading_a_queue_that_does_not_exist_creates_nothing() {
    let w = World::new("never-made", 300.0);
    for args in [
        &["peek"][..],
        &["dead-letters"],
        &["dead-letters", "replay", "--all"],
        &["dead-letters", "purge", "--all"],
    ] {
        let out = w.cmd().args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("queue {} does not exist", w.queue)),
            "{args:?}: {err}"
        );
    }
    for q in [
        w.queue.clone(),
        format!("{}.dead", w.queue),
        format!("{}.retry.60s", w.queue),
    ] {
        assert!(!queue_exists(&q), "{q} was created by a reading command");
    }
    // A main queue without a parking queue: nothing parked, and still nothing created.
    w.publish(&[job("a@example.org", 1, "2026-11-28T10:00:00-03:00")], NOW);
    let w2 = World::new("no-parking", 300.0);
    declare_legacy_queue(&w2.queue);
    let out = w2.cmd().arg("dead-letters").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("no parked mail"), "{}", stdout(&out));
    let out = w2.cmd().args(["peek"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!queue_exists(&format!("{}.dead", w2.queue)));
    // Nor a journal: listing parked mail writes nothing to the state.
    let journal = w2.state.path().join(acaso_mail::state::DB_FILE);
    assert!(!journal.exists(), "{} was created", journal.display());
}

/// A typo in `--queue` (or in ACASO_MAIL_QUEUE in an env file) fails every command but
/// `publish` with exit 2 naming the queue, creates nothing, and a failing drain pushes a
/// failed run (what AcasoMailNoSuccessfulDrain and AcasoMailNeverRan watch), rather
/// than draining an empty queue of its own making forever.
#[test]
fn a_mistyped_queue_fails_every_command_but_publish_and_creates_nothing() {
    let w = World::new("typo", 300.0);
    let pg = Pushgateway::start();
    let typo = unique("acaso.mial");
    let family = [
        typo.clone(),
        format!("{typo}.dead"),
        format!("{typo}.reprioritize"),
        format!("{typo}.retry.60s"),
        format!("{typo}.retry.3600s"),
    ];
    for args in [
        &["stats"][..],
        &["drain-hourly"],
        &["drain-hourly", "--dry-run"],
        &["drain-eod"],
        &["drain-eod", "--dry-run"],
        &["peek"],
        &["reprioritize"],
        &["reprioritize", "--dry-run"],
        &["dead-letters"],
    ] {
        let out = w
            .cmd()
            .env("PUSHGATEWAY_URL", &pg.url)
            .args(["--now", NOW, "--queue", &typo])
            .args(args)
            .output()
            .expect("run");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("queue {typo} does not exist")),
            "{args:?}: {err}"
        );
        assert!(
            !stdout(&out).contains("sent 0"),
            "{args:?}: {}",
            stdout(&out)
        );
        for q in &family {
            assert!(!queue_exists(q), "{args:?} created {q}");
        }
    }
    for sub in ["drain-hourly", "drain-eod"] {
        let sub = format!("subcommand=\"{sub}\"");
        assert_eq!(
            pg.value("acaso_mail_last_run_success", &[&sub]),
            Some(0.0),
            "{sub}"
        );
        assert_eq!(
            pg.value("acaso_mail_last_success_timestamp_seconds", &[&sub]),
            None,
            "{sub}"
        );
    }
    // publish creates the queues; `-n 0` only that (a new deploy's set-up), and from
    // then on the other commands work.
    let made = w
        .cmd()
        .args(["--now", NOW, "--queue", &typo, "publish", "-n", "0"])
        .output()
        .expect("run");
    assert!(made.status.success(), "{}", stderr(&made));
    let _cleanup = Family(typo.clone());
    for q in &family {
        assert!(queue_exists(q), "publish -n 0 did not create {q}");
    }
    assert_eq!(ready(&typo), 0);
    let out = w
        .cmd()
        .args(["--now", NOW, "--queue", &typo, "drain-hourly"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Parks one expired mail in `w`'s queue through a drain.
fn park_one_expired(w: &World) {
    w.publish(
        &[job("late@example.org", 3, "2026-11-27T13:00:00-03:00")],
        NOW,
    );
    let out = w
        .cmd()
        .args(["--now", "2026-11-27T14:00:00-03:00", "-q", "drain-eod"])
        .output()
        .expect("drain");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 1);
}

#[test]
fn stats_tallies_belong_to_their_queue() {
    let w = World::new("tally-own", 300.0);
    park_one_expired(&w);
    let mine = w.json("2026-11-27T15:00:00-03:00", &["stats"]);
    assert_eq!(mine["today"]["parked"], 1, "{mine}");
    // Another queue, same state directory: none of those tallies.
    let other = unique("tally-other");
    let _gone = Family(other.clone());
    w.cmd()
        .env("ACASO_MAIL_QUEUE", &other)
        .args(["publish", "-n", "0"])
        .assert()
        .success();
    let out = w
        .cmd()
        .env("ACASO_MAIL_QUEUE", &other)
        .args(["--now", "2026-11-27T15:00:00-03:00", "--json", "stats"])
        .output()
        .expect("stats");
    assert!(out.status.success(), "{}", stderr(&out));
    let theirs = stdout_json(&out);
    for kind in ["sent", "failed", "expired", "parked"] {
        assert_eq!(theirs["today"][kind], 0, "{kind}: {theirs}");
    }
}

/// A queue family deleted when the test ends, passed or not.
struct Family(String);

impl Drop for Family {
    fn drop(&mut self) {
        delete_family(&self.0);
    }
}

#[test]
fn stats_with_a_refused_key_still_shows_the_queue() {
    let w = World::new("stats-bad-key", 300.0);
    w.publish(&[job("a@example.org", 1, "2026-11-28T10:00:00-03:00")], NOW);
    let out = w
        .cmd()
        .env("SENDINBLUE_API_KEY", "xkeysib-wrong")
        .args(["--now", NOW, "stats"])
        .output()
        .expect("stats");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("1 ready"), "{text}");
    assert!(text.contains("credits could not be read"), "{text}");
    let out = w
        .cmd()
        .env("SENDINBLUE_API_KEY", "xkeysib-wrong")
        .args(["--now", NOW, "--json", "stats"])
        .output()
        .expect("stats");
    let j = stdout_json(&out);
    assert_eq!(j["queue"]["ready"], 1);
    assert!(j["credits"].is_null());
    assert!(
        j["credits_error"]
            .as_str()
            .is_some_and(|e| e.contains("API key")),
        "{j}"
    );
}

#[test]
fn dead_letters_refuses_unknown_reasons_and_says_when_nothing_matches() {
    let w = World::new("dead-select", 300.0);
    park_one_expired(&w);
    let out = w
        .cmd()
        .args(["dead-letters", "replay", "--reason", "expird"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("expired, malformed"),
        "{}",
        stderr(&out)
    );
    // A position past the end is a mistake (issue 21): exit 2, naming the positions.
    let out = w
        .cmd()
        .args(["dead-letters", "purge", "--index", "7"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("positions 1 to 1"),
        "{}",
        stderr(&out)
    );
    // A reason no parked mail has is "nothing matches".
    let out = w
        .cmd()
        .args(["dead-letters", "purge", "--reason", "malformed"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("none of the 1 parked mail(s)") && text.contains("--reason malformed"),
        "{text}"
    );
    assert!(
        !text.contains("no parked mail") && !text.contains("replayed"),
        "{text}"
    );
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 1);
    // The list shows when, in --tz, to the second.
    let list = stdout(
        &w.cmd()
            .args(["--tz", "UTC", "dead-letters"])
            .output()
            .expect("list"),
    );
    assert!(list.contains("parked at (UTC)"), "{list}");
    assert!(list.contains("2026-11-27 17:00:00"), "{list}");
    let out = w
        .cmd()
        .args(["dead-letters", "purge", "--reason", "expired"])
        .output()
        .expect("run");
    let text = stdout(&out);
    assert!(
        text.contains("purged 1") && !text.contains("replayed"),
        "{text}"
    );
    assert_eq!(w.ready(&format!("{}.dead", w.queue)), 0);
}

#[test]
fn publish_file_names_every_bad_line_and_a_missing_file_is_a_usage_error() {
    let w = World::new("publish-bad-lines", 300.0);
    let good = job("a@example.org", 1, "2026-11-28T10:00:00-03:00").to_string();
    let mut input = String::new();
    for n in 1..=30 {
        if n % 3 == 0 {
            input.push_str("{not json\n");
        } else {
            input.push_str(&good);
            input.push('\n');
        }
    }
    let out = w
        .cmd()
        .args(["--now", NOW, "publish", "--file", "-"])
        .write_stdin(input)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    for n in [3, 6, 9, 12, 27, 30] {
        assert!(err.contains(&format!("line {n}:")), "line {n}: {err}");
    }
    assert!(err.contains("10 bad line(s)"), "{err}");
    assert!(!queue_exists(&w.queue));
    // Over the cap: the first 20 named, the rest counted.
    let many: String = (0..25).map(|_| "{x\n").collect();
    let out = w
        .cmd()
        .args(["--now", NOW, "publish", "--file", "-"])
        .write_stdin(many)
        .output()
        .expect("run");
    let err = stderr(&out);
    assert!(
        err.contains("line 20:") && !err.contains("line 21:"),
        "{err}"
    );
    assert!(err.contains("and 5 more"), "{err}");
    let out = w
        .cmd()
        .args(["publish", "--file", "/nonexistent/jobs.jsonl"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot read --file"),
        "{}",
        stderr(&out)
    );
}

/// A listing takes the run lock though it opens no journal: while another run holds it
/// (in the state directory, or in PostgreSQL), `dead-letters` waits, then exits 6.
#[test]
fn dead_letters_list_waits_for_the_run_lock() {
    let w = World::new("list-locked", 300.0);
    w.declare_queues();
    let url = w.state_url.as_ref().map(|u| {
        let args = acaso_mail::state_url::StateSettings {
            url: Some(u.clone()),
            ..Default::default()
        };
        acaso_mail::state_url::StateUrl::from_settings(&args, &|_: &str| None)
            .expect("url")
            .expect("set")
    });
    let place = acaso_mail::state::Place {
        dir: w.state.path(),
        url: url.as_ref(),
        timeout: std::time::Duration::from_secs(5),
    };
    let held = acaso_mail::state::lock(place, std::time::Duration::ZERO).expect("lock");
    let out = w
        .cmd()
        .args(["--lock-wait", "0", "dead-letters"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    drop(held);
    let out = w.cmd().arg("dead-letters").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
}
