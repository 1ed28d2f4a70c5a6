//! Metrics pushed to a real Pushgateway and read back from its /metrics.

use crate::it::publish::NOW;
use crate::support::*;

#[test]
fn drains_push_totals_that_survive_runs_and_failures() {
    let w = World::new("metrics", 300.0);
    let pg = Pushgateway::start();
    let jobs: Vec<_> = (0..10)
        .map(|i| job(&format!("m{i}@example.org"), 9, "2026-11-28T10:00:00-03:00"))
        .collect();
    w.publish(&jobs, NOW);
    raw_publish(&w.queue, &[(b"{broken".to_vec(), 1)]);
    let run = |args: &[&str]| {
        w.cmd()
            .env("PUSHGATEWAY_URL", &pg.url)
            .args(["--now", NOW, "-q"])
            .args(args)
            .output()
            .expect("run")
    };
    assert!(run(&["drain-hourly", "--limit", "4"]).status.success());
    let sub = "subcommand=\"drain-hourly\"";
    assert_eq!(
        pg.value("mails_sent_total", &[sub, "job=\"acaso-mail\""]),
        Some(4.0)
    );
    assert_eq!(
        pg.value("payload_template_total", &[sub, "template=\"9\""]),
        Some(4.0)
    );
    assert_eq!(
        pg.value("payload_priority_total", &[sub, "priority=\"8\""]),
        Some(4.0)
    );
    assert_eq!(pg.value("acaso_mail_queue_ready", &[sub]), Some(7.0));
    assert_eq!(
        pg.value(
            "acaso_mail_queue_ready_by_urgency",
            &[sub, "band=\"tomorrow\""]
        ),
        Some(6.0)
    );
    assert_eq!(
        pg.value("acaso_mail_queue_ready_by_urgency", &[sub, "band=\"bad\""]),
        Some(1.0)
    );
    assert_eq!(pg.value("acaso_mail_brevo_credits", &[sub]), Some(296.0));
    assert_eq!(pg.value("acaso_mail_last_run_success", &[sub]), Some(1.0));
    let first_success = pg
        .value("acaso_mail_last_success_timestamp_seconds", &[sub])
        .expect("last success");

    // A second run adds to the totals instead of resetting them.
    assert!(run(&["drain-hourly", "--limit", "3"]).status.success());
    assert_eq!(pg.value("mails_sent_total", &[sub]), Some(7.0));

    // Failed sends are counted (the 3 left go to the retry queue); a run in which no
    // send went through exits 4, and still pushes.
    w.fake
        .state()
        .script
        .extend((0..3).map(|_| Fault::Status(500, String::new())));
    assert_eq!(
        run(&["drain-hourly", "--limit", "5"]).status.code(),
        Some(4)
    );
    assert_eq!(pg.value("acaso_mail_last_run_success", &[sub]), Some(0.0));
    assert_eq!(pg.value("mails_fails_total", &[sub]), Some(3.0));
    assert_eq!(pg.value("acaso_mail_retries_total", &[sub]), Some(3.0));
    assert_eq!(pg.value("acaso_mail_retrying", &[sub]), Some(3.0));

    // A failed run pushes too: failure shown, totals and last success kept.
    let failed = w
        .cmd()
        .env("PUSHGATEWAY_URL", &pg.url)
        .env("SENDINBLUE_API_KEY", "xkeysib-wrong")
        .args(["--now", NOW, "-q", "drain-hourly"])
        .output()
        .expect("run");
    assert_eq!(failed.status.code(), Some(5));
    assert_eq!(pg.value("acaso_mail_last_run_success", &[sub]), Some(0.0));
    assert_eq!(pg.value("mails_sent_total", &[sub]), Some(7.0));
    assert!(
        pg.value("acaso_mail_last_success_timestamp_seconds", &[sub])
            .expect("kept")
            >= first_success
    );

    // The unreadable mail was parked by the hourly drain that reached it.
    assert_eq!(
        pg.value("acaso_mail_parked_total", &[sub, "reason=\"malformed\""]),
        Some(1.0)
    );
    // The end-of-day drain is its own group.
    assert!(run(&["drain-eod"]).status.success());
    let eod = "subcommand=\"drain-eod\"";
    assert_eq!(pg.value("acaso_mail_parked", &[eod]), Some(1.0));
    let total: f64 = ["drain-hourly", "drain-eod"]
        .iter()
        .filter_map(|s| pg.value("mails_sent_total", &[&format!("subcommand=\"{s}\"")]))
        .sum();
    assert_eq!(
        total as usize,
        w.fake.accepted().len(),
        "pushed totals disagree with what Brevo received"
    );
}

#[test]
fn an_unreachable_pushgateway_only_warns() {
    let w = World::new("metrics-down", 300.0);
    w.publish(&[job("a@example.org", 9, "2026-11-28T10:00:00-03:00")], NOW);
    let out = w
        .cmd()
        .env("PUSHGATEWAY_URL", "http://127.0.0.1:1")
        .args(["--now", NOW, "drain-hourly"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: metrics not pushed"), "{err}");
    assert_eq!(w.fake.accepted().len(), 1);
}
