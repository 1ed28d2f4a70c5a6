//! What the legacy Acaso producer publishes, read unchanged.

use crate::support::*;
use serde_json::Value;

/// "now" of the fixtures.
const FIXTURE_NOW: &str = "2026-11-27T12:00:00-03:00";

fn fixture() -> Vec<(Value, u8)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/legacy-messages.jsonl"
    ))
    .expect("fixture");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            let p = u8::try_from(v["priority"].as_u64().expect("priority")).expect("u8");
            (v["body"].clone(), p)
        })
        .collect()
}

#[test]
fn legacy_queue_is_adopted_and_every_fixture_is_sent_with_its_params() {
    let w = World::new("legacy", 300.0);
    declare_legacy_queue(&w.queue);
    let fx = fixture();
    raw_publish(
        &w.queue,
        &fx.iter()
            .map(|(b, p)| (b.to_string().into_bytes(), *p))
            .collect::<Vec<_>>(),
    );

    let out = w
        .cmd()
        .args(["--now", FIXTURE_NOW, "--json", "stats"])
        .output()
        .expect("stats");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = stdout_json(&out);
    assert_eq!(s["queue"]["durable"], false);
    assert_eq!(s["queue"]["max_priority"], 255);
    assert!(s["warnings"].to_string().contains("NOT durable"), "{s}");
    let text = w
        .cmd()
        .args(["--now", FIXTURE_NOW, "stats"])
        .output()
        .expect("stats");
    assert!(String::from_utf8_lossy(&text.stdout).contains("NOT durable"));

    // Publishing onto it works too (no PRECONDITION_FAILED), on the legacy scale.
    let extra = job("new@example.org", 9, "2026-11-28T10:00:00-03:00");
    w.publish(&[extra], FIXTURE_NOW);
    let out = w
        .cmd()
        .args(["--now", FIXTURE_NOW, "--json", "peek", "-n", "3"])
        .output()
        .expect("peek");
    let p = stdout_json(&out);
    let prios: Vec<u64> = p["messages"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["priority"].as_u64())
        .collect();
    assert!(prios.iter().all(|p| *p >= 198), "{prios:?}");

    let out = w
        .cmd()
        .args(["--now", FIXTURE_NOW, "--json", "drain-eod"])
        .output()
        .expect("drain");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_json(&out)["sent"], serde_json::json!(fx.len() + 1));
    let accepted = w.fake.accepted();
    for (body, _) in &fx {
        let mp = &body["mail_params"];
        let sent = accepted
            .iter()
            .find(|a| {
                a["params"]["MENTOR_NAME"] == mp["mentor_name"]
                    && a["templateId"] == body["template"]
                    && a["params"]["MENTORED_NAME"] == mp["mentored_name"]
            })
            .unwrap_or_else(|| panic!("not sent: {body}"));
        assert_eq!(sent["to"][0]["email"], body["recipient"]["email"]);
        assert_eq!(sent["to"][0]["name"], body["recipient"]["name"]);
        let raw = mp["mentoring_datetime"].as_str().expect("dt");
        assert_eq!(
            sent["params"]["MENTORING_DATE"],
            format!("{}/{}/{}", &raw[8..10], &raw[5..7], &raw[..4])
        );
        assert_eq!(sent["params"]["MENTORING_HOUR"], raw[11..16]);
        let want_keys: &[&str] = match body["template"].as_u64() {
            Some(7) => &["MENTORED_ID"],
            Some(9) => &["MENTOR_ID"],
            Some(11) => &["MENTOR_ID"],
            Some(16) => &["MENTORING_DATE_LIMIT"],
            _ => &[],
        };
        for k in want_keys {
            assert!(sent["params"].get(*k).is_some(), "{k} missing in {sent}");
        }
    }
    assert_eq!(w.ready(&w.queue), 0);
}
