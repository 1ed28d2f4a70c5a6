//! What a newcomer reads when something is off: a position past the end, empty input,
//! an unreachable Brevo, something other than RabbitMQ or a Pushgateway on their ports
//! (issue 21, items 6 and 11).

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
