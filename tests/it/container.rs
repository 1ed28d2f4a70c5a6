//! The container world: the Dockerfile, acaso-mail's services in the compose stack, the
//! compose crontabs and Dokku's `app.json`, checked as far as a machine without a Docker
//! engine allows. Every scheduled command is parsed by acaso-mail's own command line and
//! run by the real binary with the environment the stack gives it (host names swapped
//! for this machine's RabbitMQ and an in-process fake Brevo). The image itself is built
//! and run by `scripts/check-image`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chrono::{Duration, Offset, TimeZone, Utc};
use clap::Parser;
use serde_norway::Value;

use crate::support::World;

const SUBCOMMANDS: [&str; 4] = ["reprioritize", "drain-hourly", "drain-eod", "events"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} does not parse: {e}"))
}

/// The values a cron field matches: `*`, `N`, `A-B`, `*/S`, `A-B/S`, and lists of them.
fn expand(field: &str, max: u32) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().expect("step")),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (0, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                a.parse().expect("range start"),
                b.parse().expect("range end"),
            )
        } else {
            let n: u32 = range
                .parse()
                .unwrap_or_else(|_| panic!("cron field {field}"));
            (n, if part.contains('/') { max } else { n })
        };
        assert!(lo <= hi && hi <= max, "cron field {field} out of range");
        out.extend((lo..=hi).step_by(step as usize));
    }
    out
}

/// A crontab line: (minutes, hours, the rest of the fields, the command's words).
type Job = (BTreeSet<u32>, BTreeSet<u32>, Vec<String>, Vec<String>);

fn cron_job(schedule: &str, command: &str) -> Job {
    let f: Vec<&str> = schedule.split_whitespace().collect();
    assert_eq!(f.len(), 5, "schedule {schedule:?}: five fields");
    (
        expand(f[0], 59),
        expand(f[1], 23),
        f[2..].iter().map(|s| s.to_string()).collect(),
        command.split_whitespace().map(String::from).collect(),
    )
}

/// The subcommand a command line runs, as acaso-mail's own parser reads it.
fn subcommand(args: &[String]) -> String {
    let mut argv = vec!["acaso-mail".to_string()];
    argv.extend(args.iter().cloned());
    acaso_mail::cli::Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("{args:?} is not an acaso-mail command line: {e}"));
    args.iter()
        .find(|a| !a.starts_with('-'))
        .cloned()
        .expect("a subcommand")
}

/// The schedule the systemd timers and deploy/crontab give, per subcommand, in Acaso's
/// local time: (minutes, hours).
fn local_schedule() -> BTreeMap<String, (BTreeSet<u32>, BTreeSet<u32>)> {
    let crontab = read("deploy/crontab");
    assert!(crontab.contains("CRON_TZ=America/Recife"));
    let mut out = BTreeMap::new();
    for line in crontab
        .lines()
        .filter(|l| l.contains("/usr/local/bin/acaso-mail"))
    {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let cmd = line
            .split("/usr/local/bin/acaso-mail-run")
            .nth(1)
            .expect("command");
        let (m, h, rest, args) = cron_job(&fields[..5].join(" "), cmd);
        assert_eq!(rest, ["*", "*", "*"]);
        out.insert(subcommand(&args), (m, h));
    }
    assert_eq!(
        out.keys().collect::<BTreeSet<_>>(),
        SUBCOMMANDS
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
            .iter()
            .collect()
    );
    // The systemd timers agree (deploy.rs checks them in full).
    assert_eq!(
        out["drain-hourly"],
        ([15].into(), (0..=22).collect::<BTreeSet<_>>())
    );
    assert_eq!(out["drain-eod"], ([5].into(), [23].into()));
    assert_eq!(out["reprioritize"], ([5].into(), [0].into()));
    assert_eq!(
        out["events"],
        ([45].into(), (0..=23).collect::<BTreeSet<_>>())
    );
    out
}

/// Lines of a crontab made for supercronic: (schedule, command) with `acaso-mail` first.
fn crontab_jobs(path: &str) -> Vec<Job> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            assert!(fields.len() > 6, "{path}: {l}");
            assert_eq!(fields[5], "acaso-mail", "{path}: {l}: runs something else");
            cron_job(&fields[..5].join(" "), &fields[6..].join(" "))
        })
        .collect()
}

