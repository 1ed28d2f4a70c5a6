//! The README's quick start: `scripts/demo` runs clean every time and leaves nothing
//! behind, and `scripts/services` (behind the demo and `scripts/test`) starts a stopped
//! RabbitMQ or says the one command that does.

use std::path::{Path, PathBuf};
use std::process::Command;

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
