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

#[path = "pki.rs"]
pub mod pki;

/// Where Debian's PostgreSQL 15 puts its server binaries.
pub const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A private cluster; stopped (immediately) and removed when dropped.
pub struct Cluster {
    root: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    owned: bool,
    /// Set on a cluster made by [`Cluster::start_secure`].
    pub secure: Option<Secure>,
}

/// What a client needs to reach a cluster that takes only TLS and a password
/// ([`Cluster::start_secure`]).
pub struct Secure {
    /// The test CA that signed the server's certificate (for `localhost` and 127.0.0.1).
    pub ca: PathBuf,
    /// A second CA, unrelated to the server's certificate.
    pub other_ca: PathBuf,
    /// The role that owns each new database, allowed in only with [`SECURE_PASSWORD`].
    pub user: &'static str,
}

/// The password of the role of a secure cluster: characters a URL must escape, so a
/// test also proves the password reaches the server intact.
pub const SECURE_PASSWORD: &str = "s3cr3t p@ss/w:rd%?#";

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
    pki::run_checked(cmd.args(args), &format!("{bin} {args:?}"));
}

/// Gives `path` (recursively) to the user `postgres` when the tests run as root, as
/// the server runs as that user then.
fn chown_to_postgres(path: &Path) {
    if as_root() {
        let mut chown = Command::new("chown");
        pki::run_checked(chown.args(["-R", "postgres:postgres"]).arg(path), "chown");
    }
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
        let cluster = Cluster::init();
        cluster.start_again_with(durable);
        cluster
    }

    /// Makes a new cluster (on a free port, not started).
    fn init() -> Cluster {
        let root = tempfile::Builder::new()
            .prefix("acaso-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        chown_to_postgres(&root);
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
            secure: None,
        };
        cluster.port = free_port();
        cluster
    }

    /// Makes and starts a cluster that takes TCP connections only over TLS (a test CA's
    /// certificate for `localhost` and 127.0.0.1, made with `openssl`) and only with a
    /// password (SCRAM): its `pg_hba.conf` has a `hostssl ... scram-sha-256` line for
    /// 127.0.0.1 and no `host` line, so a connection in clear or without the password is
    /// refused. The set-up itself goes through the cluster's Unix socket (trust).
    pub fn start_secure() -> Cluster {
        let mut cluster = Cluster::init();
        let tls = cluster.root.join("tls");
        std::fs::create_dir(&tls).expect("the TLS directory");
        pki::make(&tls);
        std::fs::set_permissions(
            tls.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod 600 server.key");
        let conf = cluster.root.join("data/postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str(&format!(
            "\nssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\npassword_encryption = 'scram-sha-256'\n",
            cert = tls.join("server.pem").display(),
            key = tls.join("server.key").display(),
        ));
        std::fs::write(&conf, text).expect("postgresql.conf");
        std::fs::write(
            cluster.root.join("data/pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("pg_hba.conf");
        // server.key must be the server's own (PostgreSQL refuses it otherwise).
        chown_to_postgres(&tls);
        cluster.start_again();
        let user = "acaso";
        cluster.psql(&format!(
            "CREATE ROLE {user} LOGIN PASSWORD '{SECURE_PASSWORD}'"
        ));
        cluster.secure = Some(Secure {
            ca: tls.join("ca.pem"),
            other_ca: tls.join("other-ca.pem"),
            user,
        });
        cluster
    }

    /// Runs SQL as `postgres` through the cluster's Unix socket.
    fn psql(&self, sql: &str) {
        let mut psql = Command::new(format!("{BIN}/psql"));
        psql.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .arg("-h")
        .arg(&self.root)
        .args(["-p", &self.port.to_string(), "-c", sql]);
        pki::run_checked(&mut psql, "psql");
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

    /// The URL of a database on it (on a secure cluster: as its role, with neither the
    /// password nor TLS options, which each test adds its own way).
    pub fn url(&self, db: &str) -> String {
        let user = self.secure.as_ref().map_or("postgres", |s| s.user);
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
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
        let mut createdb = Command::new(format!("{BIN}/createdb"));
        match &self.secure {
            // Through the socket, owned by the role the tests log in as.
            Some(s) => createdb.arg("-h").arg(&self.root).args(["-O", s.user]),
            None => createdb.args(["-h", "127.0.0.1"]),
        };
        pki::run_checked(
            createdb.args(["-p", &port, "-U", "postgres", &name]),
            "createdb",
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
    SHARED.get_or_init(|| unowned(Cluster::start(false)))
}

/// Like [`shared`], a [`Cluster::start_secure`] one (TLS and a password only).
pub fn shared_secure() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| unowned(Cluster::start_secure()))
}

/// Hands `c` to a watcher that stops and removes it when this process ends.
fn unowned(mut c: Cluster) -> Cluster {
    c.owned = false;
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {run} {BIN}/pg_ctl stop -m immediate -D {data} >/dev/null 2>&1; rm -rf {root}",
        pid = std::process::id(),
        run = if as_root() {
            "runuser -u postgres --"
        } else {
            ""
        },
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
}

/// A private file (0600, as a secret's file should be) holding `text` alone.
pub fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod 600");
    path
}
