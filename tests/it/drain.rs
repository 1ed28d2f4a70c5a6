//! `drain-hourly`, `drain-eod` and `credits` against the fake Brevo.

use crate::it::publish::NOW;
use crate::support::*;

fn mails(n: usize, deadline: &str) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| job(&format!("m{i}@example.org"), 3, deadline))
        .collect()
}

#[test]
fn hourly_sends_the_limit_and_never_more_than_the_credits() {
    let w = World::new("hourly-limit", 300.0);
    w.publish(&mails(20, "2026-11-30T10:00:00-03:00"), NOW);
    let s = w.json(NOW, &["drain-hourly", "--limit", "12"]);
    assert_eq!(
        (
            s["budget"].as_u64(),
            s["sent"].as_u64(),
            s["remaining"].as_u64()
        ),
        (Some(12), Some(12), Some(8))
    );
    assert_eq!(w.fake.accepted().len(), 12);
    assert_eq!(w.ready(&w.queue), 8);
    // Credits below the limit: the credits win.
    w.fake.state().credits = 3.0;
    let out = w
        .cmd()
        .args(["--now", NOW, "--json", "drain-hourly"])
        .output()
        .expect("run");
    let s = stdout_json(&out);
    assert_eq!(
        (s["budget"].as_u64(), s["sent"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(w.fake.accepted().len(), 15);
    assert_eq!(w.fake.state().account_calls, 2, "one GET /account per run");
}

#[test]
fn hourly_sends_todays_mail_beyond_the_limit_unless_strict() {
    let w = World::new("hourly-urgent", 300.0);
    let mut jobs = mails(4, "2026-11-27T20:00:00-03:00");
    jobs.extend((0..3).map(|i| {
        job(
            &format!("later{i}@example.org"),
            3,
            "2026-12-01T10:00:00-03:00",
        )
    }));
    w.publish(&jobs, NOW);
    let out = w
        .cmd()
        .args([
            "--now",
            NOW,
            "--json",
            "drain-hourly",
            "--limit",
            "2",
            "--strict-limit",
        ])
        .output()
        .expect("run");
    assert_eq!(stdout_json(&out)["sent"], 2);
    let out = w
        .cmd()
        .args(["--now", NOW, "--json", "drain-hourly", "--limit", "1"])
        .output()
        .expect("run");
    // The two remaining mails due today go out although the limit is 1; nothing later.
    assert_eq!(stdout_json(&out)["sent"], 2);
    assert!(recipients(&w.fake).iter().all(|r| r.starts_with('m')));
    assert_eq!(w.ready(&w.queue), 3);
}

#[test]
fn eod_spends_the_credits_most_urgent_first() {
    let w = World::new("eod", 5.0);
    let jobs = vec![
        job("far@example.org", 3, "2026-12-25T10:00:00-03:00"),
        job("d4@example.org", 3, "2026-12-01T10:00:00-03:00"),
        job("d0@example.org", 3, "2026-11-27T23:00:00-03:00"),
        job("d2@example.org", 3, "2026-11-29T10:00:00-03:00"),
        job("d1@example.org", 3, "2026-11-28T10:00:00-03:00"),
        job("d3@example.org", 3, "2026-11-30T10:00:00-03:00"),
        job("d6@example.org", 3, "2026-12-03T10:00:00-03:00"),
    ];
    w.publish(&jobs, NOW);
    let s = w.json(NOW, &["drain-eod", "--concurrency", "1"]);
    assert_eq!(
        (
            s["budget"].as_u64(),
            s["sent"].as_u64(),
            s["remaining"].as_u64()
        ),
        (Some(5), Some(5), Some(2))
    );
    assert_eq!(
        recipients(&w.fake),
        [
            "d0@example.org",
            "d1@example.org",
            "d2@example.org",
            "d3@example.org",
            "d4@example.org"
        ]
    );
    let sent = &w.fake.accepted()[0];
    assert_eq!(sent["templateId"], 3);
    assert_eq!(sent["params"]["WHO"], "d0@example.org");
    assert!(
        sent["headers"]["idempotencyKey"]
            .as_str()
            .is_some_and(|k| k.len() == 36)
    );
    // Credits gone: the next run sends nothing and succeeds.
    let out = w
        .cmd()
        .args(["--now", NOW, "--json", "drain-eod"])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert_eq!(stdout_json(&out)["sent"], 0);
    assert_eq!(w.ready(&w.queue), 2);
}

#[test]
fn credits_reads_the_email_plan() {
    let w = World::new("credits", 281.0);
    let out = w.cmd().args(["--json", "credits"]).output().expect("run");
    assert_eq!(stdout_json(&out)["credits"], 281.0);
    assert_eq!(stdout_json(&out)["relay_enabled"], true);
    w.fake.state().credits = 12.5;
    let out = w.cmd().arg("credits").output().expect("run");
    // The answer alone, for `$(acaso-mail credits)`; an enabled relay is not news.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "12.5\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn credits_and_stats_show_whether_brevo_lets_the_account_send() {
    let w = World::new("relay-off", 281.0);
    w.fake.state().relay_enabled = false;
    let out = w.cmd().args(["--json", "credits"]).output().expect("run");
    assert_eq!(stdout_json(&out)["relay_enabled"], false);
    let out = w.cmd().arg("credits").output().expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "281\n",
        "the answer stays alone"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(relay): DISABLED"), "{err}");
    w.declare_queues();
    let stats = w.json(crate::it::publish::NOW, &["stats"]);
    assert_eq!(stats["relay_enabled"], false, "{stats}");
    assert!(
        stats["warnings"]
            .as_array()
            .is_some_and(|ws| ws.iter().any(|x| x
                .as_str()
                .is_some_and(|x| x.contains("relay.enabled is false")))),
        "{stats}"
    );
    let out = w
        .cmd()
        .args(["--now", crate::it::publish::NOW, "stats"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("transactional sending (relay): DISABLED"),
        "{text}"
    );
    w.fake.state().relay_enabled = true;
    let stats = w.json(crate::it::publish::NOW, &["stats"]);
    assert_eq!(stats["relay_enabled"], true, "{stats}");
}

#[test]
fn concurrent_sends_stay_within_the_budget_and_in_dispatch_order() {
    let w = World::new("concurrency", 40.0);
    w.fake.state().latency = std::time::Duration::from_millis(50);
    let mut jobs = Vec::new();
    for d in 0..6 {
        for i in 0..10 {
            let day = [
                "2026-11-28",
                "2026-11-29",
                "2026-11-30",
                "2026-12-01",
                "2026-12-02",
                "2026-12-03",
            ][d];
            jobs.push(job(
                &format!("d{d}-{i}@example.org"),
                3,
                &format!("{day}T10:00:00-03:00"),
            ));
        }
    }
    jobs.reverse();
    w.publish(&jobs, NOW);
    let out = w.json(NOW, &["drain-eod", "--concurrency", "8"]);
    assert_eq!(out["sent"], 40);
    let st = w.fake.state();
    assert_eq!(st.accepted.len(), 40);
    assert!(
        st.max_concurrent > 1 && st.max_concurrent <= 8,
        "max concurrent {}",
        st.max_concurrent
    );
    drop(st);
    // The 40 sent are exactly the 40 most urgent (days 1-4), whatever order they finished in.
    let sent = recipients(&w.fake);
    assert!(
        sent.iter().all(|r| ["d0-", "d1-", "d2-", "d3-"]
            .iter()
            .any(|p| r.starts_with(p))),
        "{sent:?}"
    );
    assert_eq!(w.ready(&w.queue), 20);
}
