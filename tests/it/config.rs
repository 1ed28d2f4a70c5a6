//! Bad flags and environment values are refused before any I/O, saying what is expected.

use crate::support::*;

#[test]
fn bad_values_are_refused_before_any_io_with_exit_2() {
    let w = World::new("config", 300.0);
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 8] = [
        (&["drain-hourly", "--limit", "abc"], &[], "abc"),
        (
            &["drain-hourly"],
            &[("SENDINBLUE_MAILS_PER_HOUR", "lots")],
            "lots",
        ),
        (&["--tz", "Mars/Base", "stats"], &[], "IANA"),
        (&["--now", "yesterday", "stats"], &[], "RFC 3339"),
        (&["--amqp-url", "localhost", "stats"], &[], "amqp://"),
        (&["--brevo-url", "api.brevo.com", "credits"], &[], "http"),
        (&["publish", "-n", "10000001"], &[], "10000001"),
        (&["publish", "-n", "-5"], &[], "-5"),
    ];
    for (args, env, hint) in cases {
        let mut c = w.cmd();
        // An unreachable broker: had the command tried any I/O, it would exit 4.
        c.env("QUEUE_SERVICE_URL", "amqp://guest:guest@127.0.0.1:1/%2f");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.args(args).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(hint), "{args:?}: {err}");
    }
    assert_eq!(w.fake.state().account_calls, 0);
}

#[test]
fn commands_that_call_brevo_need_a_key() {
    let w = World::new("nokey", 300.0);
    let out = w
        .cmd()
        .env_remove("SENDINBLUE_API_KEY")
        .arg("drain-eod")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SENDINBLUE_API_KEY"));
}

#[test]
fn help_lists_the_exit_codes() {
    let out = output_within(bare_cmd().arg("--help"), CHILD_TIMEOUT);
    let text = String::from_utf8_lossy(&out.stdout);
    for code in ["0 ", "2 ", "3 ", "4 ", "5 ", "6 ", "130", "143"] {
        assert!(
            text.contains(&format!("  {code}")),
            "exit code {code} missing from --help"
        );
    }
}

/// Variables whose values are not refused: they are read, never judged.
const NEVER_REFUSED: &[(&str, &str)] = &[
    (
        "ACASO_MAIL_STATE_DIR",
        "any path is taken; one that cannot be used fails when used, naming it",
    ),
    (
        "CREDENTIALS_DIRECTORY",
        "set by systemd; a credential that cannot be read is named",
    ),
];

