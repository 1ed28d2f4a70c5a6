//! Output conventions: every --json document fits its checked-in schema, dry runs show
//! exactly what a run would do and touch nothing, progress bars only on a terminal,
//! colour only when asked for.

use crate::it::publish::NOW;
use crate::support::schema::assert_fits;
use crate::support::*;

fn json_of(w: &World, args: &[&str]) -> serde_json::Value {
    let out = w
        .cmd()
        .args(["--now", NOW, "--json"])
        .args(args)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{args:?} wrote to stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_json(&out)
}

#[test]
fn every_json_output_fits_its_schema() {
    let w = World::new("schemas", 300.0);
    let mut jobs: Vec<_> = (0..6)
        .map(|i| job(&format!("m{i}@example.org"), 3, "2026-11-28T10:00:00-03:00"))
        .collect();
    jobs.push(job("today@example.org", 3, "2026-11-27T22:00:00-03:00"));
    let input: String = jobs.iter().map(|j| format!("{j}\n")).collect();
    let out = w
        .cmd()
        .args(["--now", NOW, "--json", "publish", "--file", "-"])
        .write_stdin(input)
        .output()
        .expect("publish");
    assert_fits("publish", &stdout_json(&out));
    raw_publish(&w.queue, &[(b"{broken".to_vec(), 9)]);
    assert_fits("credits", &json_of(&w, &["credits"]));
    assert_fits("peek", &json_of(&w, &["peek", "-n", "20"]));
    assert_fits("stats", &json_of(&w, &["stats"]));
    assert_fits(
        "drain-dry-run",
        &json_of(&w, &["drain-hourly", "--limit", "2", "--dry-run"]),
    );
    assert_fits(
        "reprioritize-dry-run",
        &json_of(&w, &["reprioritize", "--dry-run"]),
    );
    assert_fits("reprioritize", &json_of(&w, &["reprioritize"]));
    assert_fits("drain", &json_of(&w, &["drain-hourly", "--limit", "2"]));
    assert_fits("drain", &json_of(&w, &["drain-eod"]));
    assert_fits("dead-letters", &json_of(&w, &["dead-letters"]));
    assert_fits(
        "dead-letters",
        &json_of(&w, &["dead-letters", "purge", "--all"]),
    );
    let empty = json_of(&w, &["stats"]);
    assert_fits("stats", &empty);
    assert_eq!(empty["queue"]["ready"], 0);
}

