//! Test harness: each test gets its own queue names, state directory and fake Brevo,
//! and runs the real binary against the real RabbitMQ on 127.0.0.1:5672.
#![allow(dead_code)]

pub mod census;
pub mod fake_brevo;
pub mod node;
pub mod pg;
pub mod proxy;
pub mod raw_amqp;
pub mod schema;

use std::io::Read;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// The caller's variables a child keeps: `PATH` (the shells some tests run through
/// `script` and `bash` look up their commands), `HOME` (where a program with no
/// `--state-dir` would look), and `TERM` (`script` gives its child a terminal of this
/// type). Everything else is cleared; see [`World::env`].
pub const INHERITED: &[&str] = &["PATH", "HOME", "TERM"];

/// How long any child of a test may run before it is killed and the test fails.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

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

/// The binary with none of the caller's environment but [`INHERITED`], for tests
/// without a [`World`]; run it with [`output_within`] or [`spawn`].
pub fn bare_cmd() -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("acaso-mail"));
    c.env_clear();
    for k in INHERITED {
        if let Some(v) = std::env::var_os(k) {
            c.env(k, v);
        }
    }
    c
}

/// One test's world.
pub struct World {
    /// The broker its commands use: the shared one ([`AMQP`]) unless made with
    /// [`World::on`].
    pub amqp: String,
    pub queue: String,
    pub state: tempfile::TempDir,
    /// The state in PostgreSQL (a database of its own on the tests' private cluster)
    /// when the suite runs with `ACASO_MAIL_TEST_STATE=postgres` ([`state_in_postgres`]);
    /// else `None`: SQLite in `state`.
    pub state_url: Option<String>,
    pub fake: FakeBrevo,
}

/// Whether this run of the suite keeps the state of its worlds in PostgreSQL
/// (`ACASO_MAIL_TEST_STATE=postgres`, as `scripts/test` runs the state-touching modules a
/// second time), instead of SQLite in each world's state directory.
pub fn state_in_postgres() -> bool {
    std::env::var("ACASO_MAIL_TEST_STATE").is_ok_and(|v| v == "postgres")
}

impl World {
    pub fn new(name: &str, credits: f64) -> Self {
        Self::on(AMQP, name, credits)
    }

    /// A world whose commands use the broker at `amqp` (a [`node::PrivateNode`]).
    pub fn on(amqp: &str, name: &str, credits: f64) -> Self {
        let state = tempfile::tempdir().expect("tempdir");
        // Private, as acaso-mail makes a state directory (else it warns on every run).
        std::fs::set_permissions(
            state.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod 700 the state directory");
        World {
            amqp: amqp.to_string(),
            queue: unique(name),
            state,
            state_url: state_in_postgres().then(|| pg::shared().new_database()),
            fake: FakeBrevo::start(KEY, credits),
        }
    }

    /// The variables of this world, the only ones its commands see besides
    /// [`INHERITED`]: every child starts from an empty environment, so nothing the
    /// caller exported (`ACASO_MAIL_LOCK_WAIT`, `ACASO_MAIL_CONCURRENCY`,
    /// `SENDINBLUE_API_KEY`, `RUST_BACKTRACE`...) can change what a test sees.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = INHERITED
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        for (k, v) in [
            ("QUEUE_SERVICE_URL", self.amqp.clone()),
            ("ACASO_MAIL_QUEUE", self.queue.clone()),
            ("SENDINBLUE_URL", self.fake.url.clone()),
            ("SENDINBLUE_API_KEY", KEY.to_string()),
            (
                "ACASO_MAIL_STATE_DIR",
                self.state.path().display().to_string(),
            ),
            ("ACASO_MAIL_TIMEOUT", "5".to_string()),
        ] {
            env.push((k.to_string(), v));
        }
        if let Some(url) = &self.state_url {
            env.push(("ACASO_MAIL_STATE_URL".into(), url.clone()));
        }
        env
    }

