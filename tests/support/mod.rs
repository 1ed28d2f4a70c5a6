//! Test harness: each test gets its own queue names, state directory and fake Brevo,
//! and runs the real binary against the real RabbitMQ on 127.0.0.1:5672.
#![allow(dead_code)]

pub mod fake_brevo;
pub mod node;
pub mod proxy;
pub mod schema;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use assert_cmd::Command;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;

pub use fake_brevo::{FakeBrevo, Fault};

pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const KEY: &str = "xkeysib-test-0123456789abcdef";

pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime")
    })
}

/// Runs a broker operation of the harness with a deadline, so a stuck broker fails the
/// test with a message instead of hanging the suite.
pub fn block_on<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    rt().block_on(async { tokio::time::timeout(std::time::Duration::from_secs(60), fut).await })
        .unwrap_or_else(|_| panic!("RabbitMQ did not finish {what} within 60 s"))
}

async fn connect() -> Connection {
    Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .expect("RabbitMQ must run on 127.0.0.1:5672 (rabbitmq-server -detached)")
}

/// A unique queue name for one test.
pub fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "test.{name}.{}.{}.{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One test's world.
pub struct World {
    pub queue: String,
    pub state: tempfile::TempDir,
    pub fake: FakeBrevo,
}

impl World {
    pub fn new(name: &str, credits: f64) -> Self {
        let state = tempfile::tempdir().expect("tempdir");
        // Private, as acaso-mail makes a state directory (else it warns on every run).
        std::fs::set_permissions(
            state.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod 700 the state directory");
        World {
            queue: unique(name),
            state,
            fake: FakeBrevo::start(KEY, credits),
        }
    }

    /// The binary, configured for this world only (nothing from the caller's env).
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("acaso-mail").expect("binary");
        for k in [
            "QUEUE_SERVICE_URL",
            "ACASO_MAIL_QUEUE",
            "SENDINBLUE_URL",
            "BREVO_URL",
            "SENDINBLUE_API_KEY",
            "BREVO_API_KEY",
            "SENDINBLUE_MAILS_PER_HOUR",
            "PUSHGATEWAY_URL",
            "ACASO_MAIL_TZ",
            "ACASO_MAIL_NOW",
            "ACASO_MAIL_STATE_DIR",
            "NO_COLOR",
        ] {
            c.env_remove(k);
        }
        c.env("QUEUE_SERVICE_URL", AMQP)
            .env("ACASO_MAIL_QUEUE", &self.queue)
            .env("SENDINBLUE_URL", &self.fake.url)
            .env("SENDINBLUE_API_KEY", KEY)
            .env("ACASO_MAIL_STATE_DIR", self.state.path())
            .env("ACASO_MAIL_TIMEOUT", "5")
            .timeout(std::time::Duration::from_secs(120));
        c
    }

    /// Runs `acaso-mail --now NOW --json ARGS...`, asserts it succeeded, and returns the
    /// one JSON document it printed.
    pub fn json(&self, now: &str, args: &[&str]) -> Value {
        let out = self
            .cmd()
            .args(["--now", now, "--json"])
            .args(args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout_json(&out)
    }

    /// Lets acaso-mail declare this world's queues (a publish to a missing queue is
    /// dropped by the broker), without calling Brevo.
    pub fn declare_queues(&self) {
        self.cmd()
            .env_remove("SENDINBLUE_API_KEY")
            .arg("stats")
            .assert()
            .success();
    }

    /// Waits (at most 60 s) until the main queue holds at least `n` messages.
    pub fn wait_until_ready(&self, n: u32) {
        let start = std::time::Instant::now();
        while self.ready(&self.queue) < n && start.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Same as [`World::cmd`], as a std command (for tests that signal the process).
    pub fn std_cmd(&self) -> std::process::Command {
        let c = self.cmd();
        let mut s = std::process::Command::new(assert_cmd::cargo::cargo_bin("acaso-mail"));
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => s.env(k, v),
                None => s.env_remove(k),
            };
        }
        s
    }

    /// Publishes JSON Lines through `acaso-mail publish --file -`.
    pub fn publish(&self, jobs: &[Value], now: &str) {
        let input: String = jobs.iter().map(|j| format!("{j}\n")).collect();
        self.cmd()
            .args(["--now", now, "publish", "--file", "-"])
            .write_stdin(input)
            .assert()
            .success();
    }

    pub fn ready(&self, queue: &str) -> u32 {
        ready(queue)
    }

