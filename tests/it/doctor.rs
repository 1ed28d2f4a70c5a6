//! `doctor` against the real broker, a real Pushgateway and the fake Brevo: a good setup
//! passes every check (exit 0); each broken piece fails the check that names it, with
//! its documented exit code, and nothing is created or sent.

use serde_json::Value;

use crate::it::publish::NOW;
use crate::support::*;

/// Runs `doctor --json` with extra variables and arguments: (exit code, document).
fn doctor(w: &World, env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, Value) {
    let out = w
        .cmd()
        .envs(env.iter().copied())
        .args(["--now", NOW, "--json", "doctor"])
        .args(args)
        .output()
        .expect("run");
    (out.status.code(), stdout_json(&out))
}

/// The names of the checks that failed.
fn failed(doc: &Value) -> Vec<String> {
    doc["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Asserts that Brevo received no send at all.
fn nothing_sent(w: &World) {
    assert!(w.fake.state().received.is_empty(), "doctor sent nothing");
}

/// A world whose queues exist (stats declared them) and whose state holds a store.
fn ready_world(name: &str) -> World {
    let w = World::new(name, 300.0);
    w.declare_queues();
    w
}

#[test]
fn a_good_setup_passes_every_check_and_sends_nothing() {
    let w = ready_world("doctor-good");
    let pg = Pushgateway::start();
    let (code, doc) = doctor(&w, &[("PUSHGATEWAY_URL", &pg.url)], &[]);
    assert_eq!(code, Some(0), "{doc:#}");
    assert!(failed(&doc).is_empty(), "{doc:#}");
    let names: Vec<&str> = doc["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for n in [
        "broker",
        "queue",
        "queue.side",
        "queue.reprioritize",
        "brevo.key",
        "brevo.plan",
        "brevo.relay",
        "clock",
        "lock",
        "credits-reset",
        "schedule",
        "pushgateway",
    ] {
        assert!(names.contains(&n), "no check {n}: {names:?}");
    }
    // The state directory is checked where the state lives in it; with the state in
    // PostgreSQL, the lock check names where it lives instead.
    if state_in_postgres() {
        assert!(!names.contains(&"state-dir"), "{names:?}");
        assert!(
            doctor_check(&doc, "lock")["detail"]
                .as_str()
                .is_some_and(|d| d.contains("PostgreSQL at postgres://")),
            "{doc:#}"
        );
    } else {
        assert!(names.contains(&"state-dir"), "{names:?}");
    }
    assert!(
        doctor_check(&doc, "clock")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Date:")),
        "the clock was compared: {doc:#}"
    );
    assert!(
        doctor_check(&doc, "queue")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("x-max-priority 9")),
        "{doc:#}"
    );
    nothing_sent(&w);
    // The test group was deleted again.
    assert_eq!(pg.value("acaso_mail_doctor_check", &[]), None);
    // The text form: a checklist.
    let out = w
        .cmd()
        .env("PUSHGATEWAY_URL", &pg.url)
        .args(["--now", NOW, "doctor"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ok   broker:") && text.contains("checks passed"),
        "{text}"
    );
}

#[test]
fn a_wrong_key_fails_the_key_check_with_exit_5() {
    let w = ready_world("doctor-key");
    let (code, doc) = doctor(&w, &[("SENDINBLUE_API_KEY", "xkeysib-wrong")], &[]);
    assert_eq!(code, Some(5), "{doc:#}");
    assert_eq!(failed(&doc), ["brevo.key"], "{doc:#}");
    assert!(doctor_check(&doc, "brevo.key")["hint"].is_string());
    nothing_sent(&w);
}

#[test]
fn a_dead_pushgateway_fails_with_exit_4() {
    let w = ready_world("doctor-pg-dead");
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}");
    let (code, doc) = doctor(&w, &[("PUSHGATEWAY_URL", &url)], &[]);
    assert_eq!(code, Some(4), "{doc:#}");
    assert_eq!(failed(&doc), ["pushgateway"], "{doc:#}");
    nothing_sent(&w);
}

#[test]
fn a_wrong_pushgateway_password_fails_with_exit_5() {
    let w = ready_world("doctor-pg-auth");
    let dir = tempfile::tempdir().expect("tmp");
    let pg = AuthPushgateway::start(dir.path(), "acaso", "right-password");
    let env = |pass: &'static str| {
        [
            ("PUSHGATEWAY_URL", pg.url.clone()),
            ("PUSHGATEWAY_USER", "acaso".to_string()),
            ("PUSHGATEWAY_PASSWORD", pass.to_string()),
        ]
    };
    let run = |pass: &'static str| {
        let e = env(pass);
        let pairs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        doctor(&w, &pairs, &[])
    };
    let (code, doc) = run("wrong-password");
    assert_eq!(code, Some(5), "{doc:#}");
    assert_eq!(failed(&doc), ["pushgateway"], "{doc:#}");
    // The right password passes: the failure was the password's.
    let (code, doc) = run("right-password");
    assert_eq!(code, Some(0), "{doc:#}");
    nothing_sent(&w);
}

