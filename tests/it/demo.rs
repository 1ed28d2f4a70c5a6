//! The README's quick start: `scripts/demo` runs clean every time and leaves nothing
//! behind, and `scripts/services` (behind the demo and `scripts/test`) starts a stopped
//! RabbitMQ or says the one command that does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn fake_brevo_bin() -> PathBuf {
    let bin = assert_cmd::cargo::cargo_bin("acaso-mail");
    let fake = bin.parent().expect("dir").join("examples/fake-brevo");
    assert!(
        fake.exists(),
        "{} (cargo test builds the examples)",
        fake.display()
    );
    fake
}

#[test]
fn the_demo_succeeds_every_time_and_leaves_nothing_behind() {
    for run in 1..=4 {
        let tmp = tempfile::tempdir().expect("tmp");
        let out = Command::new(root().join("scripts/demo"))
            .env("ACASO_MAIL_BIN", assert_cmd::cargo::cargo_bin("acaso-mail"))
            .env("FAKE_BREVO_BIN", fake_brevo_bin())
            .env("FAKE_BREVO_PORT", free_port().to_string())
            .env("TMPDIR", tmp.path())
            .env_remove("ACASO_MAIL_QUEUE")
            .env_remove("ACASO_MAIL_STATE_DIR")
            .env_remove("QUEUE_SERVICE_URL")
            .env_remove("PUSHGATEWAY_URL")
            .output()
            .expect("scripts/demo");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "run {run}: {stdout}\n{stderr}");
        assert_eq!(
            stdout.lines().last(),
            Some("... 30 mail(s) in all"),
            "run {run}: {stdout}"
        );
        assert_eq!(stdout.matches("accepted: ").count(), 5, "{stdout}");
        let queue = stdout
            .lines()
            .find_map(|l| l.strip_prefix("published 30 mail(s) to "))
            .expect("the demo's queue")
            .to_string();
        for q in [
            queue.clone(),
            format!("{queue}.dead"),
            format!("{queue}.retry.60s"),
            format!("{queue}.reprioritize"),
        ] {
            assert!(!queue_exists(&q), "run {run}: {q} left behind");
        }
        let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("tmp").collect();
        assert!(left.is_empty(), "run {run}: left in TMPDIR: {left:?}");
    }
}

/// `scripts/services` with RabbitMQ "on" a closed port, and `path` first on PATH.
fn services(as_nobody: bool, path: &Path, port: u16) -> std::process::Output {
    let mut cmd = if as_nobody {
        // Found here, since PATH below leaves out the sbin directories on purpose.
        let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("runuser (util-linux)");
        let mut c = Command::new(runuser);
        c.args(["-u", "nobody", "--"])
            .arg(root().join("scripts/services"));
        c
    } else {
        Command::new(root().join("scripts/services"))
    };
    cmd.env("PATH", format!("{}:/usr/bin:/bin", path.display()))
        .env("ACASO_MAIL_RABBITMQ_PORT", port.to_string())
        .output()
        .expect("scripts/services")
}

#[test]
fn services_start_a_stopped_rabbitmq_or_say_the_one_command() {
    let dir = tempfile::tempdir().expect("tmp");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let port = free_port();

    // Not installed (no rabbitmq-server on PATH), not root: the one command to run.
    let out = services(true, &bin, port);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not installed") && err.contains("sudo scripts/services"),
        "{err}"
    );

    // Installed but stopped: a stand-in rabbitmq-server that listens on the port.
    let marker = dir.path().join("started");
    let pidfile = dir.path().join("pid");
    let stub = format!(
        "#!/bin/sh\necho \"$@\" > {marker}\n{fake} --port {port} >/dev/null 2>&1 &\necho $! > {pidfile}\n",
        marker = marker.display(),
        fake = fake_brevo_bin().display(),
        pidfile = pidfile.display(),
    );
    let server = bin.join("rabbitmq-server");
    std::fs::write(&server, stub).expect("stub");
    std::fs::set_permissions(&server, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    // Not root: how to start it, and nothing started.
    let out = services(true, &bin, port);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not running") && err.contains("sudo scripts/services"),
        "{err}"
    );
    assert!(!marker.exists());
    // Root: started, then waited for.
    let out = services(false, &bin, port);
    let pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
    if !pid.trim().is_empty() {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&marker).expect("started").trim(),
        "-detached"
    );
}

