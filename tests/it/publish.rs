//! `publish`, `peek` and `stats`.

use crate::support::*;
use serde_json::json;

pub const NOW: &str = "2026-11-27T12:00:00-03:00";

#[test]
fn publish_n_queues_persistent_mock_mails() {
    let w = World::new("publish-n", 300.0);
    let out = w
        .cmd()
        .args(["--json", "publish", "-n", "25", "--to", "ops@example.org"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_json(&out)["published"], 25);
    assert_eq!(w.ready(&w.queue), 25);
    let peek = w
        .cmd()
        .args(["--json", "peek", "-n", "25"])
        .output()
        .expect("peek");
    let msgs = stdout_json(&peek)["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(msgs.len(), 25);
    let priorities: Vec<i64> = msgs
        .iter()
        .map(|m| m["priority"].as_i64().unwrap_or(-1))
        .collect();
    assert!(
        priorities.windows(2).all(|p| p[0] >= p[1]),
        "peek not in priority order: {priorities:?}"
    );
    assert!(msgs.iter().all(|m| m["to"] == "ops@example.org"));
    assert!(
        msgs.iter()
            .all(|m| [7, 9, 10, 11, 16].contains(&m["template_id"].as_i64().unwrap_or(0)))
    );
    // Peeking consumed nothing.
    assert_eq!(w.ready(&w.queue), 25);
}

#[test]
fn a_bad_line_names_its_number_and_publishes_nothing() {
    let w = World::new("publish-bad", 300.0);
    let input = format!(
        "{}\n\n{}\n{{\"template_id\": 4, \"to\": [{{\"email\": \"nope\"}}]}}\n",
        job("a@example.org", 1, "2026-11-28T10:00:00-03:00"),
        job("b@example.org", 1, "2026-11-29T10:00:00-03:00"),
    );
    let out = w
        .cmd()
        .args(["--now", NOW, "publish", "--file", "-"])
        .write_stdin(input)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 4") && err.contains("nope"), "{err}");
    // Nothing was published, nor even declared: validation comes before the broker.
    assert!(!queue_exists(&w.queue), "{} was declared", w.queue);
}

#[test]
fn publish_file_accepts_both_formats_and_fixture_lines() {
    let w = World::new("publish-formats", 300.0);
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/legacy-messages.jsonl"
    ))
    .expect("fixture");
    let mut input = fixture.clone();
    input.push_str(&format!(
        "{}\n",
        job("g@example.org", 42, "2026-11-30T10:00:00-03:00")
    ));
    let path = w.state.path().join("jobs.jsonl");
    std::fs::write(&path, input).expect("write");
    let out = w
        .cmd()
        .args(["--now", NOW, "--json", "publish", "--file"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = fixture.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(stdout_json(&out)["published"], json!(lines + 1));
    assert_eq!(w.ready(&w.queue), u32::try_from(lines + 1).expect("n"));
}

#[test]
fn peek_shows_exactly_what_the_next_drain_sends_in_that_order() {
    let w = World::new("peek-order", 300.0);
    // Published least urgent first, so broker order must come from priorities.
    let jobs = vec![
        job("d9@example.org", 1, "2026-12-06T10:00:00-03:00"),
        job("d3@example.org", 1, "2026-11-30T10:00:00-03:00"),
        job("d1a@example.org", 1, "2026-11-28T10:00:00-03:00"),
        job("d0@example.org", 1, "2026-11-27T22:00:00-03:00"),
        job("d1b@example.org", 1, "2026-11-28T09:00:00-03:00"),
        job("d20@example.org", 1, "2026-12-17T10:00:00-03:00"),
        job("d2@example.org", 1, "2026-11-29T10:00:00-03:00"),
    ];
    w.publish(&jobs, NOW);
    let out = w
        .cmd()
        .args(["--now", NOW, "--json", "peek", "-n", "5"])
        .output()
        .expect("peek");
    let shown: Vec<String> = stdout_json(&out)["messages"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["to"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    // Today, then tomorrow (oldest first), then each following day.
    assert_eq!(
        shown,
        [
            "d0@example.org",
            "d1a@example.org",
            "d1b@example.org",
            "d2@example.org",
            "d3@example.org"
        ]
    );
    let drained = w
        .cmd()
        .args([
            "--now",
            NOW,
            "--json",
            "drain-hourly",
            "--limit",
            "5",
            "--strict-limit",
            "--concurrency",
            "1",
        ])
        .output()
        .expect("drain");
    assert!(
        drained.status.success(),
        "{}",
        String::from_utf8_lossy(&drained.stderr)
    );
    assert_eq!(recipients(&w.fake), shown);
    assert_eq!(w.ready(&w.queue), 2);
}

#[test]
fn stats_breaks_the_queue_down_and_forecasts() {
    let w = World::new("stats", 1.0);
    let jobs = vec![
        job("a@example.org", 1, "2026-11-27T20:00:00-03:00"),
        job("b@example.org", 1, "2026-11-27T21:00:00-03:00"),
        job("c@example.org", 1, "2026-11-28T10:00:00-03:00"),
        job("d@example.org", 1, "2026-12-20T10:00:00-03:00"),
    ];
    w.publish(&jobs, NOW);
    let out = w
        .cmd()
        .args(["--now", NOW, "--json", "stats"])
        .output()
        .expect("stats");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = stdout_json(&out);
    assert_eq!(s["queue"]["ready"], 4);
    assert_eq!(s["queue"]["durable"], true);
    assert_eq!(s["bands"]["today"], 2);
    assert_eq!(s["bands"]["tomorrow"], 1);
    assert_eq!(s["bands"]["+14..29"], 1);
    assert_eq!(s["credits"], 1.0);
    assert_eq!(s["forecast"]["today_short"], 1);
    let text = w
        .cmd()
        .args(["--now", NOW, "stats"])
        .output()
        .expect("stats");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("URGENT") && text.contains("upgrade the Brevo plan"),
        "{text}"
    );
    // Without a key: no credits, no Brevo call.
    let calls = w.fake.state().account_calls;
    let out = w
        .cmd()
        .env_remove("SENDINBLUE_API_KEY")
        .args(["--json", "stats"])
        .output()
        .expect("stats");
    assert_eq!(stdout_json(&out)["credits"], serde_json::Value::Null);
    assert_eq!(w.fake.state().account_calls, calls);
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    let w = World::new("pipe", 300.0);
    w.cmd().args(["publish", "-n", "40"]).assert().success();
    let bin = assert_cmd::cargo::cargo_bin("acaso-mail");
    let script = format!(
        "set -o pipefail; '{}' peek -n 40 | head -c 10 >/dev/null",
        bin.display()
    );
    let mut sh = std::process::Command::new("bash");
    w.apply_env(&mut sh);
    let st = output_within(sh.args(["-c", &script]), CHILD_TIMEOUT);
    assert!(
        st.status.success(),
        "exit {:?}: {}",
        st.status.code(),
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(
        st.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}