/// Runs `args` with the real binary in a world of its own, with `env` applied on top
/// (its service URLs already mapped to this machine), its queues made first as a deploy's
/// set-up makes them, and asserts it succeeded.
fn run_as_scheduled(w: &World, env: &BTreeMap<String, String>, args: &[String]) {
    // The deploy's set-up made the queues (only publish creates them).
    w.declare_queues();
    let mut cmd = w.cmd();
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Never the stack's queue, state directory or Pushgateway: this test's own.
    cmd.env("ACASO_MAIL_QUEUE", &w.queue)
        .env("ACASO_MAIL_STATE_DIR", w.state.path())
        .env("SENDINBLUE_URL", &w.fake.url)
        .env("QUEUE_SERVICE_URL", crate::support::AMQP)
        .env_remove("PUSHGATEWAY_URL");
    // The stack's PostgreSQL: a database of this test's own on the private cluster.
    if env.contains_key("ACASO_MAIL_STATE_URL") {
        cmd.env(
            "ACASO_MAIL_STATE_URL",
            crate::support::pg::shared().new_database(),
        );
    }
    let out = cmd.args(args).output().expect("run");
    assert!(
        out.status.success(),
        "{args:?} with the scheduled environment: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_release_profile_strips_the_binary_and_profiling_keeps_line_tables() {
    let cargo = read("Cargo.toml");
    let section = |name: &str| -> BTreeMap<String, String> {
        let start = cargo
            .find(&format!("[{name}]\n"))
            .unwrap_or_else(|| panic!("no [{name}]"));
        cargo[start..]
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with('['))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
            .collect()
    };
    let release = section("profile.release");
    assert_eq!(release.get("strip").map(String::as_str), Some("true"));
    assert_eq!(release.get("debug").map(String::as_str), Some("false"));
    let profiling = section("profile.profiling");
    assert_eq!(
        profiling.get("inherits").map(String::as_str),
        Some("release")
    );
    assert_eq!(
        profiling.get("debug").map(String::as_str),
        Some("line-tables-only")
    );
    assert_eq!(profiling.get("strip").map(String::as_str), Some("false"));
}

/// Dockerfile stages: name -> instructions (keyword, rest), continuation lines joined.
fn dockerfile() -> BTreeMap<String, Vec<(String, String)>> {
    let text = read("Dockerfile").replace("\\\n", " ");
    let mut stages: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = String::from("(global)");
    let mut unnamed = 0;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (kw, rest) = line.split_once(' ').unwrap_or((line, ""));
        let kw = kw.to_ascii_uppercase();
        if kw == "FROM" {
            current = match rest.split_whitespace().collect::<Vec<_>>()[..] {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                _ => {
                    unnamed += 1;
                    format!("(final {unnamed})")
                }
            };
        }
        stages
            .entry(current.clone())
            .or_default()
            .push((kw, rest.trim().to_string()));
    }
    stages
}

fn instruction<'a>(stage: &'a [(String, String)], kw: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|(k, _)| k == kw)
        .map(|(_, r)| r.as_str())
        .collect()
}