#[test]
fn a_bad_value_in_any_variable_is_refused_naming_the_variable() {
    let missing = "/nonexistent/acaso-mail-test/file";
    let pg = ("PUSHGATEWAY_URL", "http://127.0.0.1:1");
    let user = ("PUSHGATEWAY_USER", "ops");
    let state_url = ("ACASO_MAIL_STATE_URL", "postgres://acaso@127.0.0.1:1/acaso");
    // (variable, bad value, other variables it needs to be used, variables to unset)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        ("QUEUE_SERVICE_URL", "http://x", vec![], &[]),
        ("RABBITMQ_URL", "localhost", vec![], &["QUEUE_SERVICE_URL"]),
        (
            "QUEUE_SERVICE_URL_FILE",
            missing,
            vec![],
            &["QUEUE_SERVICE_URL"],
        ),
        ("RABBITMQ_URL_FILE", missing, vec![], &["QUEUE_SERVICE_URL"]),
        ("ACASO_MAIL_QUEUE", "amq.typo", vec![], &[]),
        ("SENDINBLUE_URL", "ftp://x", vec![], &[]),
        ("BREVO_URL", "api.brevo.com", vec![], &[]),
        ("SENDINBLUE_API_KEY", "two words", vec![], &[]),
        (
            "BREVO_API_KEY",
            "two words",
            vec![],
            &["SENDINBLUE_API_KEY"],
        ),
        (
            "SENDINBLUE_API_KEY_FILE",
            missing,
            vec![],
            &["SENDINBLUE_API_KEY"],
        ),
        (
            "BREVO_API_KEY_FILE",
            missing,
            vec![],
            &["SENDINBLUE_API_KEY"],
        ),
        ("SENDINBLUE_MAILS_PER_HOUR", "lots", vec![], &[]),
        ("ACASO_MAIL_RESERVE", "some", vec![], &[]),
        ("ACASO_MAIL_CONCURRENCY", "0", vec![], &[]),
        ("ACASO_MAIL_MAX_ATTEMPTS", "many", vec![], &[]),
        ("ACASO_MAIL_TIMEOUT", "ten", vec![], &[]),
        ("ACASO_MAIL_LOCK_WAIT", "-1", vec![], &[]),
        ("ACASO_MAIL_SCAN", "0", vec![], &[]),
        ("ACASO_MAIL_TZ", "Mars/Base", vec![], &[]),
        ("ACASO_MAIL_NOW", "yesterday", vec![], &[]),
        ("ACASO_MAIL_CREDITS_RESET", "9pm", vec![], &[]),
        ("ACASO_MAIL_AMQP_CA_FILE", missing, vec![], &[]),
        ("PUSHGATEWAY_URL", "localhost:9091", vec![], &[]),
        (
            "PUSHGATEWAY_USER",
            "a:b",
            vec![pg, ("PUSHGATEWAY_PASSWORD", "pw")],
            &[],
        ),
        ("PUSHGATEWAY_PASSWORD", "pw", vec![pg], &[]),
        ("PUSHGATEWAY_PASSWORD_FILE", missing, vec![pg, user], &[]),
        ("PUSHGATEWAY_CA_FILE", missing, vec![pg], &[]),
        ("ACASO_MAIL_STATE_URL", "mysql://db/acaso", vec![], &[]),
        (
            "DATABASE_URL",
            "postgres://db/acaso?sslmode=require",
            vec![],
            &[],
        ),
        ("ACASO_MAIL_STATE_URL_FILE", missing, vec![], &[]),
        ("DATABASE_URL_FILE", missing, vec![], &[]),
        ("ACASO_MAIL_STATE_PASSWORD", "pw", vec![], &[]),
        (
            "ACASO_MAIL_STATE_PASSWORD_FILE",
            missing,
            vec![state_url],
            &[],
        ),
        ("ACASO_MAIL_STATE_CA_FILE", missing, vec![state_url], &[]),
        ("ACASO_MAIL_EVENTS_EXCHANGE", "amq.topic", vec![], &[]),
        ("ACASO_MAIL_EVENTS_MAX", "lots", vec![], &[]),
    ];
    // Every variable clap reads is tried (the others are read by acaso-mail itself
    // and listed above; it::config's README test keeps that list whole).
    let cmd = acaso_mail::cli::command();
    for arg in acaso_mail::cli::all_args(&cmd) {
        if let Some(var) = arg.get_env().and_then(|v| v.to_str()) {
            assert!(
                cases.iter().any(|c| c.0 == var) || NEVER_REFUSED.iter().any(|n| n.0 == var),
                "{var} has no bad-value case"
            );
        }
    }
    let state = tempfile::tempdir().expect("tempdir");
    for (var, bad, needs, unset) in &cases {
        let mut c = bare_cmd();
        // An unreachable broker: had the value been taken, the run would exit 4.
        c.env("QUEUE_SERVICE_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
            .env("SENDINBLUE_API_KEY", "xkeysib-test")
            .env("ACASO_MAIL_STATE_DIR", state.path())
            .env("ACASO_MAIL_NOW", "2026-12-03T12:00:00Z");
        for u in *unset {
            c.env_remove(u);
        }
        for (k, v) in needs {
            c.env(k, v);
        }
        // The events' variables are read by `events` only.
        let args: &[&str] = if var.starts_with("ACASO_MAIL_EVENTS_") {
            &["events"]
        } else {
            &["drain-hourly", "--dry-run"]
        };
        c.env(var, bad).args(args);
        let out = output_within(&mut c, CHILD_TIMEOUT);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={bad}: {err}");
        assert!(err.contains(var), "{var}={bad} not named: {err}");
        // Not as clap names a flag ("for '--timeout <SECONDS>'"): it was not typed.
        assert!(!err.contains("for '--"), "{var}={bad}: {err}");
    }
}
