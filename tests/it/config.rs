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