#[test]
fn the_dockerfile_makes_a_numeric_non_root_cli_image_with_a_private_state_volume() {
    let stages = dockerfile();
    for s in [
        "builder",
        "prebuilt",
        "binaries",
        "runtime",
        "fake-brevo",
        "supercronic",
        "cron",
    ] {
        assert!(stages.contains_key(s), "no stage {s}: {:?}", stages.keys());
    }
    // The default target is the runtime image.
    let last = stages
        .iter()
        .filter(|(n, _)| n.starts_with("(final"))
        .map(|(_, s)| s)
        .next_back()
        .expect("a final stage");
    assert_eq!(last[0], ("FROM".into(), "runtime".into()));

    let runtime = &stages["runtime"];
    assert!(instruction(runtime, "FROM")[0].starts_with("debian:${DEBIAN}-slim"));
    assert_eq!(
        instruction(runtime, "ENTRYPOINT"),
        [r#"["/usr/local/bin/acaso-mail"]"#]
    );
    // Numeric ids (Kubernetes' runAsNonRoot, and builders that would look a name up
    // in the build host's passwd), not root; the cron stage as well.
    assert_eq!(instruction(runtime, "USER"), ["10001:10001"]);
    assert_eq!(
        instruction(&stages["cron"], "USER"),
        ["root", "10001:10001"]
    );
    // The state directory is the user's and private (0700): acaso-mail warns on every
    // run about one open to other users.
    let run = instruction(runtime, "RUN").join(" ");
    assert!(
        run.contains("install -d -o 10001 -g 10001 -m 0700 /var/lib/acaso-mail"),
        "{run}"
    );
    assert!(
        run.contains("groupadd --gid 10001 ") && run.contains("useradd --uid 10001 --gid 10001 ")
    );
    let volume = instruction(runtime, "VOLUME");
    let env = instruction(runtime, "ENV");
    assert_eq!(volume, ["/var/lib/acaso-mail"]);
    assert!(env.contains(&"ACASO_MAIL_STATE_DIR=/var/lib/acaso-mail"));
    let copies = instruction(runtime, "COPY").join("\n");
    assert!(copies.contains("/out/acaso-mail /usr/local/bin/acaso-mail"));
    // The slim base has neither man nor bash-completion: man pages and completions would
    // be dead weight, so the image ships neither (`--help` is there).
    for unusable in ["man/", "completions/"] {
        assert!(!copies.contains(unusable), "runtime copies {unusable}");
    }
    // The builder builds the binaries the later stages copy, with the stripping profile.
    let build = instruction(&stages["builder"], "RUN").join(" ");
    assert!(build.contains("cargo build --release --locked --bin acaso-mail --example fake-brevo"));
    assert_eq!(
        instruction(&stages["fake-brevo"], "ENTRYPOINT"),
        [r#"["/usr/local/bin/fake-brevo"]"#]
    );

    // Every file the Dockerfile copies from the context exists and passes .dockerignore
    // (an allow-list: `*`, then `!path` for each thing the build needs).
    let allowed: Vec<String> = read(".dockerignore")
        .lines()
        .filter_map(|l| l.strip_prefix('!'))
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    for (name, stage) in &stages {
        for copy in instruction(stage, "COPY") {
            if copy.starts_with("--from") {
                continue;
            }
            let words: Vec<&str> = copy.split_whitespace().collect();
            for src in &words[..words.len() - 1] {
                let src = src.trim_end_matches('/');
                assert!(
                    allowed
                        .iter()
                        .any(|a| src == a || src.starts_with(&format!("{a}/"))),
                    "{name}: COPY {src} is excluded by .dockerignore"
                );
                if name == "prebuilt" {
                    continue; // made by scripts/check-image
                }
                if let Some(dir) = src.strip_suffix("/*.crontab") {
                    assert!(
                        std::fs::read_dir(root().join(dir)).expect("dir").any(|e| e
                            .expect("entry")
                            .path()
                            .extension()
                            == Some("crontab".as_ref())),
                        "no {src}"
                    );
                } else {
                    assert!(root().join(src).exists(), "{name}: COPY {src}: missing");
                }
            }
        }
    }
}

#[test]
fn the_compose_stack_runs_acaso_mail_on_its_schedule_with_settings_it_reads() {
    let compose = yaml("docker-compose.yaml");
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for s in [
        "rabbitmq",
        "brevo",
        "acaso-mail",
        "acaso-mail-cron",
        "pushgateway",
        "prometheus",
        "alertmanager",
        "grafana",
    ] {
        assert!(names.contains(s), "no service {s}");
    }
    let svc = |n: &str| &compose["services"][n];
    let stages = dockerfile();
    for (s, target) in [
        ("acaso-mail", "runtime"),
        ("acaso-mail-cron", "cron"),
        ("brevo", "fake-brevo"),
    ] {
        assert_eq!(svc(s)["build"]["context"], Value::from("."), "{s}");
        assert_eq!(svc(s)["build"]["target"], Value::from(target), "{s}");
        assert!(stages.contains_key(target));
        // Dependencies name services of the stack.
        for dep in svc(s)["depends_on"]
            .as_mapping()
            .into_iter()
            .flat_map(|m| m.keys())
        {
            assert!(
                names.contains(dep.as_str().expect("name")),
                "{s} -> {dep:?}"
            );
        }
    }
    // `up` starts the schedule, not a stray one-off run; `run` starts acaso-mail.
    assert_eq!(svc("acaso-mail")["profiles"][0], Value::from("cli"));
    assert!(svc("acaso-mail-cron")["profiles"].is_null());
    assert_eq!(
        svc("acaso-mail-cron")["restart"],
        Value::from("unless-stopped")
    );
    // acaso-mail waits for a healthy broker, so the health check must exist.
    assert_eq!(
        svc("acaso-mail")["depends_on"]["rabbitmq"]["condition"],
        Value::from("service_healthy")
    );
    assert!(svc("rabbitmq")["healthcheck"]["test"].is_sequence());

    // The schedule starts once the set-up made the queues (only publish creates them).
    assert_eq!(
        svc("acaso-mail-cron")["depends_on"]["acaso-mail-setup"]["condition"],
        Value::from("service_completed_successfully")
    );
    let setup: Vec<String> = svc("acaso-mail-setup")["command"]
        .as_sequence()
        .expect("command")
        .iter()
        .map(|v| v.as_str().expect("word").to_string())
        .collect();
    assert_eq!(subcommand(&setup), "publish");
    assert_eq!(setup, ["publish", "-n", "0"]);
    assert_eq!(
        svc("acaso-mail-setup")["build"]["target"],
        Value::from("runtime")
    );

    // They share one state in the stack's PostgreSQL (no state volume: any container
    // may run any run) and one Pushgateway instance label.
    for s in [
        "acaso-mail",
        "acaso-mail-setup",
        "acaso-mail-doctor",
        "acaso-mail-cron",
    ] {
        assert!(svc(s)["volumes"].is_null(), "{s} needs no state volume");
        assert_eq!(
            svc(s)["depends_on"]["postgres"]["condition"],
            Value::from("service_healthy"),
            "{s}"
        );
        assert_eq!(svc(s)["hostname"], Value::from("acaso-mail"), "{s}");
        assert_eq!(svc(s)["environment"], svc("acaso-mail")["environment"]);
    }
    assert!(svc("postgres")["healthcheck"]["test"].is_sequence());
    assert!(
        !compose["volumes"]
            .as_mapping()
            .expect("volumes")
            .contains_key("acaso-mail-state")
    );

    // The environment: only variables acaso-mail reads, URLs naming the stack's services
    // on the ports they listen on.
    let env: BTreeMap<String, String> = svc("acaso-mail")["environment"]
        .as_mapping()
        .expect("environment")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().expect("key").to_string(),
                v.as_str().expect("value").to_string(),
            )
        })
        .collect();
    let help = assert_cmd::Command::cargo_bin("acaso-mail")
        .expect("binary")
        .arg("--help")
        .output()
        .expect("--help");
    let help = String::from_utf8_lossy(&help.stdout);
    for var in env.keys() {
        assert!(
            help.contains(var.as_str()),
            "acaso-mail does not read {var}"
        );
    }
    assert_eq!(
        env["QUEUE_SERVICE_URL"],
        "amqp://guest:guest@rabbitmq:5672/%2f"
    );
    assert!(
        svc("rabbitmq")["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.ends_with(":5672")))
    );
    let brevo_cmd: Vec<&str> = svc("brevo")["command"]
        .as_sequence()
        .expect("command")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let port_at = brevo_cmd
        .iter()
        .position(|a| *a == "--port")
        .expect("--port");
    assert_eq!(
        env["SENDINBLUE_URL"],
        format!("http://brevo:{}/v3", brevo_cmd[port_at + 1])
    );
    let host_at = brevo_cmd
        .iter()
        .position(|a| *a == "--host")
        .expect("--host");
    assert_eq!(
        brevo_cmd[host_at + 1],
        "0.0.0.0",
        "the fake must answer other containers"
    );
    assert_eq!(env["PUSHGATEWAY_URL"], "http://pushgateway:9091");
    let pg_env = &svc("postgres")["environment"];
    let field = |k: &str| pg_env[k].as_str().expect(k).to_string();
    assert_eq!(
        env["ACASO_MAIL_STATE_URL"],
        format!(
            "postgres://{}:{}@postgres:5432/{}",
            field("POSTGRES_USER"),
            field("POSTGRES_PASSWORD"),
            field("POSTGRES_DB")
        )
    );
    assert!(
        svc("pushgateway")["ports"][0]
            .as_str()
            .is_some_and(|p| p.ends_with(":9091"))
    );

    // The cron service's default crontab is in the image, and the demo override names
    // another that is.
    let cron_cmd = instruction(&stages["cron"], "CMD");
    assert_eq!(cron_cmd, [r#"["/etc/acaso-mail/acaso-mail.crontab"]"#]);
    let demo = yaml("docker-compose.demo.yaml");
    let demo_cmd = demo["services"]["acaso-mail-cron"]["command"][0]
        .as_str()
        .expect("demo command");
    let file = demo_cmd
        .strip_prefix("/etc/acaso-mail/")
        .expect("in /etc/acaso-mail");
    assert!(root().join("deploy/compose").join(file).exists());
}

#[test]
fn the_compose_crontabs_run_real_commands_at_the_systemd_times() {
    let local = local_schedule();
    let compose = yaml("docker-compose.yaml");
    let env: BTreeMap<String, String> = compose["services"]["acaso-mail-cron"]["environment"]
        .as_mapping()
        .expect("environment")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().expect("key").to_string(),
                v.as_str().expect("value").to_string(),
            )
        })
        .collect();
    // supercronic reads the schedule in the image's TZ; acaso-mail its dates in ACASO_MAIL_TZ.
    let stages = dockerfile();
    assert!(instruction(&stages["cron"], "ENV").contains(&"TZ=America/Recife"));
    assert_eq!(env["ACASO_MAIL_TZ"], "America/Recife");

    // The key the stack gives acaso-mail is the one its Brevo stand-in accepts: the
    // service passes no --key, so the example's default.
    let brevo_cmd = &compose["services"]["brevo"]["command"];
    assert!(
        !brevo_cmd
            .as_sequence()
            .expect("command")
            .contains(&Value::from("--key"))
    );
    assert!(read("examples/fake-brevo.rs").contains(&format!(
        "let mut key = String::from(\"{}\");",
        env["SENDINBLUE_API_KEY"]
    )));
    // A world whose fake Brevo takes the stack's key.
    let world = |name: &str| World {
        amqp: crate::support::AMQP.to_string(),
        queue: crate::support::unique(name),
        state: tempfile::tempdir().expect("tempdir"),
        state_url: None,
        fake: crate::support::FakeBrevo::start(&env["SENDINBLUE_API_KEY"], 300.0),
    };

    let jobs = crontab_jobs("deploy/compose/acaso-mail.crontab");
    assert_eq!(jobs.len(), 4);
    let w = world("compose-cron");
    for (m, h, rest, args) in &jobs {
        let sub = subcommand(args);
        assert_eq!(rest, &["*", "*", "*"]);
        assert_eq!(&(m.clone(), h.clone()), &local[&sub], "{sub}");
        assert!(args.iter().any(|a| a == "--quiet" || a == "-q"));
        run_as_scheduled(&w, &env, args);
    }
    // The demo schedule: the same commands and a producer, each a valid run.
    let demo = crontab_jobs("deploy/compose/demo.crontab");
    let subs: BTreeSet<String> = demo.iter().map(|j| subcommand(&j.3)).collect();
    for s in SUBCOMMANDS.iter().chain(&["publish"]) {
        assert!(subs.contains(*s), "the demo schedule does not run {s}");
    }
    let w = world("compose-demo");
    for (_, _, _, args) in &demo {
        run_as_scheduled(&w, &env, args);
    }
    assert_eq!(
        w.fake.state().accepted.len(),
        5,
        "the demo's published mails were not all sent"
    );
}

