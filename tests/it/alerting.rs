//! The production Alertmanager configuration (monitoring/alertmanager.production.yml):
//! checked by amtool, and its webhook receiver tried for real: a real Alertmanager
//! (Debian's prometheus-alertmanager) routes a critical acaso-mail alert to a listener.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn config() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring/alertmanager.production.yml"),
    )
    .expect("production config")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn the_production_receivers_pass_amtool_and_the_webhook_gets_critical_alerts() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("alertmanager.yml");
    std::fs::write(&file, config()).expect("write");
    let out = Command::new("amtool")
        .args(["check-config"])
        .arg(&file)
        .output()
        .expect("amtool must be installed (scripts/services --test: prometheus-alertmanager)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SUCCESS") && text.contains("2 receivers"),
        "{text}"
    );

    // The same routes and receivers, pointed at this test: the webhook at a listener,
    // SMTP at a closed port (mail fails; the webhook must not depend on it), no wait.
    let hook = TcpListener::bind("127.0.0.1:0").expect("listener");
    let hook_url = format!(
        "http://{}/acaso-mail-alerts",
        hook.local_addr().expect("addr")
    );
    let live = config()
        .replace("http://127.0.0.1:9095/acaso-mail-alerts", &hook_url)
        .replace(
            "smtp.example.org:587",
            &format!("127.0.0.1:{}", free_port()),
        )
        .replace(
            "smtp_auth_password_file: /etc/prometheus/smtp-password",
            "smtp_auth_password: x",
        )
        .replace("group_wait: 30s", "group_wait: 1s");
    std::fs::write(&file, live).expect("write");
    let port = free_port();
    let mut am = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", file.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager must be installed (scripts/services --test)");
    let base = format!("http://127.0.0.1:{port}");
    let alert = r#"[{"labels": {"alertname": "AcasoMailUrgentMailNotSent", "severity": "critical", "instance": "h1"},
                     "annotations": {"summary": "test"}}]"#;
    let start = Instant::now();
    let posted = loop {
        let r = ureq::post(&format!("{base}/api/v2/alerts"))
            .header("Content-Type", "application/json")
            .send(alert);
        if r.is_ok() || start.elapsed() > Duration::from_secs(30) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    hook.set_nonblocking(false).expect("blocking");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = hook.accept() {
            let mut reader = BufReader::new(s.try_clone().expect("clone"));
            let mut len = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
        }
    });
    let got = rx.recv_timeout(Duration::from_secs(60));
    let _ = am.kill();
    let _ = am.wait();
    assert!(posted.is_ok(), "posting the alert: {posted:?}");
    let body = got.expect("the webhook receiver got no alert within 60 s");
    assert!(
        body.contains("AcasoMailUrgentMailNotSent") && body.contains("oncall-email-and-webhook"),
        "{body}"
    );
}
