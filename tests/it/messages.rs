//! What people read: --help, the man pages, and the messages of errors and summaries
//! (issue 13, items 5, 6, 12 and 13).

use std::path::Path;

use crate::support::*;

const NOW: &str = "2026-11-27T12:00:00-03:00";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_shows_defaults_hides_values_and_puts_global_options_apart() {
    let w = World::new("help", 300.0);
    let out = w
        .cmd()
        .env_remove("ACASO_MAIL_QUEUE")
        .env_remove("QUEUE_SERVICE_URL")
        .args(["drain-hourly", "--help"])
        .output()
        .expect("help");
    // Words as clap wraps them: one space between each.
    let help = text(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(help.contains("[default: acaso.mail]"), "{help}");
    assert!(
        help.contains("[default: amqp://guest:guest@127.0.0.1:5672/%2f]"),
        "{help}"
    );
    assert!(help.contains("[env: ACASO_MAIL_QUEUE]"), "{help}");
    for shown in help.split("[env: ").skip(1) {
        let inside = shown.split(']').next().unwrap_or("");
        assert!(
            !inside.contains('='),
            "a variable shown as set: [env: {inside}]"
        );
    }
    let global = help
        .find("Global options:")
        .expect("a Global options heading");
    let limit = help.find("--limit").expect("--limit");
    let queue = help.find("--queue").expect("--queue");
    assert!(limit < global && global < queue, "{help}");
    // Set, a variable's value is not shown either (it may be a secret).
    let out = w
        .cmd()
        .env("PUSHGATEWAY_URL", "http://user:hunter2@127.0.0.1:9091")
        .args(["stats", "--help"])
        .output()
        .expect("help");
    assert!(!text(&out.stdout).contains("hunter2"));
    // With the variables set, publish without arguments: the usage names what is
    // missing, not the options the variables already set.
    let out = w.cmd().arg("publish").output().expect("publish");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.starts_with("acaso-mail: error: "), "{err}");
    let usage = err
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .expect("usage");
    assert!(
        !usage.contains("--queue") && !usage.contains("--state-dir"),
        "{usage}"
    );
    assert!(usage.contains("-n N | --file PATH"), "{usage}");
}

#[test]
fn the_man_pages_list_every_variable_and_name_only_pages_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("man/acaso-mail.1")).expect("man page");
    let page = page.replace("\\-", "-").replace("\\_", "_");
    let mut vars: Vec<String> = [
        "QUEUE_SERVICE_URL",
        "RABBITMQ_URL",
        "QUEUE_SERVICE_URL_FILE",
        "SENDINBLUE_URL",
        "BREVO_URL",
        "SENDINBLUE_API_KEY",
        "BREVO_API_KEY",
        "SENDINBLUE_API_KEY_FILE",
        "BREVO_API_KEY_FILE",
        "SENDINBLUE_MAILS_PER_HOUR",
        "PUSHGATEWAY_PASSWORD",
        "PUSHGATEWAY_PASSWORD_FILE",
        "CREDENTIALS_DIRECTORY",
        "XDG_STATE_HOME",
        "NO_COLOR",
    ]
    .map(String::from)
    .to_vec();
    // And every variable clap knows, on any subcommand.
    let cmd = acaso_mail::cli::command();
    let mut stack = vec![cmd];
    while let Some(c) = stack.pop() {
        for a in c.get_arguments() {
            if let Some(env) = a.get_env() {
                vars.push(env.to_string_lossy().into_owned());
            }
        }
        stack.extend(c.get_subcommands().cloned());
    }
    for var in &vars {
        assert!(page.contains(var.as_str()), "man/acaso-mail.1 lacks {var}");
    }
    for entry in std::fs::read_dir(root.join("man")).expect("man") {
        let path = entry.expect("entry").path();
        let body = std::fs::read_to_string(&path).expect("page");
        for (i, _) in body.match_indices("acaso\\-mail\\-") {
            let name: String = body[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '\\' || *c == '-')
                .collect::<String>()
                .replace("\\-", "-");
            let name = name.trim_end_matches('-');
            if name == "acaso-mail-run" {
                continue;
            }
            assert!(
                root.join(format!("man/{name}.1")).exists(),
                "{} points to {name}(1), which does not exist",
                path.display()
            );
        }
    }
}