/// America/Recife is UTC-3 all year (no daylight saving since 2019): checked for every
/// day of several years with the zone data acaso-mail itself uses.
fn recife_offset_hours() -> i64 {
    let tz = chrono_tz::America::Recife;
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .expect("date");
    let mut offsets = BTreeSet::new();
    for d in 0..(5 * 366) {
        let t = start + Duration::days(d);
        offsets.insert(
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc(),
        );
    }
    assert_eq!(offsets, [-3 * 3600].into(), "America/Recife changed offset");
    -3
}

#[test]
fn app_json_crons_are_the_systemd_times_in_utc_and_real_commands() {
    let app: serde_json::Value = serde_json::from_str(&read("app.json")).expect("app.json");
    // No long-running process: only cron tasks.
    assert_eq!(app["formation"]["web"]["quantity"], 0);
    let local = local_schedule();
    let offset = recife_offset_hours();
    let crons = app["cron"].as_array().expect("cron");
    assert_eq!(crons.len(), 4);
    let w = World::new("dokku-cron", 300.0);
    let mut seen = BTreeSet::new();
    for c in crons {
        let command = c["command"].as_str().expect("command");
        let schedule = c["schedule"].as_str().expect("schedule");
        let (m, h, rest, args) = cron_job(schedule, command);
        // Dokku passes the command to the image's entrypoint, acaso-mail: it must start
        // with the subcommand, not with the program name or an option Dokku could take.
        assert!(
            !command.starts_with('-') && !command.starts_with("acaso-mail "),
            "{command}"
        );
        let sub = subcommand(&args);
        assert!(args.iter().any(|a| a == "--quiet"), "{command}: not quiet");
        assert_eq!(rest, ["*", "*", "*"], "{command}");
        // Dokku's cron runs in the server's zone, UTC: local = UTC + offset.
        let local_hours: BTreeSet<u32> = h
            .iter()
            .map(|&u| (i64::from(u) + offset).rem_euclid(24) as u32)
            .collect();
        assert_eq!((m, local_hours), local[&sub], "{command} at {schedule} UTC");
        run_as_scheduled(&w, &BTreeMap::new(), &args);
        seen.insert(sub);
    }
    assert_eq!(seen.len(), 4);
}