#[test]
fn a_dry_run_shows_exactly_what_the_drain_then_does_and_touches_nothing() {
    let w = World::new("dry-run", 300.0);
    let jobs = vec![
        job("d3@example.org", 3, "2026-11-30T10:00:00-03:00"),
        job("d0@example.org", 3, "2026-11-27T22:00:00-03:00"),
        job("d1@example.org", 3, "2026-11-28T10:00:00-03:00"),
        job("d0b@example.org", 3, "2026-11-27T23:00:00-03:00"),
        job("d2@example.org", 3, "2026-11-29T10:00:00-03:00"),
    ];
    w.publish(&jobs, NOW);
    raw_publish(&w.queue, &[(br#"{"template_id":3,"to":[{"email":"late@example.org"}],"deadline":"2026-11-27T11:00:00-03:00"}"#.to_vec(), 9)]);
    let plan = json_of(&w, &["drain-hourly", "--limit", "1", "--dry-run"]);
    let shown: Vec<(String, String)> = plan["mails"]
        .as_array()
        .expect("mails")
        .iter()
        .map(|m| {
            (
                m["action"].as_str().unwrap_or("").to_string(),
                m["to"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    // Both of today's go out beyond the limit of 1; the expired one (same top priority,
    // queued after them) is set aside; then the limit stops the run.
    assert_eq!(
        shown,
        [
            ("send".to_string(), "d0@example.org".to_string()),
            ("send".into(), "d0b@example.org".into()),
            ("park".into(), "late@example.org".into())
        ]
    );
    assert!(w.fake.state().received.is_empty(), "a dry run sent mail");
    assert_eq!(w.ready(&w.queue), 6, "a dry run moved mail");
    let text = w
        .cmd()
        .args(["--now", NOW, "drain-hourly", "--limit", "1", "--dry-run"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&text.stdout).contains("dry run: would send 2"));
    // The real run does what the plan said.
    let s = json_of(&w, &["drain-hourly", "--limit", "1", "--concurrency", "1"]);
    assert_eq!(
        (s["sent"].as_u64(), s["expired"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(recipients(&w.fake), ["d0@example.org", "d0b@example.org"]);
}

#[test]
fn reprioritize_dry_run_shows_the_new_order_and_moves_nothing() {
    let w = World::new("reprio-dry", 300.0);
    w.publish(
        &[job("old@example.org", 3, "2026-12-02T18:00:00-03:00")],
        "2026-11-27T12:00:00-03:00",
    );
    w.publish(
        &[job("new@example.org", 3, "2026-12-03T18:00:00-03:00")],
        "2026-12-01T12:00:00-03:00",
    );
    let out = w
        .cmd()
        .args([
            "--now",
            "2026-12-02T00:05:00-03:00",
            "--json",
            "reprioritize",
            "--dry-run",
        ])
        .output()
        .expect("run");
    let p = stdout_json(&out);
    assert_eq!(p["mails"][0]["to"], "old@example.org");
    assert_eq!(
        (
            p["mails"][0]["old_priority"].as_u64(),
            p["mails"][0]["new_priority"].as_u64()
        ),
        (Some(4), Some(9))
    );
    assert_eq!(p["changed"], 2);
    let peek = w.cmd().args(["--json", "peek"]).output().expect("peek");
    assert_eq!(
        stdout_json(&peek)["messages"][0]["to"],
        "new@example.org",
        "the dry run reordered the queue"
    );
}

#[test]
fn progress_bars_only_on_a_terminal_and_colour_only_when_asked() {
    let w = World::new("tty", 300.0);
    // Not a terminal: stderr stays empty.
    let out = w
        .cmd()
        .args(["publish", "-n", "3000"])
        .output()
        .expect("run");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // On a terminal (script(1) gives one), the bar shows; with --quiet or --json it does not.
    require_tool("script", "bsdutils");
    let bin = assert_cmd::cargo::cargo_bin("acaso-mail");
    let run = |extra: &str| {
        let mut c = std::process::Command::new("script");
        w.apply_env(&mut c);
        let line = format!("'{}' {extra} publish -n 8000", bin.display());
        let out = output_within(c.args(["-qec", &line, "/dev/null"]), CHILD_TIMEOUT);
        assert!(
            out.status.success(),
            "script -qec {line:?}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = run("");
    assert!(
        shown.contains("publish [") && shown.contains("/8000"),
        "no progress bar on a terminal: {shown:?}"
    );
    // The rate is whole mails per second, thousands grouped ("1,509/s", not
    // "1,509.1423/s", issue 21).
    let rates: Vec<&str> = shown
        .split("/s, eta")
        .filter_map(|before| before.rsplit('(').next())
        .take(shown.matches("/s, eta").count())
        .collect();
    assert!(!rates.is_empty(), "no rate on the bar: {shown:?}");
    for rate in rates {
        assert!(
            !rate.is_empty() && rate.chars().all(|c| c.is_ascii_digit() || c == ','),
            "rate {rate:?} in {shown:?}"
        );
    }
    assert!(!run("--quiet").contains("/8000"));
    assert!(!run("--json").contains("/8000"));
    let plain = w.cmd().args(["peek", "-n", "2"]).output().expect("peek");
    assert!(!plain.stdout.contains(&0x1b), "colour in a pipe");
    let coloured = w
        .cmd()
        .args(["--color", "always", "peek", "-n", "2"])
        .output()
        .expect("peek");
    assert!(
        coloured.stdout.contains(&0x1b),
        "--color always gave no colour"
    );
    let never = w
        .cmd()
        .env("NO_COLOR", "1")
        .args(["--color", "never", "peek", "-n", "2"])
        .output()
        .expect("peek");
    assert!(!never.stdout.contains(&0x1b));
}