#[test]
fn a_dead_broker_fails_with_exit_4() {
    let w = World::new("doctor-broker", 300.0);
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", closed_port());
    let (code, doc) = doctor(&w, &[("QUEUE_SERVICE_URL", &url)], &[]);
    assert_eq!(code, Some(4), "{doc:#}");
    assert_eq!(failed(&doc)[0], "broker", "{doc:#}");
    assert!(
        !doc.to_string().contains("\"queue\""),
        "no queue check without a broker"
    );
    nothing_sent(&w);
}

#[test]
fn a_typod_queue_fails_with_exit_2_and_is_not_created() {
    let w = ready_world("doctor-typo");
    let typo = format!("{}.typo", w.queue);
    let (code, doc) = doctor(&w, &[("ACASO_MAIL_QUEUE", &typo)], &[]);
    assert_eq!(code, Some(2), "{doc:#}");
    assert_eq!(failed(&doc), ["queue"], "{doc:#}");
    for q in [
        typo.clone(),
        format!("{typo}.dead"),
        format!("{typo}.retry.60s"),
    ] {
        assert!(!queue_exists(&q), "{q} was created");
    }
    nothing_sent(&w);
}

#[test]
fn an_interrupted_reprioritize_and_a_legacy_queue_are_named() {
    let w = ready_world("doctor-staged");
    raw_publish(&format!("{}.reprioritize", w.queue), &[(b"[]".to_vec(), 5)]);
    let (code, doc) = doctor(&w, &[], &[]);
    assert_eq!(code, Some(1), "{doc:#}");
    assert_eq!(failed(&doc), ["queue.reprioritize"], "{doc:#}");
    assert!(
        doctor_check(&doc, "queue.reprioritize")["hint"]
            .as_str()
            .is_some_and(|h| h.contains("acaso-mail reprioritize")),
        "{doc:#}"
    );
    assert_eq!(
        w.ready(&format!("{}.reprioritize", w.queue)),
        1,
        "left staged"
    );

    // The legacy queue (not durable, x-max-priority 255) is adopted as it is elsewhere;
    // doctor names the risk, and its side queues missing, and changes neither.
    let legacy = World::new("doctor-legacy", 300.0);
    declare_legacy_queue(&legacy.queue);
    let (code, doc) = doctor(&legacy, &[], &[]);
    assert_eq!(code, Some(1), "{doc:#}");
    assert_eq!(failed(&doc), ["queue", "queue.side"], "{doc:#}");
    assert!(
        doctor_check(&doc, "queue")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("NOT durable") && d.contains("x-max-priority 255")),
        "{doc:#}"
    );
    assert!(
        !queue_exists(&format!("{}.dead", legacy.queue)),
        "nothing created"
    );
    nothing_sent(&w);
}