#[test]
fn cron_fields_expand_as_cron_reads_them() {
    assert_eq!(expand("15", 59), [15].into());
    assert_eq!(expand("0-1,3-23", 23).len(), 23);
    assert!(!expand("0-1,3-23", 23).contains(&2));
    assert_eq!(expand("*/15", 59), [0, 15, 30, 45].into());
    assert_eq!(expand("7-59/15", 59), [7, 22, 37, 52].into());
    assert_eq!(expand("*", 23).len(), 24);
}

/// Hours as a cron field: runs of consecutive hours as ranges (`0-1,3-23`).
fn hours_field(hours: &BTreeSet<u32>) -> String {
    let mut parts: Vec<(u32, u32)> = Vec::new();
    for &h in hours {
        match parts.last_mut() {
            Some((_, hi)) if *hi + 1 == h => *hi = h,
            _ => parts.push((h, h)),
        }
    }
    parts
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

const UTC_CRONTAB_HEADER: &str = "\
# acaso-mail schedule for cron, for a host whose clock is in UTC (Debian's default on most
# servers): crontab -u acaso-mail deploy/crontab.utc. Generated from deploy/crontab, whose
# times are Acaso's (America/Recife, UTC-3 all year), by
# `UPDATE_GENERATED=1 cargo test --locked --test main it::container`: edit that file, not
# this one. Debian's cron runs every line in the host's zone and ignores CRON_TZ; cronie
# honours CRON_TZ=UTC below whatever the host's zone (docs/cron.md).
";

/// deploy/crontab (Acaso's local times) turned into the crontab of a host in UTC.
fn utc_crontab() -> String {
    let offset = recife_offset_hours();
    let local = read("deploy/crontab");
    let mut out = String::from(UTC_CRONTAB_HEADER);
    for line in local.lines().skip_while(|l| l.starts_with('#')) {
        if line.starts_with("CRON_TZ=") {
            out.push_str("CRON_TZ=UTC\n");
            continue;
        }
        if line.starts_with('#') || line.contains('=') || line.trim().is_empty() {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let hours: BTreeSet<u32> = expand(fields[1], 23)
            .iter()
            .map(|&h| (i64::from(h) - offset).rem_euclid(24) as u32)
            .collect();
        // The day fields stay `*`: a shift across midnight would move them too.
        assert_eq!(fields[2..5], ["*", "*", "*"], "{line}");
        let hours = hours_field(&hours);
        out.push_str(&format!(
            "{:<3}{:<12}* * *  {}\n",
            fields[0],
            hours,
            fields[5..].join(" ")
        ));
    }
    out
}

#[test]
fn the_utc_crontab_is_deploy_crontab_in_utc() {
    let want = utc_crontab();
    let path = root().join("deploy/crontab.utc");
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(&path, &want).expect("write deploy/crontab.utc");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        have, want,
        "deploy/crontab.utc is stale: UPDATE_GENERATED=1 cargo test --locked --test main it::container"
    );
    // Read as Debian's cron reads it on a UTC host (the hours as they are, CRON_TZ
    // ignored): the runs fall at Acaso's times.
    let local = local_schedule();
    let offset = recife_offset_hours();
    let mut seen = BTreeMap::new();
    for line in have
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains('=') && !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let cmd = line
            .split("/usr/local/bin/acaso-mail-run")
            .nth(1)
            .expect("command");
        let (m, h, _, args) = cron_job(&fields[..5].join(" "), cmd);
        let recife: BTreeSet<u32> = h
            .iter()
            .map(|&u| (i64::from(u) + offset).rem_euclid(24) as u32)
            .collect();
        seen.insert(subcommand(&args), (m, recife));
    }
    assert_eq!(seen, local);
    // Spelled out: the end-of-day drain at 02:05 UTC is 23:05 in Recife, before
    // midnight's reset; reprioritize at 03:05 UTC is 00:05, just after it.
    assert!(have.contains("5  2           * * *  /usr/local/bin/acaso-mail-run -q drain-eod"));
    assert!(have.contains("5  3           * * *  /usr/local/bin/acaso-mail-run -q reprioritize"));
    assert!(have.contains("15 0-1,3-23    * * *  /usr/local/bin/acaso-mail-run -q drain-hourly"));
}

