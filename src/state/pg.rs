//! The PostgreSQL backend: one connection owned by a thread of its own, so that the
//! synchronous driver (which runs a runtime of its own) is never called from inside the
//! program's async runtime; the store's calls are handed to it and waited for, as a
//! SQLite call would be. A connection that breaks, or a server that cannot be reached,
//! is exit 4 ([`Failure::Unavailable`]), never a panic.

use std::collections::HashMap;
use std::error::Error;
use std::str::FromStr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::BytesMut;
use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Statement};

use super::exec::{Dialect, Exec, Row, Value, numbered_to_dollar};
use super::tls;
use crate::error::Failure;
use crate::state_url::StateUrl;

/// The advisory-lock key of the run lock ("acaso-ml" in ASCII).
const LOCK_KEY: &str = "7017559792787746156";

type BoxError = Box<dyn Error + Sync + Send>;

/// A connection and its prepared statements.
struct Conn {
    client: Client,
    prepared: HashMap<String, Statement>,
}

impl Conn {
    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&numbered_to_dollar(sql))?;
        self.prepared.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// A connection to PostgreSQL on its own thread.
pub struct Pg {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    masked: String,
}

impl Pg {
    /// Connects (waiting at most `timeout`); an unreachable server is exit 4.
    pub fn connect(url: &StateUrl, timeout: Duration) -> Result<Pg> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, answer) = mpsc::sync_channel(1);
        let target = url.clone();
        let thread = std::thread::Builder::new()
            .name("acaso-mail-state".into())
            .spawn(move || match open(&target, timeout) {
                Ok(client) => {
                    let _ = ready.send(Ok(()));
                    let mut conn = Conn {
                        client,
                        prepared: HashMap::new(),
                    };
                    for job in queue {
                        job(&mut conn);
                    }
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            })?;
        let unreachable = |why: String| {
            Failure::Unavailable(format!(
                "cannot reach the state store, PostgreSQL at {}: {why}; check that the server is up and reachable from here, the URL (--state-url / ACASO_MAIL_STATE_URL / DATABASE_URL), the password, and TLS (sslmode, the CA file)",
                url.masked
            ))
        };
        match answer.recv() {
            Ok(Ok(())) => Ok(Pg {
                jobs: Some(jobs),
                thread: Some(thread),
                masked: url.masked.clone(),
            }),
            Ok(Err(why)) => Err(unreachable(why).into()),
            Err(_) => Err(unreachable("the connection thread ended".into()).into()),
        }
    }

    /// Runs `f` on the connection and waits for its result.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let lost = || -> anyhow::Error {
            Failure::Unavailable(format!(
                "lost the state store, PostgreSQL at {}",
                self.masked
            ))
            .into()
        };
        let job: Job = Box::new(move |c| {
            let _ = tx.send(f(c));
        });
        self.jobs
            .as_ref()
            .ok_or_else(lost)?
            .send(job)
            .map_err(|_| lost())?;
        match rx.recv().map_err(|_| lost())? {
            Ok(v) => Ok(v),
            // No SQL state: the connection broke (the server stopped, the network); or
            // the server ended the session (a shutdown, an operator, an idle timeout):
            // the run lock went with it, so the run must stop, not carry on unlocked.
            Err(e) if e.code().is_none_or(session_ended) || e.is_closed() => {
                Err(Failure::Unavailable(format!(
                    "lost the state store, PostgreSQL at {}: {}",
                    self.masked,
                    error_text(&e)
                ))
                .into())
            }
            Err(e) => Err(anyhow::anyhow!(
                "state store (PostgreSQL): {}",
                error_text(&e)
            )),
        }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        // Closing the queue ends the thread, which closes the connection (and so frees
        // any session lock); waiting for it lets a lock be taken again at once.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether an error's SQL state says the session is over: class 08 (connection
/// exception) and class 57 (operator intervention: `57P01` admin shutdown, `57P02`
/// crash shutdown, `57P05` idle-session timeout...; a cancelled query, `57014`, is
/// not), and `25P03` (an idle-in-transaction timeout, which ends the session too).
fn session_ended(code: &postgres::error::SqlState) -> bool {
    let code = code.code();
    code.starts_with("08") || (code.starts_with("57") && code != "57014") || code == "25P03"
}