    /// Reads (and consumes) every message of a queue: (headers, body).
    pub fn take_all(&self, queue: &str) -> Vec<(FieldTable, Vec<u8>)> {
        block_on("take_all", async {
            let conn = connect().await;
            let ch = conn.create_channel().await.expect("channel");
            let mut out = Vec::new();
            while let Some(m) = ch
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .expect("get")
            {
                out.push((
                    m.delivery.properties.headers().clone().unwrap_or_default(),
                    m.delivery.data,
                ));
            }
            let _ = conn.close(200, "ok".into()).await;
            out
        })
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let base = self.queue.clone();
        let cleanup = async move {
            let conn = connect().await;
            for q in [
                base.clone(),
                format!("{base}.dead"),
                format!("{base}.reprioritize"),
                format!("{base}.retry.60s"),
                format!("{base}.retry.300s"),
                format!("{base}.retry.1800s"),
                format!("{base}.retry.3600s"),
            ] {
                if let Ok(ch) = conn.create_channel().await {
                    let _ = ch
                        .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
            }
            let _ = conn.close(200, "ok".into()).await;
        };
        // Cleanup must never hang a test: queues left behind are harmless.
        let done = rt().block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(20), cleanup).await
        });
        if done.is_err() {
            eprintln!("warning: deleting the queues of {} timed out", self.queue);
        }
    }
}

/// Ready messages in an existing queue.
pub fn ready(queue: &str) -> u32 {
    block_on("counting messages", async {
        let conn = connect().await;
        let ch = conn.create_channel().await.expect("channel");
        let q = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue exists");
        let _ = conn.close(200, "ok".into()).await;
        q.message_count()
    })
}

/// Declares a queue the way the legacy Acaso code does: non-durable, x-max-priority 255.
pub fn declare_legacy_queue(queue: &str) {
    block_on("declaring a legacy queue", async {
        let conn = connect().await;
        let ch = conn.create_channel().await.expect("channel");
        let mut args = FieldTable::default();
        args.insert("x-max-priority".into(), AMQPValue::LongInt(255));
        ch.queue_declare(queue.into(), QueueDeclareOptions::default(), args)
            .await
            .expect("declare legacy");
        let _ = conn.close(200, "ok".into()).await;
    });
}

/// Publishes raw bodies the legacy way: transient, no message_id, only a priority.
pub fn raw_publish(queue: &str, bodies: &[(Vec<u8>, u8)]) {
    block_on("publishing raw messages", async {
        let conn = connect().await;
        let ch = conn.create_channel().await.expect("channel");
        for (body, priority) in bodies {
            ch.basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_priority(*priority),
            )
            .await
            .expect("publish");
        }
        let _ = conn.close(200, "ok".into()).await;
    });
}

/// A generic-format job with a distinct recipient, due `deadline`.
pub fn job(to: &str, template: u32, deadline: &str) -> Value {
    serde_json::json!({"template_id": template, "to": [{"email": to, "name": "Test"}],
                       "params": {"WHO": to}, "deadline": deadline})
}

/// Recipients of the mails the fake accepted, in order.
pub fn recipients(fake: &FakeBrevo) -> Vec<String> {
    fake.accepted()
        .iter()
        .map(|m| m["to"][0]["email"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Sends `sig` (TERM, INT, ...) to a child process.
pub fn signal(child: &std::process::Child, sig: &str) {
    let pid = child.id().to_string();
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid])
        .status()
        .expect("kill");
    assert!(ok.success(), "kill -{sig} {pid}");
}

pub fn stdout_json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

pub fn header_str(h: &FieldTable, key: &str) -> Option<String> {
    match h.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}

/// A real Prometheus Pushgateway (Debian package prometheus-pushgateway) on a free
/// port, stopped when dropped.
pub struct Pushgateway {
    pub url: String,
    child: std::process::Child,
}

impl Pushgateway {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut child = std::process::Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Debian's build persists to /var/lib/prometheus by default: keep each test's
            // gateway in memory, its own.
            .arg("--persistence.file=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect(
                "prometheus-pushgateway must be installed: apt-get install prometheus-pushgateway",
            );
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Pushgateway { url, child };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("prometheus-pushgateway did not listen on {port}");
    }

    /// The value of a metric line whose name and labels contain all of `parts`.
    pub fn value(&self, name: &str, parts: &[&str]) -> Option<f64> {
        let text = ureq::get(&format!("{}/metrics", self.url))
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