/// Issue 21: the README's quick start does not send a newcomer from the demo (whose
/// RabbitMQ holds 127.0.0.1:5672) to `docker compose up` (whose RabbitMQ publishes that
/// port) without saying to stop the first; the Dokku Pushgateway, which has no auth of its
/// own, is kept off Dokku's public proxy before it is deployed.
#[test]
fn the_readme_keeps_the_stack_off_the_demos_port_and_the_pushgateway_private() {
    let readme = read("README.md");
    let compose = yaml("docker-compose.yaml");
    let rabbit_ports: Vec<&str> = compose["services"]["rabbitmq"]["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        rabbit_ports.contains(&"127.0.0.1:5672:5672"),
        "{rabbit_ports:?}"
    );
    let quick = readme
        .split("## Quick start")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a quick start");
    let up = quick
        .find("docker compose up")
        .unwrap_or_else(|| panic!("no compose in the quick start: {quick}"));
    let paragraph = &quick[quick[..up].rfind("\n\n").unwrap_or(0)..];
    let paragraph = paragraph[2..].split("\n\n").next().unwrap_or_default();
    assert!(
        paragraph.contains("5672") && paragraph.contains("rabbitmqctl stop"),
        "`docker compose up` without saying to stop the demo's RabbitMQ: {paragraph}"
    );
    assert!(
        !paragraph.contains("```"),
        "`docker compose up` in a block of commands run in a row: {paragraph}"
    );

    let dokku_doc = read("docs/dokku.md");
    let dokku = dokku_doc
        .split("## Deploy on Dokku")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("\n```").next())
        .expect("the Dokku block");
    let at = |what: &str| {
        dokku
            .find(what)
            .unwrap_or_else(|| panic!("the Dokku block has no {what:?}"))
    };
    let deployed = at("dokku git:from-image pushgateway ");
    assert!(at("dokku apps:create pushgateway") < at("dokku proxy:disable pushgateway"));
    assert!(at("dokku proxy:disable pushgateway") < deployed);
    assert!(at("dokku network:set pushgateway bind-all-interfaces false") < deployed);
    assert!(!dokku.contains("dokku domains:add pushgateway"));
}
