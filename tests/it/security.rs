//! Issue 16: private state, a hardened unit, secrets from files and credentials, and
//! TLS and auth on the wires, against a real RabbitMQ TLS listener (a private node) and
//! a real Pushgateway with basic auth and https.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::it::publish::NOW;
use crate::support::node::{NodeOptions, PrivateNode, TestCerts, free_port, port_open};
use crate::support::*;

/// Variables of this issue that must not come from the caller's environment.
const SECURITY_VARS: [&str; 10] = [
    "CREDENTIALS_DIRECTORY",
    "SENDINBLUE_API_KEY_FILE",
    "BREVO_API_KEY_FILE",
    "QUEUE_SERVICE_URL_FILE",
    "ACASO_MAIL_AMQP_CA_FILE",
    "PUSHGATEWAY_USER",
    "PUSHGATEWAY_PASSWORD",
    "PUSHGATEWAY_PASSWORD_FILE",
    "PUSHGATEWAY_CA_FILE",
    "RUST_BACKTRACE",
];

/// The world's command without any of this variables from the caller.
fn cmd(w: &World) -> assert_cmd::Command {
    let mut c = w.cmd();
    for k in SECURITY_VARS {
        c.env_remove(k);
    }
    c.env("RUST_BACKTRACE", "1");
    c
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write_secret(dir: &Path, name: &str, value: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).expect("write secret");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    p
}

fn assert_no_secret(out: &Output, secrets: &[&str], what: &str) {
    let all = text(out);
    for s in secrets {
        assert!(!all.contains(s), "{what} leaked {s}: {all}");
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn systemd_analyze_security_rates_the_unit_ok() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/acaso-mail@.service");
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze must be installed (apt-get install systemd)");
    let all = text(&out);
    let level = all
        .lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no exposure level in systemd-analyze's output: {all}"));
    assert!(
        level <= 2.0,
        "systemd-analyze security rates acaso-mail@.service {level} (want 2.0 or less, \"OK\"):\n{all}"
    );
    let unit = std::fs::read_to_string(&unit).expect("unit");
    for line in [
        "UMask=0077",
        "StateDirectoryMode=0700",
        "LoadCredential=sendinblue-api-key:",
        "LoadCredential=queue-service-url:",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "unit lacks {line}"
        );
    }
}