    /// Gives `c` exactly this world's environment (see [`World::env`]).
    pub fn apply_env(&self, c: &mut std::process::Command) {
        c.env_clear();
        for (k, v) in self.env() {
            c.env(k, v);
        }
    }

    /// The binary, configured for this world only (nothing from the caller's env), with
    /// a timeout.
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("acaso-mail").expect("binary");
        c.env_clear();
        for (k, v) in self.env() {
            c.env(k, v);
        }
        c.timeout(CHILD_TIMEOUT);
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
    /// dropped by the broker), as a new deploy's set-up does: `publish -n 0`, the one
    /// command that creates queues.
    pub fn declare_queues(&self) {
        self.cmd()
            .env_remove("SENDINBLUE_API_KEY")
            .args(["publish", "-n", "0"])
            .assert()
            .success();
    }

    /// Waits (at most 60 s) until the main queue holds at least `n` messages; fails the
    /// test when it does not.
    pub fn wait_until_ready(&self, n: u32) {
        let mut last = 0;
        wait_until(
            &format!("{} to hold at least {n} messages", self.queue),
            Duration::from_secs(60),
            || {
                last = self.ready(&self.queue);
                last >= n
            },
        );
    }

    /// Waits (at most 30 s) until `queue` holds exactly `n` ready messages (the broker
    /// returns a dead client's unacked messages asynchronously); fails the test with the
    /// last count when it does not.
    pub fn wait_until_ready_exactly(&self, queue: &str, n: u32) {
        let mut last = 0;
        let done = wait_for(Duration::from_secs(30), || {
            last = self.ready(queue);
            last == n
        });
        assert!(
            done,
            "{queue} holds {last} ready messages, not {n}, after 30 s"
        );
    }

    /// Same as [`World::cmd`], as a std command (for tests that signal the process):
    /// run it with [`spawn`], which keeps the timeout.
    pub fn std_cmd(&self) -> std::process::Command {
        let mut s = std::process::Command::new(assert_cmd::cargo::cargo_bin("acaso-mail"));
        self.apply_env(&mut s);
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
        delete_family_on(&self.amqp, &self.queue);
    }
}

/// Deletes a main queue and its retry and parking queues, if they exist.
pub fn delete_family(base: &str) {
    delete_family_on(AMQP, base);
}

/// The same, on the broker at `amqp` (a private node may be gone already: then there
/// is nothing to delete).
pub fn delete_family_on(amqp: &str, base: &str) {
    let base = base.to_string();
    let name = base.clone();
    let amqp = amqp.to_string();
    let cleanup = async move {
        let Ok(conn) = Connection::connect(&amqp, ConnectionProperties::default()).await else {
            return;
        };
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
        eprintln!("warning: deleting the queues of {name} timed out");
    }
}

/// Deletes one queue on the shared broker (a test's way to take a side queue away).
pub fn delete_queue(queue: &str) {
    let q = queue.to_string();
    rt().block_on(async move {
        let conn = Connection::connect(AMQP, ConnectionProperties::default())
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("queue.delete");
        let _ = conn.close(200, "ok".into()).await;
    });
}

/// Ready messages in an existing queue.
pub fn ready(queue: &str) -> u32 {
    passive(queue).unwrap_or_else(|| panic!("queue {queue} does not exist"))
}