/// Issue 21: with a real configuration exported (queue, broker, Brevo, state directory,
/// Pushgateway, secrets' files), the demo still uses only its own queue, state and Brevo
/// stand-in, says it ignored them, and leaves the real queue's mails where they were.
#[test]
fn the_demo_ignores_a_real_configuration_in_the_environment() {
    let w = World::new("demo-real", 300.0);
    let pg = Pushgateway::start();
    let mine: Vec<_> = (0..3)
        .map(|i| {
            job(
                &format!("real{i}@example.org"),
                9,
                "2026-12-30T10:00:00-03:00",
            )
        })
        .collect();
    w.publish(&mine, "2026-12-03T12:00:00-03:00");
    let before = std::fs::read_dir(w.state.path()).expect("state").count();
    let key_file = w.state.path().join("key");
    std::fs::write(&key_file, KEY).expect("key file");
    let tmp = tempfile::tempdir().expect("tmp");
    let real = [
        ("ACASO_MAIL_QUEUE", w.queue.clone()),
        ("ACASO_MAIL_STATE_DIR", w.state.path().display().to_string()),
        ("ACASO_MAIL_NOW", "2026-12-03T12:00:00-03:00".to_string()),
        ("QUEUE_SERVICE_URL", AMQP.to_string()),
        ("RABBITMQ_URL", AMQP.to_string()),
        ("SENDINBLUE_URL", w.fake.url.clone()),
        ("SENDINBLUE_API_KEY", KEY.to_string()),
        ("BREVO_URL", w.fake.url.clone()),
        ("BREVO_API_KEY_FILE", key_file.display().to_string()),
        ("PUSHGATEWAY_URL", pg.url.clone()),
    ];
    let mut cmd = Command::new(root().join("scripts/demo"));
    cmd.env_clear();
    for k in INHERITED {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.env("ACASO_MAIL_BIN", assert_cmd::cargo::cargo_bin("acaso-mail"))
        .env("FAKE_BREVO_BIN", fake_brevo_bin())
        .env("FAKE_BREVO_PORT", free_port().to_string())
        .env("TMPDIR", tmp.path());
    for (k, v) in &real {
        cmd.env(k, v);
    }
    let out = output_within(&mut cmd, Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().last(),
        Some("... 30 mail(s) in all"),
        "{stdout}"
    );
    let said = stdout
        .lines()
        .find(|l| l.starts_with("demo: ignoring"))
        .unwrap_or_else(|| panic!("the demo does not say what it ignored: {stdout}"));
    for (k, _) in &real {
        assert!(said.contains(k), "{k} not named: {said}");
    }
    assert!(!stdout.contains(&w.queue), "{stdout}");
    // The real queue: its 3 mails, untouched; nothing sent through the real Brevo,
    // nothing written to the real state directory, nothing pushed.
    assert!(w.fake.accepted().is_empty(), "{:?}", w.fake.accepted());
    assert_eq!(
        std::fs::read_dir(w.state.path()).expect("state").count(),
        before + 1,
        "the demo wrote to the real state directory"
    );
    assert_eq!(pg.value("acaso_mail_last_run_success", &[]), None);
    let left = w.take_all(&w.queue);
    assert_eq!(left.len(), 3);
    let mut to: Vec<String> = left
        .iter()
        .map(|(headers, body)| {
            assert!(header_str(headers, "x-acaso-attempts").is_none());
            String::from_utf8_lossy(body).into_owned()
        })
        .collect();
    to.sort();
    for (i, body) in to.iter().enumerate() {
        assert!(body.contains(&format!("real{i}@example.org")), "{body}");
    }
    assert_eq!(ready(&format!("{}.dead", w.queue)), 0);
}

/// A stub command that appends its arguments (and, for apt-get, what policy-rc.d says
/// at that moment) to `log`.
fn stub(bin: &Path, name: &str, log: &Path, policy: &Path) {
    let script = format!(
        "#!/bin/sh\necho \"{name} $*\" >> {log}\nif [ -e {policy} ]; then echo \"  policy-rc.d: $(tail -1 {policy})\" >> {log}; fi\n",
        log = log.display(),
        policy = policy.display(),
    );
    let path = bin.join(name);
    std::fs::write(&path, script).expect("stub");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
}

/// Issue 21: `scripts/services --test` installs Debian's prometheus, alertmanager and
/// pushgateway, whose services are enabled and listen on 9090/9093/9091. It says so
/// before installing, keeps them from starting during the install (policy-rc.d, its own,
/// removed afterwards) and disables them (`--now` where systemd runs).
#[test]
fn services_installs_the_monitoring_daemons_disabled_and_says_so() {
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc")),
        0,
        "this test runs scripts/services as root (bash .ci/run does)"
    );
    for systemd_running in [true, false] {
        let dir = tempfile::tempdir().expect("tmp");
        let (bin, sysroot) = (dir.path().join("bin"), dir.path().join("root"));
        std::fs::create_dir_all(sysroot.join("usr/sbin")).expect("usr/sbin");
        if systemd_running {
            std::fs::create_dir_all(sysroot.join("run/systemd/system")).expect("run");
        }
        std::fs::create_dir(&bin).expect("bin");
        // Only what the script needs besides the tools it looks for: all of those are
        // missing, so it installs them all.
        for tool in ["bash", "id", "dirname", "rm", "chmod", "tail", "sh"] {
            let real = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{tool}"));
            std::os::unix::fs::symlink(real, bin.join(tool)).expect("symlink");
        }
        let log = dir.path().join("log");
        let policy = sysroot.join("usr/sbin/policy-rc.d");
        stub(&bin, "apt-get", &log, &policy);
        stub(&bin, "systemctl", &log, &policy);
        let out = Command::new(root().join("scripts/services"))
            .arg("--test")
            .env_clear()
            .env("PATH", &bin)
            .env("SERVICES_ROOT", &sysroot)
            .env("ACASO_MAIL_RABBITMQ_PORT", "5672")
            .output()
            .expect("scripts/services");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let said = err
            .find("9090")
            .unwrap_or_else(|| panic!("not said: {err}"));
        let installing = err.find("installing").expect("installing");
        assert!(said < installing, "said after installing: {err}");
        let log = std::fs::read_to_string(&log).expect("log");
        let install = log
            .find("apt-get install")
            .unwrap_or_else(|| panic!("{log}"));
        assert!(
            log[install..]
                .lines()
                .nth(1)
                .is_some_and(|l| l.contains("policy-rc.d: exit 101")),
            "services could start during the install: {log}"
        );
        assert!(!policy.exists(), "policy-rc.d left behind");
        let disable = if systemd_running {
            "systemctl disable --now "
        } else {
            "systemctl disable "
        };
        let mut disabled: Vec<&str> = log
            .lines()
            .find_map(|l| l.strip_prefix(disable))
            .unwrap_or_else(|| panic!("no {disable:?}: {log}"))
            .split_whitespace()
            .collect();
        disabled.sort_unstable();
        assert_eq!(
            disabled,
            [
                "prometheus",
                "prometheus-alertmanager",
                "prometheus-pushgateway"
            ],
            "{log}"
        );
    }
}