#[test]
fn a_drain_with_umask_022_leaves_the_state_private() {
    let w = World::new("umask", 300.0);
    w.publish(&[job("u@example.org", 9, "2026-11-28T10:00:00-03:00")], NOW);
    let parent = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let state = parent.path().join("new/state");
    let c = cmd(&w);
    let mut sh = std::process::Command::new("sh");
    sh.arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(assert_cmd::cargo::cargo_bin("acaso-mail"));
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    let out = sh
        .env("ACASO_MAIL_STATE_DIR", &state)
        .args(["--now", NOW, "drain-hourly"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(w.fake.accepted().len(), 1);
    let mut seen = 0;
    let mut stack = vec![parent.path().join("new")];
    while let Some(p) = stack.pop() {
        let m = mode(&p);
        assert_eq!(m & 0o077, 0, "{} is mode {m:04o}", p.display());
        if p.is_dir() {
            assert_eq!(m, 0o700, "{}", p.display());
            stack.extend(
                std::fs::read_dir(&p)
                    .expect("ls")
                    .map(|e| e.expect("entry").path()),
            );
        } else {
            assert_eq!(m, 0o600, "{}", p.display());
        }
        seen += 1;
    }
    assert!(
        state.join("state.sqlite3").exists() && seen >= 4,
        "the journal was not written"
    );

    // An existing state directory open to others: warned about, with the fix.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = cmd(&w)
        .env("ACASO_MAIL_STATE_DIR", &state)
        .args(["--now", NOW, "drain-hourly"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning") && err.contains(&format!("chmod 700 {}", state.display())),
        "{err}"
    );
    assert_eq!(
        err.matches("chmod 700").count(),
        1,
        "warned more than once: {err}"
    );
}

#[test]
fn secrets_from_files_and_credentials_never_reach_any_output() {
    let w = World::new("secret-files", 300.0);
    w.declare_queues();
    let dir = tempfile::tempdir().expect("tmp");
    let wrong_key = "xkeysib-WRONGFILEKEY-5151";
    let amqp_pass = "PW-FILE-SECRET-8888";
    let pg_pass = "PG-SECRET-6363";
    let secrets = [KEY, wrong_key, amqp_pass, pg_pass];
    let key_file = write_secret(dir.path(), "key", KEY, 0o600);
    let wrong_key_file = write_secret(dir.path(), "wrong-key", wrong_key, 0o600);
    let open_key_file = write_secret(dir.path(), "open-key", KEY, 0o644);
    let bad_url_file = write_secret(
        dir.path(),
        "bad-url",
        &format!("amqp://guest:{amqp_pass}@127.0.0.1:1/%2f"),
        0o600,
    );
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).expect("mkdir");
    write_secret(&creds, "sendinblue-api-key", KEY, 0o400);
    write_secret(&creds, "queue-service-url", AMQP, 0o400);
    let pg_pass_file = write_secret(dir.path(), "pg-pass", pg_pass, 0o600);
    let f = |p: &Path| p.display().to_string();

    // Works: the key from --api-key-file, from SENDINBLUE_API_KEY_FILE, and everything
    // from systemd credentials.
    type Run<'a> = (&'a str, Vec<(&'a str, String)>, Vec<String>);
    let ok_runs: Vec<Run> = vec![
        (
            "--api-key-file",
            vec![],
            vec!["--api-key-file".into(), f(&key_file)],
        ),
        (
            "SENDINBLUE_API_KEY_FILE",
            vec![("SENDINBLUE_API_KEY_FILE", f(&key_file))],
            vec![],
        ),
        (
            "credentials",
            vec![("CREDENTIALS_DIRECTORY", f(&creds))],
            vec![],
        ),
    ];
    for (what, env, args) in ok_runs {
        let mut c = cmd(&w);
        c.env_remove("SENDINBLUE_API_KEY")
            .env_remove("QUEUE_SERVICE_URL");
        if what != "credentials" {
            c.env("QUEUE_SERVICE_URL", AMQP);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c
            .args(&args)
            .args(["--json", "credits"])
            .output()
            .expect("run");
        assert!(out.status.success(), "{what}: {}", text(&out));
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("warning"),
            "{what}: {}",
            text(&out)
        );
        assert_no_secret(&out, &secrets, what);
    }
    let calls = w.fake.state().account_calls;
    assert_eq!(calls, 3, "each run asked Brevo with the key from its file");

    // Fails, and says why without the secret.
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<String>, i32, &'a str);
    let failing: Vec<Case> = vec![
        (
            "wrong key in a file",
            vec![("SENDINBLUE_API_KEY_FILE", f(&wrong_key_file))],
            vec!["credits".into()],
            5,
            "API key",
        ),
        (
            "URL file, broker down",
            vec![("QUEUE_SERVICE_URL_FILE", f(&bad_url_file))],
            vec!["stats".into()],
            4,
            "guest:***@127.0.0.1:1",
        ),
        (
            "a value and a file",
            vec![
                ("SENDINBLUE_API_KEY", KEY.into()),
                ("SENDINBLUE_API_KEY_FILE", f(&key_file)),
            ],
            vec!["credits".into()],
            2,
            "SENDINBLUE_API_KEY_FILE",
        ),
        (
            "missing key file",
            vec![],
            vec![
                "--api-key-file".into(),
                f(&dir.path().join("none")),
                "credits".into(),
            ],
            2,
            "--api-key-file",
        ),
        (
            "amqps, nothing listening",
            vec![(
                "QUEUE_SERVICE_URL",
                format!("amqps://guest:{amqp_pass}@127.0.0.1:1/%2f"),
            )],
            vec!["stats".into()],
            4,
            "amqps://guest:***@",
        ),
        (
            "Brevo over http:// off loopback",
            vec![("SENDINBLUE_URL", "http://api.brevo.invalid/v3".into())],
            vec!["credits".into()],
            2,
            "https://",
        ),
        (
            "Pushgateway password off loopback in clear",
            vec![
                ("PUSHGATEWAY_URL", "http://pushgateway.invalid:9091".into()),
                ("PUSHGATEWAY_USER", "acaso".into()),
                ("PUSHGATEWAY_PASSWORD_FILE", f(&pg_pass_file)),
            ],
            vec!["stats".into()],
            2,
            "https://",
        ),
    ];
    for (what, env, args, code, hint) in failing {
        let mut c = cmd(&w);
        if env.iter().any(|(k, _)| k.starts_with("SENDINBLUE_API_KEY")) {
            c.env_remove("SENDINBLUE_API_KEY");
        }
        if env.iter().any(|(k, _)| k.starts_with("QUEUE_SERVICE_URL")) {
            c.env_remove("QUEUE_SERVICE_URL");
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.args(&args).output().expect("run");
        assert_eq!(out.status.code(), Some(code), "{what}: {}", text(&out));
        assert!(text(&out).contains(hint), "{what}: {}", text(&out));
        assert_no_secret(&out, &secrets, what);
    }

    // A key file other users can read works, with a warning naming the fix.
    let out = cmd(&w)
        .env_remove("SENDINBLUE_API_KEY")
        .env("SENDINBLUE_API_KEY_FILE", f(&open_key_file))
        .arg("credits")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("readable by other users")
            && err.contains(&format!("chmod 600 {}", open_key_file.display())),
        "{err}"
    );
    assert_no_secret(&out, &secrets, "open key file");

    // --help names the file options and shows no value.
    let out = cmd(&w)
        .env("SENDINBLUE_API_KEY_FILE", f(&key_file))
        .env("PUSHGATEWAY_PASSWORD", pg_pass)
        .arg("--help")
        .output()
        .expect("help");
    let help = text(&out);
    for opt in [
        "--api-key-file",
        "--amqp-url-file",
        "--amqp-ca-file",
        "--pushgateway-user",
        "--pushgateway-password-file",
        "--pushgateway-ca-file",
    ] {
        assert!(help.contains(opt), "--help lacks {opt}");
    }
    assert_no_secret(&out, &secrets, "--help");
}

#[test]
fn amqps_to_a_real_tls_listener_trusts_only_the_given_ca() {
    let certs = TestCerts::make();
    let node = PrivateNode::start(NodeOptions {
        tls: Some(certs.server()),
    });
    let pass = "AMQPS-SECRET-3131";
    for args in [
        &["add_user", "acaso", pass][..],
        &["set_permissions", "-p", "/", "acaso", ".*", ".*", ".*"],
    ] {
        let out = node.ctl(args);
        assert!(out.status.success(), "rabbitmqctl {args:?}: {}", text(&out));
    }
    let port = node.tls_port.expect("tls port");
    let w = World::new("amqps", 300.0);
    let run = |url: &str, ca: Option<&Path>, args: &[&str], stdin: Option<String>| {
        let mut c = cmd(&w);
        c.env("QUEUE_SERVICE_URL", url);
        if let Some(ca) = ca {
            c.env("ACASO_MAIL_AMQP_CA_FILE", ca);
        }
        if let Some(s) = stdin {
            c.write_stdin(s);
        }
        let out = c.args(["--now", NOW]).args(args).output().expect("run");
        assert_no_secret(&out, &[pass], &format!("{args:?}"));
        out
    };
    let url = format!("amqps://acaso:{pass}@localhost:{port}/%2f");
    let jobs: String = (0..3)
        .map(|i| {
            format!(
                "{}\n",
                job(
                    &format!("tls{i}@example.org"),
                    9,
                    "2026-11-28T10:00:00-03:00"
                )
            )
        })
        .collect();
    let out = run(
        &url,
        Some(&certs.ca()),
        &["publish", "--file", "-"],
        Some(jobs),
    );
    assert!(out.status.success(), "publish over amqps: {}", text(&out));
    let out = run(
        &url,
        Some(&certs.ca()),
        &["drain-hourly", "--limit", "2"],
        None,
    );
    assert!(out.status.success(), "drain over amqps: {}", text(&out));
    // The screen of the queue's head (its own raw AMQP connection) speaks TLS too.
    assert!(!text(&out).contains("screening"), "{}", text(&out));
    assert_eq!(w.fake.accepted().len(), 2);
    // The certificate names 127.0.0.1 too.
    let by_ip = format!("amqps://acaso:{pass}@127.0.0.1:{port}/%2f");
    let out = run(&by_ip, Some(&certs.ca()), &["--json", "stats"], None);
    assert!(out.status.success(), "amqps by IP: {}", text(&out));
    assert_eq!(
        stdout_json(&out)["queue"]["ready"].as_u64(),
        Some(1),
        "{}",
        text(&out)
    );

    // Not trusted: the wrong CA, or none (the built-in roots do not know the test CA).
    for ca in [Some(certs.wrong_ca()), None] {
        let out = run(&url, ca.as_deref(), &["stats"], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{ca:?}: {err}");
        assert!(
            err.contains("certificate of RabbitMQ")
                && err.contains("not trusted")
                && err.contains("--amqp-ca-file"),
            "{ca:?}: {err}"
        );
        assert!(err.contains("amqps://acaso:***@localhost"), "{err}");
    }
    // A CA file given for a plain amqp:// URL is a mistake, said before any I/O.
    let out = run(&node.amqp_url(), Some(&certs.ca()), &["stats"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("amqps://"), "{}", text(&out));
}

/// A real Pushgateway with a --web.config.file (TLS and basic auth), on a free port.
struct SecurePushgateway {
    port: u16,
    child: std::process::Child,
}

impl SecurePushgateway {
    fn start(dir: &Path, certs: &TestCerts, user: &str, password: &str) -> Self {
        let out = std::process::Command::new("htpasswd")
            .args(["-nbBC", "10", user, password])
            .output()
            .expect("htpasswd must be installed: apt-get install apache2-utils");
        assert!(out.status.success(), "htpasswd: {}", text(&out));
        let line = String::from_utf8_lossy(&out.stdout);
        let hash = line
            .trim()
            .split_once(':')
            .map(|(_, h)| h.to_string())
            .expect("user:hash");
        let server = certs.server();
        let config = dir.join("web-config.yml");
        std::fs::write(
            &config,
            format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  {user}: '{hash}'\n",
                server.cert.display(),
                server.key.display()
            ),
        )
        .expect("web config");
        let port = free_port();
        let mut child = std::process::Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--web.config.file={}", config.display()))
            .arg("--persistence.file=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect(
                "prometheus-pushgateway must be installed: apt-get install prometheus-pushgateway",
            );
        for _ in 0..200 {
            if port_open(port) {
                return SecurePushgateway { port, child };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("prometheus-pushgateway did not listen on {port}");
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// GET /metrics with `auth`: the status, and the body when 200.
    fn metrics(&self, ca: &Path, auth: Option<(&str, &str)>) -> (u16, String) {
        let pem = std::fs::read(ca).expect("ca");
        let certs: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .tls_config(
                    ureq::tls::TlsConfig::builder()
                        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                        .build(),
                )
                .build(),
        );
        let mut req = agent.get(format!("{}/metrics", self.url()));
        if let Some((u, p)) = auth {
            let out = std::process::Command::new("sh")
                .args(["-c", "printf '%s' \"$0\" | base64 -w0"])
                .arg(format!("{u}:{p}"))
                .output()
                .expect("base64");
            req = req.header(
                "authorization",
                format!("Basic {}", String::from_utf8_lossy(&out.stdout)),
            );
        }
        let mut resp = req.call().expect("GET /metrics");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    }
}

impl Drop for SecurePushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pushgateway_basic_auth_over_https_with_the_password_from_a_file() {
    let certs = TestCerts::make();
    let dir = tempfile::tempdir().expect("tmp");
    let pass = "PG-PASS-SECRET-9494";
    let pg = SecurePushgateway::start(dir.path(), &certs, "acaso", pass);
    // The gateway really requires both: no auth is refused.
    assert_eq!(pg.metrics(&certs.ca(), None).0, 401);

    let w = World::new("pg-auth", 300.0);
    w.publish(
        &[job("pg@example.org", 9, "2026-11-28T10:00:00-03:00")],
        NOW,
    );
    let pass_file = write_secret(dir.path(), "pg-pass", pass, 0o600);
    let wrong_file = write_secret(dir.path(), "pg-wrong", "PG-WRONG-SECRET-1", 0o600);
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).expect("mkdir");
    write_secret(&creds, "pushgateway-password", pass, 0o400);
    let secrets = [pass, "PG-WRONG-SECRET-1"];
    let run = |env: &[(&str, String)], args: &[&str]| {
        let mut c = cmd(&w);
        c.env("PUSHGATEWAY_URL", pg.url())
            .env("PUSHGATEWAY_USER", "acaso");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.args(["--now", NOW]).args(args).output().expect("run");
        assert_no_secret(&out, &secrets, &format!("{env:?} {args:?}"));
        out
    };
    let ca = ("PUSHGATEWAY_CA_FILE", certs.ca().display().to_string());

    // The password from PUSHGATEWAY_PASSWORD_FILE: pushed.
    let out = run(
        &[
            ca.clone(),
            ("PUSHGATEWAY_PASSWORD_FILE", pass_file.display().to_string()),
        ],
        &["drain-hourly"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        text(&out)
    );
    let (status, body) = pg.metrics(&certs.ca(), Some(("acaso", pass)));
    assert_eq!(status, 200);
    assert!(
        body.lines().any(|l| l.starts_with("mails_sent_total{")
            && l.contains("subcommand=\"drain-hourly\"")
            && l.ends_with(" 1")),
        "{body}"
    );

    // From the systemd credential, and from --pushgateway-password-file: pushed.
    let out = run(
        &[
            ca.clone(),
            ("CREDENTIALS_DIRECTORY", creds.display().to_string()),
        ],
        &["stats"],
    );
    assert!(
        out.status.success() && !text(&out).contains("warning"),
        "{}",
        text(&out)
    );
    let file_flag = pass_file.display().to_string();
    let out = run(
        std::slice::from_ref(&ca),
        &["--pushgateway-password-file", &file_flag, "reprioritize"],
    );
    assert!(
        out.status.success() && !text(&out).contains("warning"),
        "{}",
        text(&out)
    );
    let (_, body) = pg.metrics(&certs.ca(), Some(("acaso", pass)));
    for sub in ["stats", "reprioritize"] {
        assert!(
            body.lines()
                .any(|l| l.starts_with("acaso_mail_last_run_success{")
                    && l.contains(&format!("subcommand=\"{sub}\""))
                    && l.ends_with(" 1")),
            "{sub} not pushed: {body}"
        );
    }

    // A wrong password: the run stands, the push is refused with a warning.
    let out = run(
        &[
            ca.clone(),
            (
                "PUSHGATEWAY_PASSWORD_FILE",
                wrong_file.display().to_string(),
            ),
        ],
        &["stats"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics not pushed") && err.contains("401"),
        "{err}"
    );

    // The gateway's certificate not trusted: said so, with the option that fixes it.
    let out = run(&[("PUSHGATEWAY_PASSWORD", pass.to_string())], &["stats"]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics not pushed") && err.contains("--pushgateway-ca-file"),
        "{err}"
    );
}