#[test]
fn error_messages_say_what_happened_and_what_to_do() {
    let w = World::new("messages", 300.0);
    // A refused key: the status once.
    let out = w
        .cmd()
        .env("SENDINBLUE_API_KEY", "xkeysib-wrong")
        .arg("credits")
        .output()
        .expect("credits");
    assert_eq!(out.status.code(), Some(5));
    let err = text(&out.stderr);
    assert!(
        err.contains("Brevo refused the API key or its account (401 from"),
        "{err}"
    );
    assert!(!err.contains("401 401"), "{err}");
    // A Pushgateway URL without scheme: an example of a Pushgateway URL.
    let out = w
        .cmd()
        .args(["--pushgateway", "127.0.0.1:19091", "stats"])
        .output()
        .expect("stats");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("such as http://127.0.0.1:9091"), "{err}");
    assert!(!err.contains("8025"), "{err}");
    // The broker answered, but refused: not "is it running?".
    for (url, hint) in [
        ("amqp://guest:wrong@127.0.0.1:5672/%2f", "user or password"),
        ("amqp://guest:guest@127.0.0.1:5672/no-such-vhost", "vhost"),
        (
            "amqp://guest:guest@no-such-host.invalid:5672/%2f",
            "does not resolve",
        ),
    ] {
        let out = w
            .cmd()
            .env("QUEUE_SERVICE_URL", url)
            .arg("stats")
            .output()
            .expect("stats");
        assert_eq!(out.status.code(), Some(4), "{url}");
        let err = text(&out.stderr);
        assert!(
            err.contains(hint) && !err.contains("is it running"),
            "{url}: {err}"
        );
        assert!(!err.contains("wrong"), "password leaked: {err}");
    }
    // A wrong variable is named as the variable, not as a flag never typed.
    let out = w
        .cmd()
        .env("SENDINBLUE_MAILS_PER_HOUR", "abc")
        .arg("drain-hourly")
        .output()
        .expect("drain");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("acaso-mail: error: invalid SENDINBLUE_MAILS_PER_HOUR"),
        "{err}"
    );
    assert!(!err.contains("--limit'"), "{err}");
    // Usage errors from the command line read like every other error.
    let out = w.cmd().args(["peek", "--bogus"]).output().expect("peek");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("acaso-mail: error: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn summaries_count_expired_mail_as_parked_and_dry_runs_say_why_beyond_the_limit() {
    let w = World::new("summary-words", 300.0);
    w.publish(
        &[
            job("late@example.org", 3, "2026-11-27T13:00:00-03:00"),
            job("a@example.org", 3, "2026-11-27T22:00:00-03:00"),
            job("b@example.org", 3, "2026-11-27T22:00:00-03:00"),
            job("c@example.org", 3, "2026-11-27T22:00:00-03:00"),
        ],
        NOW,
    );
    let later = "2026-11-27T14:00:00-03:00";
    let out = w
        .cmd()
        .args(["--now", later, "drain-hourly", "--limit", "1", "--dry-run"])
        .output()
        .expect("dry run");
    let dry = text(&out.stdout);
    assert!(
        dry.contains("would send 3 of a budget of 1 (2 beyond the budget: mail due today"),
        "{dry}"
    );
    let out = w
        .cmd()
        .args(["--now", later, "drain-hourly", "--limit", "1"])
        .output()
        .expect("drain");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    assert!(
        summary.contains("1 parked (1 of them expired)"),
        "{summary}"
    );
    let stats = w.json(later, &["stats"]);
    assert_eq!(stats["today"]["parked"], 1, "{stats}");
}
