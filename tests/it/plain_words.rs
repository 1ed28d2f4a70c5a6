//! What a newcomer reads when something is off: a position past the end, empty input,
//! an unreachable Brevo, something other than RabbitMQ or a Pushgateway on their ports
//! (issue 21, items 6 and 11).

use std::io::{Read, Write};
use std::net::TcpListener;

use crate::it::publish::NOW;
use crate::support::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_position_that_names_no_parked_mail_exits_2_naming_the_range() {
    let w = World::new("index-range", 300.0);
    let (_, parking) = one_expired_mail(&w);
    w.json(NOW, &["drain-eod"]);
    assert_eq!(w.ready(&parking), 1);
    for (index, said) in [
        ("2", "positions 1 to 1"),
        ("1,5", "positions 1 to 1"),
        ("0", "1 or more"),
    ] {
        for action in ["replay", "purge"] {
            let out = w
                .cmd()
                .args(["dead-letters", action, "--index", index])
                .output()
                .expect("run");
            let err = text(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{action} --index {index}: {err}"
            );
            assert!(err.contains(said), "{action} --index {index}: {err}");
        }
    }
    // Nothing was replayed or purged on the way.
    assert_eq!((w.ready(&parking), w.ready(&w.queue)), (1, 0));
}

#[test]
fn empty_standard_input_is_called_standard_input() {
    let w = World::new("publish-empty", 300.0);
    let out = w
        .cmd()
        .args(["--now", NOW, "publish", "--file", "-"])
        .write_stdin("\n\n")
        .output()
        .expect("run");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("standard input: no mail jobs"), "{err}");
    assert!(!err.contains("-: "), "{err}");
}

#[test]
fn an_unreachable_brevo_says_what_to_check() {
    let w = World::new("brevo-unreachable", 300.0);
    // A port nothing listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = w
        .cmd()
        .env("SENDINBLUE_URL", format!("http://127.0.0.1:{port}/v3"))
        .arg("credits")
        .output()
        .expect("run");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("cannot reach Brevo at http://127.0.0.1:"),
        "{err}"
    );
    for hint in ["SENDINBLUE_URL", "network"] {
        assert!(err.contains(hint), "no {hint:?} in: {err}");
    }
}

/// A server on a free port of 127.0.0.1 that answers every connection with `answer`
/// (after reading what the client sent first) and keeps it open, or never answers when
/// `answer` is empty: something that is not what the client expects. Its thread ends
/// with the test process.
fn impostor(answer: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut conn in listener.incoming().flatten() {
            if !answer.is_empty() {
                let mut first = [0u8; 64];
                let _ = conn.read(&mut first);
                let _ = conn.write_all(answer);
            }
            held.push(conn);
        }
    });
    port
}

const HTTP_ANSWER: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nBad Request";

#[test]
fn an_http_server_on_the_amqp_port_is_named_as_not_rabbitmq() {
    let w = World::new("not-amqp", 300.0);
    for (answer, said) in [
        (HTTP_ANSWER, "but it does not speak AMQP 0-9-1"),
        (
            &b""[..],
            "accepted the connection but sent no AMQP answer within 2s",
        ),
    ] {
        let port = impostor(answer);
        let out = w
            .cmd()
            .env(
                "QUEUE_SERVICE_URL",
                format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            )
            .env("ACASO_MAIL_TIMEOUT", "2")
            .arg("stats")
            .output()
            .expect("run");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{err}");
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        assert!(err.contains(said), "{err}");
        assert!(
            err.contains("5672 for amqp://"),
            "no port to check in: {err}"
        );
        assert!(!err.contains("Parsing Error"), "{err}");
    }
}

#[test]
fn a_pushgateway_url_that_is_not_a_pushgateway_is_named_as_such() {
    let w = World::new("not-pushgateway", 300.0);
    w.declare_queues();
    for (answer, said) in [
        // What RabbitMQ answers a client that does not speak AMQP.
        (&b"AMQP\x00\x00\x09\x01"[..], "but not in HTTP"),
        (&b""[..], "no HTTP answer from 127.0.0.1:"),
    ] {
        let port = impostor(answer);
        let out = w
            .cmd()
            .env("PUSHGATEWAY_URL", format!("http://127.0.0.1:{port}"))
            .env("ACASO_MAIL_TIMEOUT", "2")
            .arg("stats")
            .output()
            .expect("run");
        let err = text(&out.stderr);
        // A push that fails only warns: the run's own outcome stands.
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(
            err.contains("metrics not pushed") && err.contains(said),
            "{err}"
        );
        assert!(err.contains("PUSHGATEWAY_URL names a Pushgateway"), "{err}");
    }
}

/// Every command, as the words that name it (`["dead-letters", "replay"]`).
fn command_paths() -> Vec<Vec<String>> {
    fn walk(c: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        for s in c.get_subcommands() {
            let mut p = path.clone();
            p.push(s.get_name().to_string());
            walk(s, p.clone(), out);
            out.push(p);
        }
    }
    let mut out = vec![Vec::new()];
    walk(&acaso_mail::cli::command(), Vec::new(), &mut out);
    out
}

#[test]
fn short_help_is_a_commands_own_options_one_line_each_and_long_help_everything() {
    for path in command_paths() {
        let short = output_within(bare_cmd().args(&path).arg("-h"), CHILD_TIMEOUT);
        let short = text(&short.stdout);
        let lines: Vec<&str> = short.lines().collect();
        assert!(
            lines.len() <= 25,
            "{path:?} -h is {} lines:\n{short}",
            lines.len()
        );
        assert!(
            lines
                .last()
                .is_some_and(|l| l.ends_with("acaso-mail --help")),
            "{path:?} -h does not end by pointing at the global options:\n{short}"
        );
        assert!(
            !lines
                .iter()
                .any(|l| l.trim_start().starts_with("--amqp-url")),
            "{path:?} -h lists global options:\n{short}"
        );
        let options = short
            .split("\nOptions:\n")
            .nth(1)
            .and_then(|s| s.split("\n\n").next())
            .unwrap_or_else(|| panic!("{path:?} -h has no options:\n{short}"));
        for line in options.lines() {
            assert!(
                line.starts_with("  -") || line.starts_with("      --"),
                "{path:?} -h: an option over more than one line: {line:?}\n{short}"
            );
        }
        let long = output_within(bare_cmd().args(&path).arg("--help"), CHILD_TIMEOUT);
        let long = text(&long.stdout);
        for needle in [
            "--amqp-url",
            "[env: ACASO_MAIL_QUEUE]",
            "Exit status:",
            "143",
        ] {
            assert!(
                long.contains(needle),
                "{path:?} --help lacks {needle}:\n{long}"
            );
        }
    }
}

#[test]
fn the_usage_line_does_not_show_options_set_by_variables_as_required() {
    let state = tempfile::tempdir().expect("tempdir");
    for args in [
        &["dead-letters", "replay"][..],
        &["publish"],
        &["dead-letters", "purge"],
        &[],
    ] {
        let out = output_within(
            bare_cmd()
                .env("ACASO_MAIL_QUEUE", "acaso.mail")
                .env("ACASO_MAIL_STATE_DIR", state.path())
                .env("ACASO_MAIL_TIMEOUT", "5")
                .args(args),
            CHILD_TIMEOUT,
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let usage = err
            .lines()
            .find(|l| l.starts_with("Usage: "))
            .unwrap_or_else(|| panic!("{args:?}: no usage line in {err}"));
        for shown in ["--queue", "--state-dir", "--timeout"] {
            assert!(!usage.contains(shown), "{args:?}: {usage}");
        }
    }
}
