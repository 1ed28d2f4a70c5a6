//! A private RabbitMQ node for tests that must reconfigure, stop or crash a broker,
//! which the shared one on 127.0.0.1:5672 must never be.
//!
//! ```ignore
//! let node = PrivateNode::start(NodeOptions { tls: Some(certs.server()) });
//! let url = node.amqps_url("localhost").unwrap(); // or node.amqp_url()
//! node.stop_app();      // the broker refuses connections; the Erlang node lives on
//! node.start_app();     // and comes back, with its durable queues
//! node.kill9();         // a crash: no clean shutdown, unacked messages requeued on start
//! node.stop();          // a clean stop (also done on drop)
//! ```
//!
//! Each node runs `rabbitmq-server -detached` (the server script itself, not Debian's
//! wrapper, which would switch to the `rabbitmq` user) with everything of its own in a
//! temporary directory: node name `acaso-test-PID-N@localhost`, AMQP (and AMQPS) and
//! distribution ports picked free on 127.0.0.1, Mnesia and log directories, an empty
//! plugin list, a configuration file, a pid file, and an Erlang cookie (its `HOME` is
//! the temporary directory, so it and its `rabbitmqctl -n NODE` calls share a cookie and
//! nothing of the shared node is touched). It registers with the host's epmd, as every
//! node does. Start-up takes 5 to 15 s. Drop stops the node (killing it if a stop does
//! not work) and deletes the directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The certificate files of a TLS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// CA bundle the node trusts for client certificates.
    pub ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// How to start a node.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Also listen for AMQPS, with these certificates.
    pub tls: Option<TlsFiles>,
}

/// A running private RabbitMQ node (user guest/guest, vhost `/`).
pub struct PrivateNode {
    /// Its Erlang node name.
    pub name: String,
    /// Its AMQP port on 127.0.0.1.
    pub port: u16,
    /// Its AMQPS port on 127.0.0.1, when started with TLS.
    pub tls_port: Option<u16>,
    /// Its Erlang distribution port.
    pub dist_port: u16,
    dir: tempfile::TempDir,
    running: bool,
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
        .is_ok()
}

/// RabbitMQ's own scripts: Debian's /usr/sbin ones are a wrapper that runs them as the
/// `rabbitmq` user, in its home, with its cookie.
fn rabbit_bin(name: &str) -> PathBuf {
    let direct = Path::new("/usr/lib/rabbitmq/bin").join(name);
    if direct.exists() {
        direct
    } else {
        PathBuf::from(name)
    }
}

impl PrivateNode {
    /// Starts a node and waits (at most 90 s) until its listeners accept connections.
    pub fn start(opts: NodeOptions) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "acaso-test-{}-{}@localhost",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::tempdir().expect("node dir");
        let d = dir.path();
        for sub in ["mnesia", "log"] {
            std::fs::create_dir(d.join(sub)).expect("node subdir");
        }
        std::fs::write(d.join("enabled_plugins"), "[].\n").expect("plugins");
        // Loopback only, the distribution port included.
        std::fs::write(
            d.join("rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS=127.0.0.1\nexport ERL_FLAGS=\"-kernel inet_dist_use_interface {127,0,0,1}\"\n",
        )
        .expect("env conf");
        let port = free_port();
        let dist_port = free_port();
        let tls_port = opts.tls.as_ref().map(|_| free_port());
        let mut conf = String::from("loopback_users.guest = true\n");
        if let (Some(tls), Some(p)) = (&opts.tls, tls_port) {
            conf.push_str(&format!(
                "listeners.ssl.default = 127.0.0.1:{p}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n",
                tls.ca.display(),
                tls.cert.display(),
                tls.key.display()
            ));
        }
        std::fs::write(d.join("rabbitmq.conf"), conf).expect("conf");
        let mut node = PrivateNode {
            name,
            port,
            tls_port,
            dist_port,
            dir,
            running: false,
        };
        let out = node
            .command("rabbitmq-server")
            .arg("-detached")
            .output()
            .expect("rabbitmq-server must be installed: apt-get install rabbitmq-server");
        assert!(
            out.status.success(),
            "rabbitmq-server -detached ({}): {}",
            node.name,
            String::from_utf8_lossy(&out.stderr)
        );
        node.running = true;
        node.wait_listening(Duration::from_secs(90));
        node
    }

    /// `rabbitmq-server` or `rabbitmqctl` with this node's environment.
    fn command(&self, script: &str) -> Command {
        let d = self.dir.path();
        let mut c = Command::new(rabbit_bin(script));
        c.current_dir(d)
            .env("HOME", d)
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env("RABBITMQ_PID_FILE", self.pid_file());
        if script == "rabbitmqctl" {
            // The CLI picks its own distribution port near the node's: keep it default.
            c.env_remove("RABBITMQ_DIST_PORT");
        }
        c
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("rabbitmq.pid")
    }

