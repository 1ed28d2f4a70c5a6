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

/// The Kubernetes example: the crontab's three schedules as CronJobs that never overlap
/// themselves, run as the image's numeric user, read every secret from a file, keep the
/// state in PostgreSQL (no volume claim), and run command lines acaso-mail accepts.
#[test]
fn the_kubernetes_cronjobs_match_the_crontab_and_keep_secrets_in_files() {
    use serde::Deserialize;
    let text = deploy("kubernetes/cronjobs.yaml");
    let docs: Vec<serde_norway::Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| serde_norway::Value::deserialize(d).expect("a YAML document"))
        .collect();
    // The crontab's schedule of each subcommand, in America/Recife.
    let crontab = deploy("crontab");
    assert!(crontab.contains("CRON_TZ=America/Recife"));
    let schedule_of = |sub: &str| {
        crontab
            .lines()
            .find(|l| l.trim_end().ends_with(&format!(" {sub}")) && !l.starts_with('#'))
            .map(|l| l.split_whitespace().take(5).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("{sub} not in deploy/crontab"))
    };
    let help = assert_cmd::Command::cargo_bin("acaso-mail")
        .expect("binary")
        .arg("--help")
        .output()
        .expect("--help");
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    let secret_vars = [
        "SENDINBLUE_API_KEY",
        "BREVO_API_KEY",
        "QUEUE_SERVICE_URL",
        "RABBITMQ_URL",
        "ACASO_MAIL_STATE_URL",
        "DATABASE_URL",
        "ACASO_MAIL_STATE_PASSWORD",
        "PUSHGATEWAY_PASSWORD",
    ];
    let mut subs = Vec::new();
    for doc in &docs {
        assert_eq!(doc["kind"], "CronJob");
        assert_eq!(doc["apiVersion"], "batch/v1");
        let spec = &doc["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Forbid");
        assert_eq!(spec["timeZone"], "America/Recife");
        let pod = &spec["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        let user = &pod["securityContext"]["runAsUser"];
        assert_eq!(
            user.as_u64(),
            Some(10001),
            "numeric, the image's USER: {user:?}"
        );
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let volumes = pod["volumes"].as_sequence().expect("volumes");
        assert!(
            volumes.iter().all(|v| v["persistentVolumeClaim"].is_null()),
            "the state is in PostgreSQL: no volume to keep"
        );
        let containers = pod["containers"].as_sequence().expect("containers");
        assert_eq!(containers.len(), 1);
        let c = &containers[0];
        let args: Vec<String> = c["args"]
            .as_sequence()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("word").to_string())
            .collect();
        let mut line = vec!["acaso-mail".to_string()];
        line.extend(args.iter().cloned());
        acaso_mail::cli::Cli::try_parse_from(&line).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_eq!(
            spec["schedule"].as_str(),
            Some(schedule_of(&args[0]).as_str())
        );
        subs.push(args[0].clone());
        // Mounted paths, and whether each comes from a Secret or a ConfigMap.
        let mounts: Vec<(String, String)> = c["volumeMounts"]
            .as_sequence()
            .expect("mounts")
            .iter()
            .map(|m| {
                let name = m["name"].as_str().expect("name");
                assert_eq!(m["readOnly"], true);
                let vol = volumes
                    .iter()
                    .find(|v| v["name"] == name)
                    .unwrap_or_else(|| panic!("no volume {name}"));
                assert!(vol["secret"].is_mapping() || vol["configMap"].is_mapping());
                (
                    m["mountPath"].as_str().expect("path").to_string(),
                    name.to_string(),
                )
            })
            .collect();
        let mut names = Vec::new();
        for e in c["env"].as_sequence().expect("env") {
            let name = e["name"].as_str().expect("name");
            assert!(help.contains(name), "acaso-mail does not read {name}");
            assert!(
                !secret_vars.contains(&name),
                "{name}: a secret as a variable"
            );
            if let Some(path) = name
                .ends_with("_FILE")
                .then(|| e["value"].as_str())
                .flatten()
            {
                assert!(
                    mounts
                        .iter()
                        .any(|(m, _)| path.starts_with(&format!("{m}/"))),
                    "{name}={path} is on no mounted volume"
                );
            }
            names.push(name.to_string());
        }
        for needed in [
            "ACASO_MAIL_STATE_URL_FILE",
            "SENDINBLUE_API_KEY_FILE",
            "ACASO_MAIL_TZ",
        ] {
            assert!(names.iter().any(|n| n == needed), "{needed} missing");
        }
    }
    subs.sort();
    assert_eq!(subs, ["drain-eod", "drain-hourly", "reprioritize"]);
}