#[test]
fn a_public_state_directory_fails_with_exit_1() {
    let w = ready_world("doctor-state");
    std::fs::set_permissions(
        w.state.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let (code, doc) = doctor(&w, &[], &[]);
    assert_eq!(code, Some(1), "{doc:#}");
    assert_eq!(failed(&doc), ["state-dir"], "{doc:#}");
    assert!(
        doctor_check(&doc, "state-dir")["hint"]
            .as_str()
            .is_some_and(|h| h.starts_with("chmod 700")),
        "{doc:#}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(w.state.path())
            .expect("meta")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o755, "doctor changed nothing");
    nothing_sent(&w);
}

#[test]
fn a_skewed_clock_fails_with_exit_1() {
    let w = ready_world("doctor-clock");
    w.fake.state().date_skew_secs = 3600;
    let (code, doc) = doctor(&w, &[], &[]);
    assert_eq!(code, Some(1), "{doc:#}");
    assert_eq!(failed(&doc), ["clock"], "{doc:#}");
    // 61 s is over the limit too; the direction is said.
    w.fake.state().date_skew_secs = -3600;
    let (_, doc) = doctor(&w, &[], &[]);
    assert!(
        doctor_check(&doc, "clock")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("ahead of Brevo's")),
        "{doc:#}"
    );
    nothing_sent(&w);
}

#[test]
fn templates_are_tried_in_the_sandbox_and_nothing_is_sent_or_consumed() {
    let w = ready_world("doctor-templates");
    w.publish(
        &[
            job("a@example.org", 3, "2026-11-28T10:00:00-03:00"),
            job("b@example.org", 9, "2026-11-28T10:00:00-03:00"),
            job("c@example.org", 3, "2026-11-28T10:00:00-03:00"),
        ],
        NOW,
    );
    w.fake.state().missing_templates.insert(9);
    let (code, doc) = doctor(&w, &[], &["--templates"]);
    assert_eq!(code, Some(1), "{doc:#}");
    assert_eq!(failed(&doc), ["template.9"], "{doc:#}");
    assert!(doctor_check(&doc, "template.3")["ok"] == true);
    let s = w.fake.state();
    assert_eq!(s.sandboxed.len(), 1, "one sandbox send per good template");
    assert_eq!(s.received.len(), 2, "one try per template");
    assert!(s.accepted.is_empty(), "nothing delivered");
    assert_eq!(s.credits, 300.0);
    assert!(
        s.received
            .iter()
            .all(|r| r["headers"]["X-Sib-Sandbox"] == "drop"
                && r["headers"].get("idempotencyKey").is_none()),
        "{:?}",
        s.received
    );
    assert_eq!(
        s.sandboxed[0]["params"]["WHO"], "a@example.org",
        "with the mail's params"
    );
    drop(s);
    assert_eq!(w.ready(&w.queue), 3, "nothing consumed");
}

#[test]
fn the_probe_passes_when_brevo_refuses_the_repeat_and_stats_says_so() {
    let w = ready_world("doctor-probe");
    w.publish(
        &[job("queued@example.org", 7, "2026-11-28T10:00:00-03:00")],
        NOW,
    );
    let (code, doc) = doctor(&w, &[], &["--idempotency-probe", "--to", "ops@example.org"]);
    assert_eq!(code, Some(0), "{doc:#}");
    assert_eq!(doctor_check(&doc, "idempotency-probe")["ok"], true);
    let s = w.fake.state();
    assert_eq!(s.accepted.len(), 1, "exactly one mail accepted");
    assert_eq!(s.duplicates, 1, "the repeat was refused");
    assert_eq!(s.accepted[0]["to"][0]["email"], "ops@example.org");
    assert_eq!(
        s.accepted[0]["templateId"], 7,
        "the first queued mail's template"
    );
    drop(s);
    assert_eq!(w.ready(&w.queue), 1, "the queued mail stays");
    let stats = w.json(NOW, &["stats"]);
    assert_eq!(stats["idempotency_probe"]["passed"], true, "{stats:#}");
    assert!(
        stats["idempotency_probe"]["at"]
            .as_str()
            .is_some_and(|a| a.starts_with("2026-11-27T12:00:00")),
        "{stats:#}"
    );
}