/// Ready messages in a queue, or `None` when it does not exist (asked passively:
/// nothing is created).
fn passive(queue: &str) -> Option<u32> {
    block_on("asking for a queue", async {
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
            .ok();
        let _ = conn.close(200, "ok".into()).await;
        q.map(|q| q.message_count())
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
    let with: Vec<(Vec<u8>, BasicProperties)> = bodies
        .iter()
        .map(|(b, p)| (b.clone(), BasicProperties::default().with_priority(*p)))
        .collect();
    raw_publish_with(queue, &with);
}

/// Publishes messages with the given properties to a queue, as another program would.
pub fn raw_publish_with(queue: &str, messages: &[(Vec<u8>, BasicProperties)]) {
    block_on("publishing raw messages", async {
        let conn = connect().await;
        let ch = conn.create_channel().await.expect("channel");
        for (body, props) in messages {
            ch.basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                props.clone(),
            )
            .await
            .expect("publish");
        }
        let _ = conn.close(200, "ok".into()).await;
    });
}

/// The counts a summary (`--json`) gives for `fields`, in order.
pub fn counts(summary: &Value, fields: &[&str]) -> Vec<Option<u64>> {
    fields.iter().map(|f| summary[*f].as_u64()).collect()
}

/// Declares the world's queues and publishes one mail whose deadline passed the day
/// before the tests' "now", raw (no message id, as the legacy producer publishes):
/// returns its body and the name of the parking queue.
pub fn one_expired_mail(w: &World) -> (Vec<u8>, String) {
    w.declare_queues();
    let body =
        serde_json::to_vec(&job("late@example.org", 3, "2026-11-26T10:00:00-03:00")).expect("json");
    raw_publish(&w.queue, &[(body.clone(), 5)]);
    (body, format!("{}.dead", w.queue))
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

/// Sends `sig` (TERM, INT, ...) to a running child.
pub fn signal(child: &Running, sig: &str) {
    let pid = child.id().to_string();
    let out = output_within(
        std::process::Command::new("kill").args([&format!("-{sig}"), &pid]),
        Duration::from_secs(10),
    );
    assert!(
        out.status.success(),
        "kill -{sig} {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts that a run exited with `code` (its stderr in the message) and returns the
/// one JSON document it printed.
pub fn json_of(out: &std::process::Output, code: i32) -> Value {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_json(out)
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
        require_tool("prometheus-pushgateway", "prometheus-pushgateway");
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

/// Polls `done` every 20 ms until it holds or `timeout` passes; says which.
pub fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `done` until it holds; fails the test, naming `what`, when `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, done: impl FnMut() -> bool) {
    assert!(
        wait_for(timeout, done),
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// Whether process `pid` has `path` open: a run opens its state directory's
/// `run.lock` only to take the run lock, so while someone else holds that lock, a run
/// with the file open is waiting for it (read from Linux's `/proc/PID/fd`).
pub fn has_open(pid: u32, path: &std::path::Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|p| p == path))
}

/// Waits (at most 60 s) until `child` has the run lock of `state_dir` open: it is
/// waiting for a lock the test holds, rather than still starting up.
pub fn wait_until_waiting_for_lock(child: &mut Running, state_dir: &std::path::Path) {
    let lock = state_dir.join("run.lock");
    let lock = std::fs::canonicalize(&lock).unwrap_or(lock);
    let pid = child.id();
    wait_until(
        &format!("{} to wait for {}", child.what, lock.display()),
        Duration::from_secs(60),
        || has_open(pid, &lock) || !child.is_running(),
    );
}

/// Messages delivered and not yet acknowledged in each of `queues` on the shared
/// broker, as its queues count them (`rabbitmqctl list_queues`): what a killed client
/// held until the broker notices the connection is gone and requeues them.
pub fn unacked(queues: &[&str]) -> Vec<u32> {
    let out = output_within(
        std::process::Command::new("rabbitmqctl").args([
            "-q",
            "list_queues",
            "--no-table-headers",
            "name",
            "messages_unacknowledged",
        ]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "rabbitmqctl list_queues: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    queues
        .iter()
        .map(|q| {
            text.lines()
                .filter_map(|l| l.split_once('\t'))
                .find(|(name, _)| name == q)
                .and_then(|(_, n)| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("rabbitmqctl does not list queue {q}: {text}"))
        })
        .collect()
}

/// Runs a command to completion, killing it and failing the test when it takes longer
/// than `limit` (a tool or a child that hangs must not hang the suite).
pub fn output_within(c: &mut std::process::Command, limit: Duration) -> std::process::Output {
    let what = format!("{c:?}");
    spawn_within(
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
        limit,
    )
    .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
    .wait_with_output()
}

/// Starts a command whose stdout and stderr are piped (see [`spawn`]); it is killed,
/// failing the test, when it runs longer than [`CHILD_TIMEOUT`].
pub fn spawn(c: &mut std::process::Command) -> Running {
    let what = format!("{c:?}");
    spawn_within(
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
        CHILD_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("cannot start {what}: {e}"))
}

fn spawn_within(c: &mut std::process::Command, limit: Duration) -> std::io::Result<Running> {
    let what = format!("{:?}", c.get_program());
    let mut child = c.spawn()?;
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    Ok(Running {
        child,
        what,
        deadline: Instant::now() + limit,
        limit,
        stdout: Some(stdout),
        stderr: Some(stderr),
    })
}

/// A child process with a deadline: waiting past it kills the child and fails the
/// test; dropping it kills the child.
pub struct Running {
    child: std::process::Child,
    what: String,
    deadline: Instant,
    limit: Duration,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Running {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILLs the child, asserting that it was still running, and returns its
    /// output once it is gone; the status says it died of SIGKILL.
    pub fn kill_mid_run(mut self) -> std::process::Output {
        assert!(
            self.is_running(),
            "{} had already exited before the kill: the kill did not land mid-run",
            self.what
        );
        let out = self.kill9();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "{} was not ended by the SIGKILL: {:?}",
            self.what_of(&out),
            out.status
        );
        out
    }

    /// SIGKILLs the child if it still runs, and returns its output once it is gone:
    /// `Err` (with that output) when it had already exited, so the kill did not land
    /// mid-run.
    pub fn try_kill_mid_run(mut self) -> Result<std::process::Output, std::process::Output> {
        if !self.is_running() {
            return Err(self.wait_with_output());
        }
        // It may still exit on its own between the check and the signal.
        let out = self.kill9();
        if std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(9) {
            Ok(out)
        } else {
            Err(out)
        }
    }

    fn kill9(&mut self) -> std::process::Output {
        self.child.kill().expect("SIGKILL");
        self.wait_with_output()
    }

    fn what_of(&self, out: &std::process::Output) -> String {
        format!(
            "{} (stderr: {})",
            self.what,
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Waits for the child to exit and returns what it wrote; kills it and fails the
    /// test when it is still running at its deadline.
    pub fn wait_with_output(&mut self) -> std::process::Output {
        let status = loop {
            match self.child.try_wait().expect("wait") {
                Some(status) => break status,
                None if Instant::now() >= self.deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let err = self
                        .stderr
                        .take()
                        .and_then(|h| h.join().ok())
                        .unwrap_or_default();
                    panic!(
                        "{} still ran after {:?}; killed. stderr: {}",
                        self.what,
                        self.limit,
                        String::from_utf8_lossy(&err)
                    );
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            h.and_then(|h| h.join().ok()).unwrap_or_default()
        };
        std::process::Output {
            status,
            stdout: join(self.stdout.take()),
            stderr: join(self.stderr.take()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Fails the test, naming the tool and the Debian package that has it, when `tool` is
/// not on `PATH`: a test that needs a tool never passes by skipping its checks.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool)).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    });
    assert!(
        found,
        "{tool} is not installed, and this test needs it: apt-get install {package} \
         (bash .ci/run installs it)"
    );
}

/// Whether a queue exists (asked passively: nothing is created).
pub fn queue_exists(queue: &str) -> bool {
    passive(queue).is_some()
}

/// The check named `name` in `doctor --json`'s answer.
pub fn doctor_check<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {doc}"))
}

/// Asserts that `doctor --json`'s lock check passed and names where the state lives.
pub fn assert_lock_ok_at(doc: &serde_json::Value, place: &str) {
    let lock = doctor_check(doc, "lock");
    assert_eq!(lock["ok"], true, "{doc}");
    assert!(
        lock["detail"].as_str().is_some_and(|d| d.contains(place)),
        "the lock check does not name {place}: {doc}"
    );
}

/// A new temporary directory, private (0700) as a state directory must be; `what` names it.
pub fn private_dir(what: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{what}: {e}"));
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap_or_else(|e| panic!("chmod 700 {what}: {e}"));
    dir
}