    /// Runs `rabbitmqctl -n NODE ARGS...` (at most 120 s) and returns its output.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut c = self.command("rabbitmqctl");
        c.args(["-n", &self.name]).args(args);
        run_with_timeout(c, Duration::from_secs(120))
    }

    fn ctl_ok(&self, args: &[&str]) {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "rabbitmqctl -n {} {args:?}: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// `amqps://guest:guest@HOST:TLSPORT/%2f` (HOST as the certificate names it).
    pub fn amqps_url(&self, host: &str) -> Option<String> {
        self.tls_port
            .map(|p| format!("amqps://guest:guest@{host}:{p}/%2f"))
    }

    /// The node's log (for failure messages).
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("log")) {
            for e in entries.flatten() {
                text.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        text
    }

    fn wait_listening(&self, limit: Duration) {
        let start = Instant::now();
        let ports: Vec<u16> = std::iter::once(self.port).chain(self.tls_port).collect();
        while !ports.iter().all(|p| port_open(*p)) {
            assert!(
                start.elapsed() < limit,
                "private RabbitMQ node {} did not listen on {ports:?} within {}s; its log:\n{}",
                self.name,
                limit.as_secs(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the broker application: connections are closed and refused, the Erlang
    /// node keeps running.
    pub fn stop_app(&self) {
        self.ctl_ok(&["stop_app"]);
    }

    /// Starts the broker application again and waits until it listens.
    pub fn start_app(&self) {
        self.ctl_ok(&["start_app"]);
        self.wait_listening(Duration::from_secs(90));
    }

    /// Kills the node's Erlang VM with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let start = Instant::now();
            while Path::new(&format!("/proc/{pid}")).exists()
                && start.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.running = false;
    }

    /// Starts a node stopped by [`PrivateNode::kill9`] or [`PrivateNode::stop`] again,
    /// same name, ports and data.
    pub fn restart(&mut self) {
        let out = self
            .command("rabbitmq-server")
            .arg("-detached")
            .output()
            .expect("rabbitmq-server");
        assert!(out.status.success(), "rabbitmq-server -detached (restart)");
        self.running = true;
        self.wait_listening(Duration::from_secs(90));
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Stops the node cleanly (`rabbitmqctl stop PIDFILE` waits for it to exit); kills
    /// it if that fails.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let pid_file = self.pid_file();
        let out = self.ctl(&["stop", &pid_file.display().to_string()]);
        if !out.status.success() {
            self.kill9();
        }
        self.running = false;
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a command, killing it after `limit`.
fn run_with_timeout(mut c: Command, limit: Duration) -> Output {
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("command timed out after {}s: {c:?}", limit.as_secs());
        }
    }
}

/// Certificates made with openssl for TLS tests: a CA, a server certificate it signed
/// for `localhost` and 127.0.0.1, and an unrelated CA that signed nothing here.
pub struct TestCerts {
    pub dir: tempfile::TempDir,
}

impl TestCerts {
    /// Makes them (a second or two).
    pub fn make() -> Self {
        let dir = tempfile::tempdir().expect("certs dir");
        let d = dir.path();
        super::pg::pki::make(d);
        // The servers under test may run as another user (a Debian-wrapped RabbitMQ):
        // these throwaway files are world-readable on purpose.
        for f in ["ca.pem", "other-ca.pem", "server.pem", "server.key"] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
        }
        TestCerts { dir }
    }

    /// The CA that signed the server certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A CA that signed nothing here.
    pub fn wrong_ca(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    /// The server's certificate files.
    pub fn server(&self) -> TlsFiles {
        TlsFiles {
            ca: self.ca(),
            cert: self.dir.path().join("server.pem"),
            key: self.dir.path().join("server.key"),
        }
    }
}

/// The harness itself: a node stops and starts its app, survives a crash and a restart.
#[test]
fn a_private_node_stops_starts_crashes_and_restarts() {
    let mut node = PrivateNode::start(NodeOptions::default());
    assert!(port_open(node.port));
    assert_ne!(node.port, 5672, "never the shared broker's port");
    node.stop_app();
    assert!(!port_open(node.port), "stop_app leaves the AMQP port open");
    node.start_app();
    assert!(port_open(node.port));
    let pid = node.pid().expect("pid file");
    node.kill9();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "kill9 left {pid} running"
    );
    assert!(!port_open(node.port));
    node.restart();
    assert!(port_open(node.port));
    node.stop();
    assert!(!port_open(node.port), "stop leaves the AMQP port open");
    // The shared broker was not touched.
    assert!(port_open(5672), "the shared RabbitMQ on 5672 went away");
}
