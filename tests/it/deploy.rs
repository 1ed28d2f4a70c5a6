//! The shipped schedules: systemd units verified by systemd-analyze, and every command
//! they and the crontab run parsed by acaso-mail's own command line.

use std::path::Path;

use clap::Parser;

use crate::support::{CHILD_TIMEOUT, output_within, require_tool};

fn deploy(file: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .join(file),
    )
    .expect("deploy file")
}

/// The units' instance names: the subcommands the timers start.
fn instances() -> Vec<String> {
    ["drain-hourly", "drain-eod", "reprioritize", "events"]
        .iter()
        .map(|t| {
            let timer = deploy(&format!("systemd/acaso-mail-{t}.timer"));
            let unit = timer
                .lines()
                .find_map(|l| l.strip_prefix("Unit="))
                .expect("Unit= line");
            assert_eq!(unit, format!("acaso-mail@{t}.service"));
            t.to_string()
        })
        .collect()
}

#[test]
fn every_scheduled_command_is_a_valid_acaso_mail_command_line() {
    let service = deploy("systemd/acaso-mail@.service");
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    for sub in instances() {
        let line = exec.replace("%i", &sub);
        let args: Vec<&str> = line.split_whitespace().collect();
        acaso_mail::cli::Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    let crontab = deploy("crontab");
    let jobs: Vec<&str> = crontab
        .lines()
        .filter(|l| l.contains("/usr/local/bin/acaso-mail"))
        .collect();
    assert_eq!(jobs.len(), 4);
    for job in jobs {
        let cmd = job
            .split("/usr/local/bin/acaso-mail-run")
            .nth(1)
            .expect("command");
        let mut args = vec!["acaso-mail"];
        args.extend(cmd.split_whitespace());
        acaso_mail::cli::Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{job}: {e}"));
    }
    // The env file names only variables acaso-mail reads.
    for line in deploy("acaso-mail.env")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let var = line.split('=').next().expect("var");
        assert!(
            [
                "SENDINBLUE_API_KEY",
                "QUEUE_SERVICE_URL",
                "ACASO_MAIL_QUEUE",
                "SENDINBLUE_URL",
                "SENDINBLUE_MAILS_PER_HOUR",
                "ACASO_MAIL_TZ",
                "ACASO_MAIL_STATE_DIR",
            ]
            .contains(&var),
            "unknown variable {var}"
        );
    }
}

#[test]
fn systemd_analyze_verifies_the_units() {
    require_tool("systemd-analyze", "systemd");
    let dir = tempfile::tempdir().expect("tmp");
    let bin = assert_cmd::cargo::cargo_bin("acaso-mail");
    let env = dir.path().join("acaso-mail.env");
    std::fs::write(&env, deploy("acaso-mail.env")).expect("env");
    let service = deploy("systemd/acaso-mail@.service")
        .replace("/usr/local/bin/acaso-mail", &bin.display().to_string())
        .replace("/etc/acaso-mail/acaso-mail.env", &env.display().to_string());
    let mut units = Vec::new();
    for sub in instances() {
        let name = format!("acaso-mail@{sub}.service");
        std::fs::write(dir.path().join(&name), &service).expect("unit");
        let timer = format!("acaso-mail-{sub}.timer");
        std::fs::write(dir.path().join(&timer), deploy(&format!("systemd/{timer}")))
            .expect("timer");
        units.push(name);
        units.push(timer);
    }
    let out = output_within(
        std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg("--man=no")
            .args(&units)
            .current_dir(dir.path()),
        CHILD_TIMEOUT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {err}"
    );
    // And the calendars mean what the README says.
    for (timer, first) in [
        ("drain-hourly", "00..22:15:00"),
        ("drain-eod", "23:05:00"),
        ("reprioritize", "00:05:00"),
        ("events", "*:45:00"),
    ] {
        let t = deploy(&format!("systemd/acaso-mail-{timer}.timer"));
        let cal = t
            .lines()
            .find_map(|l| l.strip_prefix("OnCalendar="))
            .expect("OnCalendar");
        assert!(
            cal.contains(first) && cal.ends_with("America/Recife"),
            "{timer}: {cal}"
        );
        let out = output_within(
            std::process::Command::new("systemd-analyze").args(["calendar", cal]),
            CHILD_TIMEOUT,
        );
        assert!(
            out.status.success(),
            "{cal}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
