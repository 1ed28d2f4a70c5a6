//! The state in a PostgreSQL that takes only TLS and a password (issue 26), through the
//! real binary (`stats`, `doctor`): `--state-url` with `--state-password-file` and
//! `--state-ca-file`, the same from the variables (the password and its `_FILE`) and
//! from systemd credentials, and the refusals (an unrelated CA, a wrong password) as
//! exit 4 that names the masked URL and never the password. The unit tests in
//! `state::tests` cover the other refusals (a wrong name, clear text, no password).
//! These tests keep their state in PostgreSQL whatever the suite's mode.

use std::time::Duration;

use crate::it::publish::NOW;
use crate::support::*;

/// A world with its state nowhere yet (each run says where), its queues declared, and a
/// database of its own on the tests' TLS-and-password cluster: that database's URL (no
/// password, no TLS options) and the cluster's CAs.
fn secure_world(name: &str) -> (World, String, &'static pg::Secure) {
    let mut w = World::new(name, 300.0);
    w.state_url = None;
    w.declare_queues();
    let cluster = pg::shared_secure();
    let secure = cluster.secure.as_ref().expect("a secure cluster");
    (w, cluster.new_database(), secure)
}

/// Runs `acaso-mail --now NOW --json stats` with these extra arguments and variables.
fn stats(w: &World, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = w.std_cmd();
    c.args(["--now", NOW, "--json"]).args(args).arg("stats");
    for (k, v) in env {
        c.env(k, v);
    }
    output_within(&mut c, Duration::from_secs(60))
}

/// One way of giving the state settings: its name, the arguments, the variables.
type Run<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);

/// `--state-url URL --state-password-file FILE --state-ca-file CA`.
fn state_flags<'a>(url: &'a str, file: &'a str, ca: &'a str) -> Vec<&'a str> {
    vec![
        "--state-url",
        url,
        "--state-password-file",
        file,
        "--state-ca-file",
        ca,
    ]
}

/// Neither output holds the password, nor any part of a wrong one.
fn no_password_in(out: &std::process::Output) {
    for text in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(text);
        assert!(
            !text.contains("s3cr3t") && !text.contains("xyzzy"),
            "{text}"
        );
    }
}

#[test]
fn stats_and_doctor_reach_the_state_over_verified_tls_with_the_password_from_each_source() {
    let (w, url, secure) = secure_world("state-tls");
    let dir = tempfile::tempdir().expect("tmp");
    let ca = secure.ca.display().to_string();
    let line = format!("{}\n", pg::SECURE_PASSWORD);
    let file = pg::secret_file(dir.path(), "password", &line);
    let file = file.display().to_string();
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).expect("mkdir");
    pg::secret_file(&creds, "state-password", pg::SECURE_PASSWORD);
    pg::secret_file(&creds, "state-url", &url);
    let creds = creds.display().to_string();
    let verify = format!("{url}?sslmode=verify-full");
    // The state is named by the URL as given, its query kept (the password masked).
    let runs: [Run<'_>; 4] = [
        ("flags", state_flags(&verify, &file, &ca), vec![]),
        (
            "variables",
            vec![],
            vec![
                ("ACASO_MAIL_STATE_URL", &url),
                ("ACASO_MAIL_STATE_PASSWORD", pg::SECURE_PASSWORD),
                ("ACASO_MAIL_STATE_CA_FILE", &ca),
            ],
        ),
        (
            "the password file's variable",
            vec![],
            vec![
                ("ACASO_MAIL_STATE_URL", &url),
                ("ACASO_MAIL_STATE_PASSWORD_FILE", &file),
                ("ACASO_MAIL_STATE_CA_FILE", &ca),
            ],
        ),
        (
            "credentials",
            vec![],
            vec![
                ("CREDENTIALS_DIRECTORY", &creds),
                ("ACASO_MAIL_STATE_CA_FILE", &ca),
            ],
        ),
    ];
    for (how, args, env) in runs {
        let out = stats(&w, &args, &env);
        assert!(
            out.status.success(),
            "{how}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        no_password_in(&out);
        let s = stdout_json(&out);
        let given = if how == "flags" { &verify } else { &url };
        assert_eq!(s["state"], format!("PostgreSQL at {given}"), "{how}: {s}");
    }
    // doctor reads the run lock over the same connection settings.
    let mut c = w.std_cmd();
    c.args(["--now", NOW, "--json"])
        .args(state_flags(&verify, &file, &ca))
        .arg("doctor");
    let out = output_within(&mut c, Duration::from_secs(60));
    no_password_in(&out);
    let doc = stdout_json(&out);
    assert_lock_ok_at(&doc, &format!("PostgreSQL at {verify}"));
    // Nothing of the state was written to the state directory.
    let files: Vec<_> = std::fs::read_dir(w.state.path())
        .expect("dir")
        .flatten()
        .collect();
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn an_unrelated_ca_or_a_wrong_password_is_exit_4_naming_the_masked_url_never_the_password() {
    let (w, url, secure) = secure_world("state-tls-refused");
    let dir = tempfile::tempdir().expect("tmp");
    let right = pg::secret_file(dir.path(), "right", pg::SECURE_PASSWORD);
    let wrong = pg::secret_file(dir.path(), "wrong", "not-the-xyzzy-password");
    // The refusal says what to do about the CA, naming the file the user set.
    let unsigned = format!(
        "not signed by the CA in {}: set --state-ca-file / ACASO_MAIL_STATE_CA_FILE to the CA that signed it",
        secure.other_ca.display()
    );
    let cases = [
        (
            "an unrelated CA",
            &right,
            &secure.other_ca,
            unsigned.as_str(),
        ),
        (
            "a wrong password",
            &wrong,
            &secure.ca,
            "password authentication failed",
        ),
    ];
    for (case, password, ca, why) in cases {
        let (password, ca) = (password.display().to_string(), ca.display().to_string());
        let out = stats(&w, &state_flags(&url, &password, &ca), &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{case}: {err}");
        assert!(err.contains(why), "{case}: {err}");
        assert!(
            err.contains(&format!("PostgreSQL at {url}")),
            "{case}: {err}"
        );
        no_password_in(&out);
    }
}
