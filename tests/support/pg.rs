//! A private PostgreSQL for tests: a cluster made with `initdb` in a temporary directory
//! and started with `pg_ctl` on a free port of 127.0.0.1 (its socket in that directory
//! too), as the user `postgres` when the tests run as root. Never the shared server on
//! 5432. The binaries come from Debian's `postgresql` package (`scripts/services`
//! installs it). Also compiled into the library's unit tests (`src/state.rs`).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where Debian's PostgreSQL 15 puts its server binaries.
pub const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A private cluster; stopped (immediately) and removed when dropped.
pub struct Cluster {
    root: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    owned: bool,
}

fn as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Runs a server binary (as `postgres` when root), failing the test with its output.
fn server_tool(tool: &str, args: &[&str]) {
    let bin = format!("{BIN}/{tool}");
    let mut cmd = if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &bin]);
        c
    } else {
        Command::new(&bin)
    };
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{bin} must be installed (scripts/services): {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Cluster {
    /// Makes and starts a new cluster. `durable`: fsync on (for measurements), else off.
    pub fn start(durable: bool) -> Cluster {
        let root = tempfile::Builder::new()
            .prefix("acaso-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        if as_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&root)
                .status()
                .map(|s| s.success());
            assert_eq!(ok.ok(), Some(true), "chown the cluster's directory");
        }
        let data = root.join("data");
        let data_s = data.to_string_lossy().to_string();
        server_tool(
            "initdb",
            &[
                "-D",
                &data_s,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let mut cluster = Cluster {
            root,
            port: 0,
            owned: true,
        };
        cluster.port = free_port();
        cluster.start_again_with(durable);
        cluster
    }

    fn start_again_with(&self, durable: bool) {
        let fsync = if durable { "on" } else { "off" };
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={fsync} -c max_connections=200",
            self.port,
            self.root.display()
        );
        let log = self.root.join("log").to_string_lossy().to_string();
        let data = self.data();
        server_tool(
            "pg_ctl",
            &[
                "start", "-w", "-t", "60", "-D", &data, "-l", &log, "-o", &opts,
            ],
        );
    }

    fn data(&self) -> String {
        self.root.join("data").to_string_lossy().to_string()
    }

    /// Starts a stopped cluster again, on the same port.
    pub fn start_again(&self) {
        self.start_again_with(false);
    }

    /// Stops the server at once (as a crash would), dropping every connection.
    pub fn stop(&self) {
        server_tool(
            "pg_ctl",
            &["stop", "-w", "-m", "immediate", "-D", &self.data()],
        );
    }

    /// The URL of a database on it.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new database with a name no other test uses; returns its URL.
    pub fn new_database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let port = self.port.to_string();
        let out = Command::new(format!("{BIN}/createdb"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", &name])
            .output()
            .expect("createdb");
        assert!(
            out.status.success(),
            "createdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    /// The directory the cluster lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.owned {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(format!("{BIN}/pg_ctl"))
                .args(["stop", "-m", "immediate", "-D", &self.data()])
                .output();
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// One cluster shared by the tests of this process (each makes its own database). A
/// watcher stops and removes it when the process ends, since statics are never dropped.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        let mut c = Cluster::start(false);
        c.owned = false;
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {run} {BIN}/pg_ctl stop -m immediate -D {data} >/dev/null 2>&1; rm -rf {root}",
            pid = std::process::id(),
            run = if as_root() { "runuser -u postgres --" } else { "" },
            data = c.data(),
            root = c.root.display(),
        );
        let _ = Command::new("setsid")
            .args(["sh", "-c", &stop])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        c
    })
}