#[test]
fn the_probe_fails_against_a_brevo_that_ignores_the_key() {
    let w = ready_world("doctor-probe-bad");
    w.fake.state().honour_idempotency = false;
    let out = w
        .cmd()
        .args(["--now", NOW, "--json", "doctor", "--idempotency-probe"])
        .args(["--to", "ops@example.org", "--template", "11"])
        .output()
        .expect("run");
    let doc = stdout_json(&out);
    assert_eq!(out.status.code(), Some(1), "{doc:#}");
    assert_eq!(failed(&doc), ["idempotency-probe"], "{doc:#}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("costs one credit"),
        "said before sending: {err}"
    );
    assert_eq!(w.fake.accepted().len(), 2, "Brevo sent the repeat");
    let stats = w.json(NOW, &["stats"]);
    assert_eq!(stats["idempotency_probe"]["passed"], false, "{stats:#}");
    assert!(
        stats["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("idempotency key"))),
        "{stats:#}"
    );
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A real Pushgateway that asks for basic auth (plain http on loopback).
struct AuthPushgateway {
    url: String,
    child: std::process::Child,
}

impl AuthPushgateway {
    fn start(dir: &std::path::Path, user: &str, password: &str) -> Self {
        require_tool("prometheus-pushgateway", "prometheus-pushgateway");
        require_tool("htpasswd", "apache2-utils");
        let out = output_within(
            std::process::Command::new("htpasswd").args(["-nbBC", "10", user, password]),
            std::time::Duration::from_secs(30),
        );
        assert!(out.status.success(), "htpasswd failed");
        let line = String::from_utf8_lossy(&out.stdout);
        let (_, hash) = line.trim().split_once(':').expect("user:hash");
        let config = dir.join("web-config.yml");
        std::fs::write(&config, format!("basic_auth_users:\n  {user}: '{hash}'\n"))
            .expect("web config");
        let port = closed_port();
        let child = std::process::Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--web.config.file={}", config.display()))
            .arg("--persistence.file=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus-pushgateway starts");
        let pg = AuthPushgateway {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        wait_until(
            "the Pushgateway to listen",
            std::time::Duration::from_secs(10),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        pg
    }
}

impl Drop for AuthPushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The compose stack's one-shot doctor: the stack's environment and state volume, and
/// its command, run as written after the stack's set-up (`acaso-mail-setup`, which it
/// waits for) on a fresh state and queue (with this world's broker, Brevo and
/// Pushgateway standing in for the stack's), passes every check; the image's state
/// directory is private, as doctor requires.
#[test]
fn the_compose_stack_runs_doctor_once_and_it_passes_on_a_fresh_stack() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("docker-compose.yaml")).expect("compose");
    let compose: serde_norway::Value = serde_norway::from_str(&text).expect("yaml");
    let svc = &compose["services"]["acaso-mail-doctor"];
    let setup = &compose["services"]["acaso-mail-setup"];
    let cli = &compose["services"]["acaso-mail"];
    for one_shot in [svc, setup] {
        assert_eq!(one_shot["environment"], cli["environment"]);
        assert_eq!(one_shot["volumes"], cli["volumes"]);
        assert_eq!(one_shot["build"], cli["build"]);
        assert!(one_shot["profiles"].is_null(), "`up` starts it");
        assert_eq!(one_shot["restart"].as_str(), Some("no"), "once");
    }
    assert_eq!(
        svc["depends_on"]["acaso-mail-setup"]["condition"].as_str(),
        Some("service_completed_successfully"),
        "doctor runs after the set-up made the queues"
    );
    let args = |s: &serde_norway::Value| -> Vec<String> {
        s["command"]
            .as_sequence()
            .expect("a command")
            .iter()
            .map(|a| a.as_str().expect("an argument").to_string())
            .collect()
    };
    let doctor = args(svc);
    assert_eq!(
        doctor.last().map(String::as_str),
        Some("doctor"),
        "{doctor:?}"
    );

    let w = World::new("doctor-compose", 300.0);
    let pg = Pushgateway::start();
    for command in [args(setup), doctor] {
        let mut run = w.std_cmd();
        run.env("PUSHGATEWAY_URL", &pg.url).args(&command);
        let out = output_within(&mut run, std::time::Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{command:?}: {:?}\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if command.last().map(String::as_str) == Some("doctor") {
            assert!(String::from_utf8_lossy(&out.stdout).contains("checks passed"));
        }
    }

    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("-m 0700 /var/lib/acaso-mail"),
        "the image's state directory is private"
    );
}