fn error_text(e: &postgres::Error) -> String {
    match e.source() {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}

fn open(url: &StateUrl, timeout: Duration) -> Result<Client, String> {
    let text = |e: postgres::Error| error_text(&e);
    let mut config = postgres::Config::from_str(url.conn.expose()).map_err(text)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("acaso-mail");
    }
    // A server that stops answering mid-run is noticed, not waited on for ever.
    config.tcp_user_timeout(timeout.max(Duration::from_secs(1)));
    config.keepalives_idle(Duration::from_secs(30));
    let Some(ca) = &url.tls else {
        config.ssl_mode(postgres::config::SslMode::Disable);
        return config.connect(postgres::NoTls).map_err(text);
    };
    // verify-full: TLS required, the certificate checked against the roots and the name.
    config.ssl_mode(postgres::config::SslMode::Require);
    // The option that named the CA file: the hint says to change that one, as setting
    // the other one too is refused.
    let option = if url.ca_in_url {
        "sslrootcert= in the URL"
    } else {
        "--state-ca-file / ACASO_MAIL_STATE_CA_FILE"
    };
    let ca_path = ca.as_ref().map(|c| (c.path.as_path(), option));
    config.connect(tls::connector(ca.as_ref())?).map_err(|e| {
        match tls::certificate_hint(&e, ca_path) {
            Some(hint) => format!("{} ({hint})", error_text(&e)),
            None => error_text(&e),
        }
    })
}

/// The run lock: a session-level advisory lock taken on a new connection, which the
/// server frees when the connection ends (the run exits, is killed, or its host dies).
/// [`crate::state::Store::locked`] keeps that connection as the journal's.
pub fn lock(url: &StateUrl, wait: Duration, timeout: Duration) -> Result<Pg> {
    let pg = Pg::connect(url, timeout)?;
    let start = Instant::now();
    loop {
        let sql = format!("SELECT pg_try_advisory_lock({LOCK_KEY})");
        let got = pg.call(move |c| c.client.query_one(&sql, &[])?.try_get::<_, bool>(0))?;
        if got {
            return Ok(pg);
        }
        if start.elapsed() >= wait {
            return Err(Failure::Locked(format!(
                "another acaso-mail run holds the run lock in PostgreSQL at {} (waited {}s); it will finish on its own, or raise --lock-wait",
                url.masked,
                wait.as_secs()
            ))
            .into());
        }
        // A signal ends the wait at once: the run has done nothing yet.
        if let Some(sig) = crate::signal::received() {
            return Err(Failure::Interrupted(sig).into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether some session holds the run lock of this database (doctor: read, take
/// nothing). Advisory locks are per database: other deployments on the same server,
/// each in a database of its own, never lock each other out.
pub fn lock_held(pg: &Pg) -> Result<bool> {
    let sql = format!(
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND ((classid::bigint << 32) | objid::bigint) = {LOCK_KEY}"
    );
    pg.call(move |c| Ok(c.client.query_one(&sql, &[])?.try_get::<_, i64>(0)? > 0))
}

impl Exec for Pg {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let (sql, params) = (sql.to_string(), params.to_vec());
        self.call(move |c| {
            let st = c.statement(&sql)?;
            c.client.execute(&st, &refs(&params))
        })
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let (sql, params) = (sql.to_string(), params.to_vec());
        self.call(move |c| {
            let st = c.statement(&sql)?;
            let rows = c.client.query(&st, &refs(&params))?;
            rows.iter()
                .map(|r| (0..r.len()).map(|i| r.try_get::<_, Value>(i)).collect())
                .collect()
        })
    }

    fn execute_all(&mut self, sql: &str, rows: &[Vec<Value>]) -> Result<u64> {
        let (sql, rows) = (sql.to_string(), rows.to_vec());
        self.call(move |c| {
            let st = c.statement(&sql)?;
            let mut tx = c.client.transaction()?;
            let mut n = 0;
            for row in &rows {
                n += tx.execute(&st, &refs(row))?;
            }
            tx.commit()?;
            Ok(n)
        })
    }

    fn execute_each(&mut self, stmts: &[(&'static str, Vec<Value>)]) -> Result<Vec<u64>> {
        let stmts = stmts.to_vec();
        self.call(move |c| {
            let prepared = stmts
                .iter()
                .map(|(sql, _)| c.statement(sql))
                .collect::<Result<Vec<_>, _>>()?;
            let mut tx = c.client.transaction()?;
            let mut changed = Vec::with_capacity(stmts.len());
            for (st, (_, params)) in prepared.iter().zip(&stmts) {
                changed.push(tx.execute(st, &refs(params))?);
            }
            tx.commit()?;
            Ok(changed)
        })
    }
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(n) => match *ty {
                Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                Type::BOOL => (*n != 0).to_sql(ty, out),
                #[allow(clippy::cast_precision_loss)]
                Type::FLOAT8 => (*n as f64).to_sql(ty, out),
                _ => n.to_sql(ty, out),
            },
            Value::Real(r) => r.to_sql(ty, out),
            Value::Text(t) => t.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            _ => Value::Text(<&str>::from_sql(ty, raw)?.to_string()),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}
