//! A fake Brevo API v3, faithful to `shared/docs/brevo-api.md`: `GET /account` and
//! `POST /smtp/email` with Brevo's status codes, error bodies, credits, idempotency
//! keys (a repeat is refused for 15 minutes of the fake's clock, which a test may set
//! with [`FakeBrevo::set_now`]), a daily reset of the credits at a time the test chooses
//! ([`FakeBrevo::reset_daily_at`]) and rate-limit headers, plus fault injection (scripted
//! statuses, latency, dropped connections). The tests run it in-process on 127.0.0.1:0; the example
//! `fake-brevo` runs it on its own so anyone can try acaso-mail without a Brevo account.
//!
//! Hand-written on std's TcpListener (HTTP/1.1, keep-alive, Content-Length bodies) so
//! that faults such as a dropped connection are fully under the test's control.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::schema;

#[path = "fake_brevo_events.rs"]
pub mod events;

/// One scripted answer to a `POST /smtp/email`, taken in order before normal handling.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Handle this send normally.
    Pass,
    /// Answer with this status and body (the mail is not accepted).
    Status(u16, String),
    /// Answer 429 with these rate-limit headers.
    RateLimited {
        retry_after: Option<u64>,
        reset: u64,
    },
    /// Close the connection without answering (the mail is not accepted).
    Drop,
    /// Accept the mail, then close the connection without answering.
    AcceptThenDrop,
    /// Accept the mail, then answer this status and body all the same (a 5xx from a
    /// proxy or a Brevo fault after the mail was queued).
    AcceptThenStatus(u16, String),
    /// Accept the mail, answer 201 with a body cut short, and close the connection.
    AcceptThenCut,
    /// This fault if a send comes to take it; unlike the others, it may be left
    /// unused without failing the test (see `Drop for FakeBrevo`).
    Optional(Box<Fault>),
}

impl Fault {
    /// The same fault, allowed to go unused.
    pub fn optional(self) -> Fault {
        Fault::Optional(Box::new(self))
    }

    fn required(&self) -> bool {
        !matches!(self, Fault::Optional(_))
    }

    fn unwrap_optional(self) -> Fault {
        match self {
            Fault::Optional(f) => f.unwrap_optional(),
            f => f,
        }
    }
}

/// What the fake was told and what it saw.
#[derive(Debug)]
pub struct State {
    /// The API key it accepts.
    pub key: String,
    /// Remaining credits on the email plan.
    pub credits: f64,
    /// The email plan's type.
    pub plan_type: String,
    /// The email plan's creditsType (`sendLimit` = counted).
    pub credits_type: String,
    /// Status used when credits are out: 402 (default) or 400.
    pub quota_status: u16,
    /// Template ids that do not exist in the account.
    pub missing_templates: HashSet<u64>,
    /// Latency before answering each send.
    pub latency: Duration,
    /// Scripted answers, consumed one per send.
    pub script: VecDeque<Fault>,
    /// Every accepted send request body, in order of acceptance.
    pub accepted: Vec<Value>,
    /// When each of `accepted` was accepted (Unix seconds, on the fake's clock).
    pub accepted_at: Vec<i64>,
    /// The message id the fake gave each of `accepted`.
    pub accepted_ids: Vec<String>,
    /// Requests that did not conform to Brevo's definition
    /// (`tests/fixtures/brevo/*.schema.json`), each as "request: violations". Any left
    /// when the fake is dropped fails the test ([`FakeBrevo::take_violations`] takes
    /// those a test sent on purpose).
    pub violations: Vec<String>,
    /// Every send request body received, accepted or not.
    pub received: Vec<Value>,
    /// Number of `GET /account` calls.
    pub account_calls: u32,
    /// Idempotency keys of accepted sends, each with the time (Unix seconds, on the
    /// fake's clock) of the acceptance that opened its window.
    pub keys: HashMap<String, i64>,
    /// The fake's clock (Unix seconds); `None` follows the wall clock. acaso-mail's
    /// `--now` moves only acaso-mail's clock: a test that moves time past Brevo's
    /// idempotency window moves this one too ([`FakeBrevo::set_now`]).
    pub now: Option<i64>,
    /// Sends refused as repeats (`400 duplicate_parameter`): not sends.
    pub duplicates: u32,
    /// Highest number of sends being handled at once.
    pub max_concurrent: u32,
    concurrent: u32,
    /// Per-hour request allowance reported in headers.
    pub rate_limit: u64,
    /// The plan's daily size: what the credits go back to at the daily reset.
    pub daily_size: f64,
    /// When the credits reset each day, in seconds after midnight UTC on the fake's
    /// clock; `None`: never (the credits only go down).
    pub reset_utc: Option<i64>,
    /// The fake's time when it last looked for a reset.
    pub last_roll: Option<i64>,
    /// Sends refused for want of credits (402, or 400 `not_enough_credits`).
    pub refused_no_credits: u32,
    /// `GET /smtp/emails` answers 503 (the transactional log is down).
    pub log_down: bool,
    /// The last N accepted mails are not in the log yet (it takes time to settle).
    pub log_lag: usize,
    /// Number of `GET /smtp/emails` calls.
    pub log_calls: u32,
    /// Seconds added to the fake's clock in the `Date` header of every answer (a
    /// test's way to make the local clock look skewed).
    pub date_skew_secs: i64,
    /// Whether a repeated `idempotencyKey` is refused (Brevo's documented behaviour);
    /// `false` plays a Brevo that ignores the key and sends every repeat.
    pub honour_idempotency: bool,
    /// Every send in the sandbox (`X-Sib-Sandbox: drop`): validated and answered 201,
    /// but not delivered (never in `accepted`, no credit spent).
    pub sandboxed: Vec<Value>,
    /// `relay.enabled` in `GET /account`: whether the account may send.
    pub relay_enabled: bool,
    /// Print each accepted mail on stdout before answering 201 (the stand-in run on its
    /// own, `examples/fake-brevo.rs`): what it says is complete when the send returns.
    pub print_accepted: bool,
    /// Statuses the next `GET /smtp/emails` calls answer instead of the log, in order
    /// (429 with Brevo's rate-limit headers, 5xx...).
    pub log_faults: VecDeque<u16>,
    /// When each `GET /smtp/emails` call arrived.
    pub log_call_times: Vec<Instant>,
    /// Delivery events and blocked contacts to report, and the reads of them.
    pub delivery: events::Delivery,
}

/// A running fake Brevo.
pub struct FakeBrevo {
    /// `http://127.0.0.1:PORT/v3`.
    pub url: String,
    /// Shared state; lock it to script faults or read what was received.
    pub state: Arc<Mutex<State>>,
    arrivals: Arc<(Mutex<u64>, Condvar)>,
    /// Handler threads that panicked (see `Drop for FakeBrevo`).
    panics: Arc<AtomicU64>,
}

static MESSAGE_SEQ: AtomicU64 = AtomicU64::new(1);

/// How long Brevo refuses a repeated `headers.idempotencyKey` (or `Idempotency-Key`) after the acceptance
/// that first used it: 15 minutes, the shorter of the two Brevo has published (its
/// changelog; its guide says 30), so that a resend between the two is caught as a
/// double send. Past it, the same key is accepted (and mailed) again.
pub const IDEMPOTENCY_WINDOW_SECS: i64 = 15 * 60;

impl State {
    /// Puts the credits back to the plan's daily size if the daily reset time was
    /// crossed since the fake last looked (a reset at `t` is seen by a request at `t`).
    pub fn roll(&mut self) {
        let now = self.now();
        if let Some(tod) = self.reset_utc {
            let day = |t: i64| (t - tod).div_euclid(86_400);
            if self.last_roll.is_some_and(|last| day(now) > day(last)) {
                self.credits = self.daily_size;
            }
        }
        self.last_roll = Some(self.last_roll.map_or(now, |l| l.max(now)));
    }

    /// The fake's time, in Unix seconds.
    pub fn now(&self) -> i64 {
        self.now.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        })
    }
}

impl FakeBrevo {
    /// Starts on 127.0.0.1:`port` (0 = any) with `credits` on a free plan and `key`.
    pub fn start_on(port: u16, key: &str, credits: f64) -> std::io::Result<Self> {
        Self::listen("127.0.0.1", port, key, credits)
    }

    /// Starts on `host`:`port`: `0.0.0.0` when other containers must reach it (the
    /// compose stack), where 127.0.0.1 would only answer inside its own container.
    pub fn listen(host: &str, port: u16, key: &str, credits: f64) -> std::io::Result<Self> {
        let listener = TcpListener::bind((host, port))?;
        let url = format!("http://{}/v3", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State {
            key: key.to_string(),
            credits,
            plan_type: "free".into(),
            credits_type: "sendLimit".into(),
            quota_status: 402,
            missing_templates: HashSet::new(),
            latency: Duration::ZERO,
            script: VecDeque::new(),
            accepted: Vec::new(),
            accepted_at: Vec::new(),
            accepted_ids: Vec::new(),
            violations: Vec::new(),
            received: Vec::new(),
            account_calls: 0,
            keys: HashMap::new(),
            now: None,
            duplicates: 0,
            max_concurrent: 0,
            concurrent: 0,
            rate_limit: 3_600_000,
            daily_size: credits,
            reset_utc: None,
            last_roll: None,
            refused_no_credits: 0,
            log_down: false,
            log_lag: 0,
            log_calls: 0,
            date_skew_secs: 0,
            honour_idempotency: true,
            sandboxed: Vec::new(),
            relay_enabled: true,
            print_accepted: false,
            log_faults: VecDeque::new(),
            log_call_times: Vec::new(),
            delivery: events::Delivery::default(),
        }));
        let arrivals = Arc::new((Mutex::new(0u64), Condvar::new()));
        let panics = Arc::new(AtomicU64::new(0));
        let (st, arr, pan) = (state.clone(), arrivals.clone(), panics.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (st, arr, pan) = (st.clone(), arr.clone(), pan.clone());
                std::thread::spawn(move || {
                    // Drops last: the client sees the connection close only once a
                    // panic is counted.
                    let _open = conn.try_clone();
                    let _watch = PanicWatch(pan);
                    serve(conn, &st, &arr)
                });
            }
        });
        Ok(FakeBrevo {
            url,
            state,
            arrivals,
            panics,
        })
    }

    /// Starts on an ephemeral port.
    pub fn start(key: &str, credits: f64) -> Self {
        Self::start_on(0, key, credits).expect("fake Brevo binds 127.0.0.1:0")
    }

    /// Locks the state.
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepted sends so far.
    pub fn accepted(&self) -> Vec<Value> {
        self.state().accepted.clone()
    }

    /// Waits until at least `n` send requests have arrived (accepted or not); fails
    /// the test when they have not within `timeout`.
    pub fn wait_for_sends(&self, n: u64, timeout: Duration) {
        let (m, cv) = &*self.arrivals;
        let deadline = Instant::now() + timeout;
        let mut got = m.lock().unwrap_or_else(|p| p.into_inner());
        while *got < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the fake Brevo received {} send(s), not {n}, within {timeout:?}",
                *got
            );
            got = cv
                .wait_timeout(got, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Sets the fake's clock to `unix` seconds (the time acaso-mail is given with
    /// `--now`), so that Brevo's idempotency window passes when the test says so.
    pub fn set_now(&self, unix: i64) {
        let mut s = self.state();
        s.now = Some(unix);
        s.roll();
    }

    /// Resets the credits to the plan's daily size every day at `utc_secs` after
    /// midnight UTC on the fake's clock, from now on.
    pub fn reset_daily_at(&self, utc_secs: i64) {
        let mut s = self.state();
        s.reset_utc = Some(utc_secs.rem_euclid(86_400));
        s.last_roll = None;
        s.roll();
    }

    /// Takes the requests that did not conform to Brevo's definition so far (for a test
    /// that sends such requests on purpose).
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.state().violations)
    }

    /// Sends being handled right now: received, not yet answered.
    pub fn in_flight(&self) -> u32 {
        self.state().concurrent
    }
}

/// A fault the test scripted and no send consumed means the test did not exercise
/// what it meant to (as xh's test server checks): fail it, unless the fault was marked
/// [`Fault::optional`] or the test is already failing. So does a handler that panicked.
impl Drop for FakeBrevo {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let violations = self.state().violations.clone();
        assert!(
            violations.is_empty(),
            "a request to the fake Brevo did not conform to Brevo's definition \
             (tests/fixtures/brevo); the first: {}",
            violations.first().map_or("", String::as_str)
        );
        let unused: Vec<Fault> = self
            .state()
            .script
            .iter()
            .filter(|f| f.required())
            .cloned()
            .collect();
        assert!(
            unused.is_empty(),
            "the fake Brevo was scripted faults no send consumed: {unused:?} \
             (mark a fault that may go unused with Fault::optional)"
        );
        let unused = self.state().delivery.events_script.clone();
        assert!(
            unused.is_empty(),
            "the fake Brevo was scripted events answers no read consumed: {unused:?}"
        );
        let panics = self.panics.load(Ordering::SeqCst);
        assert!(
            panics == 0,
            "{panics} fake Brevo handler thread(s) panicked (see the test's output): \
             the answers the run got are not the fake's"
        );
    }
}

/// Counts its handler thread in when that thread unwinds from a panic: such a panic
/// is otherwise only printed, and the test, seeing a dropped connection, may pass.
struct PanicWatch(Arc<AtomicU64>);

impl Drop for PanicWatch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

struct Request {
    method: String,
    path: String,
    api_key: Option<String>,
    body: Vec<u8>,
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut len = 0usize;
    let mut api_key = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            match k.as_str() {
                "content-length" => len = v.parse().ok()?,
                "api-key" => api_key = Some(v),
                _ => {}
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        api_key,
        body,
    })
}

fn respond(
    w: &mut TcpStream,
    status: u16,
    body: &Value,
    extra: &[(&str, String)],
    st: &State,
) -> std::io::Result<()> {
    let text = body.to_string();
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        408 => "Request Timeout",
        _ => "Status",
    };
    let date = chrono::DateTime::from_timestamp(st.now() + st.date_skew_secs, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT");
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ndate: {date}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\n\
         x-sib-ratelimit-limit: {}\r\nx-sib-ratelimit-remaining: {}\r\nx-sib-ratelimit-reset: 3600\r\n",
        text.len(),
        st.rate_limit,
        st.rate_limit.saturating_sub(st.received.len() as u64)
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // One write: a head and body sent separately stall 40 ms on Nagle + delayed ACK.
    head.push_str(&text);
    w.write_all(head.as_bytes())?;
    w.flush()
}

/// One of Brevo's schemas in `tests/fixtures/brevo/`, derived from its OpenAPI
/// definition (compiled in, so that the `fake-brevo` example carries them too).
pub fn brevo_schema(name: &str) -> Value {
    let text = match name {
        "send-request" => include_str!("../fixtures/brevo/send-request.schema.json"),
        "send-answer" => include_str!("../fixtures/brevo/send-answer.schema.json"),
        "error" => include_str!("../fixtures/brevo/error.schema.json"),
        "account-answer" => include_str!("../fixtures/brevo/account-answer.schema.json"),
        "log-query" => include_str!("../fixtures/brevo/log-query.schema.json"),
        "log-answer" => include_str!("../fixtures/brevo/log-answer.schema.json"),
        "events-query" => include_str!("../fixtures/brevo/events-query.schema.json"),
        "events-answer" => include_str!("../fixtures/brevo/events-answer.schema.json"),
        "blocked-query" => include_str!("../fixtures/brevo/blocked-query.schema.json"),
        "blocked-answer" => include_str!("../fixtures/brevo/blocked-answer.schema.json"),
        _ => panic!("no Brevo schema {name}"),
    };
    serde_json::from_str(text).expect("a Brevo schema is JSON")
}

/// Checks `value` against Brevo's schema `name`; a violation is recorded (it fails the
/// test when the fake is dropped) and returned.
fn conforms(s: &mut State, what: &str, name: &str, value: &Value) -> Result<(), String> {
    let v = schema::violations(&brevo_schema(name), value);
    if v.is_empty() {
        return Ok(());
    }
    let said = format!("{what}: {}", v.join("; "));
    s.violations.push(format!("{said} in {value}"));
    Err(said)
}

fn err(code: &str, message: &str) -> Value {
    json!({"code": code, "message": message})
}

fn serve(conn: TcpStream, st: &Arc<Mutex<State>>, arrivals: &Arc<(Mutex<u64>, Condvar)>) {
    let _ = conn.set_nodelay(true);
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    while let Some(req) = read_request(&mut r) {
        let lock = || st.lock().unwrap_or_else(|p| p.into_inner());
        let authorised = req.api_key.as_deref() == Some(lock().key.as_str());
        let ok = if req.method == "GET" && req.path.ends_with("/account") {
            let mut s = lock();
            s.account_calls += 1;
            s.roll();
            if authorised {
                let body = json!({
                    "email": "ops@acaso.example", "firstName": "Acaso", "lastName": "Ops",
                    "companyName": "Acaso",
                    "address": {"street": "Rua do Bom Jesus 1", "city": "Recife",
                                "zipCode": "50030-170", "country": "Brazil"},
                    "plan": [
                        {"type": "sms", "creditsType": "sendLimit", "credits": 999.536},
                        {"type": s.plan_type, "creditsType": s.credits_type, "credits": s.credits}
                    ],
                    "relay": {"enabled": s.relay_enabled, "data": {
                        "userName": "ops@acaso.example", "relay": "smtp-relay.brevo.com", "port": 587}}
                });
                respond(&mut w, 200, &body, &[], &s)
            } else {
                respond(&mut w, 401, &err("unauthorized", "Key not found"), &[], &s)
            }
        } else if req.method == "GET"
            && (req.path.contains("/smtp/statistics/events")
                || req.path.contains("/smtp/blockedContacts"))
        {
            let mut s = lock();
            let query = req.path.split_once('?').map_or("", |(_, q)| q);
            let (status, body) = if !authorised {
                (401, err("unauthorized", "Key not found"))
            } else if req.path.contains("/smtp/statistics/events") {
                events::events(&mut s, query)
            } else {
                events::blocked(&mut s, query)
            };
            respond(&mut w, status, &body, &[], &s)
        } else if req.method == "GET" && req.path.contains("/smtp/emails") {
            let mut s = lock();
            s.log_calls += 1;
            s.log_call_times.push(Instant::now());
            let (status, body) = if !authorised {
                (401, err("unauthorized", "Key not found"))
            } else if let Some(status) = s.log_faults.pop_front() {
                (status, err("too_many_requests", "try again later"))
            } else if s.log_down {
                (503, err("service_unavailable", "try again later"))
            } else {
                transactional_log(&mut s, &req.path)
            };
            respond(&mut w, status, &body, &[], &s)
        } else if req.method == "POST" && req.path.ends_with("/smtp/email") {
            handle_send(&mut w, &req, authorised, st, arrivals)
        } else {
            let s = lock();
            respond(&mut w, 404, &err("not_found", "Invalid route"), &[], &s)
        };
        if ok.is_err() {
            return;
        }
    }
}

fn handle_send(
    w: &mut TcpStream,
    req: &Request,
    authorised: bool,
    st: &Arc<Mutex<State>>,
    arrivals: &Arc<(Mutex<u64>, Condvar)>,
) -> std::io::Result<()> {
    let lock = || st.lock().unwrap_or_else(|p| p.into_inner());
    let body: Result<Value, _> = serde_json::from_slice(&req.body);
    let (latency, fault) = {
        let mut s = lock();
        s.received
            .push(body.as_ref().cloned().unwrap_or(Value::Null));
        s.concurrent += 1;
        s.max_concurrent = s.max_concurrent.max(s.concurrent);
        (s.latency, s.script.pop_front().map(Fault::unwrap_optional))
    };
    {
        let (m, cv) = &**arrivals;
        *m.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        cv.notify_all();
    }
    let (status, answer, extra) = match (fault, authorised) {
        (_, false) => (401, err("unauthorized", "Key not found"), vec![]),
        (Some(Fault::Drop), _) => {
            std::thread::sleep(latency);
            lock().concurrent -= 1;
            let _ = w.shutdown(std::net::Shutdown::Both);
            return Err(std::io::Error::other("dropped on purpose"));
        }
        (Some(Fault::Optional(_)), _) => unreachable!("unwrapped when taken"),
        (Some(Fault::Status(code, text)), _) => {
            let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (code, v, vec![])
        }
        (Some(Fault::RateLimited { retry_after, reset }), _) => {
            let mut extra = vec![("x-sib-ratelimit-reset", reset.to_string())];
            if let Some(ra) = retry_after {
                extra.push(("retry-after", ra.to_string()));
            }
            (429, err("too_many_requests", "Rate limit exceeded"), extra)
        }
        (Some(Fault::AcceptThenDrop), _) => {
            let (status, _) = validate_and_accept(&body, &mut lock());
            std::thread::sleep(latency);
            lock().concurrent -= 1;
            let _ = w.shutdown(std::net::Shutdown::Both);
            return Err(std::io::Error::other(format!("dropped after {status}")));
        }
        (Some(Fault::AcceptThenStatus(code, text)), _) => {
            validate_and_accept(&body, &mut lock());
            let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (code, v, vec![])
        }
        (Some(Fault::AcceptThenCut), _) => {
            let (status, answer) = validate_and_accept(&body, &mut lock());
            std::thread::sleep(latency);
            lock().concurrent -= 1;
            let text = answer.to_string();
            let cut = &text[..text.len() / 2];
            let head = format!(
                "HTTP/1.1 {status} Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{cut}",
                text.len()
            );
            let _ = w.write_all(head.as_bytes());
            let _ = w.flush();
            let _ = w.shutdown(std::net::Shutdown::Both);
            return Err(std::io::Error::other("answer cut on purpose"));
        }
        (None | Some(Fault::Pass), true) => {
            let (status, v) = validate_and_accept(&body, &mut lock());
            (status, v, vec![])
        }
    };
    std::thread::sleep(latency);
    let mut s = lock();
    s.concurrent -= 1;
    respond(
        w,
        status,
        &answer,
        &extra
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect::<Vec<_>>(),
        &s,
    )
}

/// `GET /smtp/emails`, as Brevo's definition describes it: the query checked against
/// `log-query.schema.json`, filtered by `email`, `templateId`, `messageId` and dates,
/// sorted by `sort` (newest first by default), paged by `limit` (500 by default) and
/// `offset`; `count` is the number of matches over all pages. The last `log_lag`
/// accepted mails are not listed yet. Dates are checked against the fake's clock only
/// when a test set it (with the wall clock they would not match acaso-mail's `--now`):
/// `startDate`..`endDate`, else the past 30 days.
fn transactional_log(s: &mut State, path: &str) -> (u16, Value) {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let q = query_object(query);
    if let Err(e) = conforms(s, "GET /smtp/emails", "log-query", &q) {
        return (400, err("invalid_parameter", &e));
    }
    let day = |k: &str| {
        q.get(k)
            .and_then(Value::as_str)
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    };
    let (start, end) = (day("startDate"), day("endDate"));
    if let (Some(a), Some(b)) = (start, end)
        && (b < a || b - a > chrono::Duration::days(31))
    {
        let e = format!("GET /smtp/emails: startDate {a} to endDate {b} is not within one month");
        s.violations.push(e.clone());
        return (400, err("invalid_parameter", &e));
    }
    let window = s.now.map(|now| {
        let today = chrono::DateTime::from_timestamp(now, 0)
            .map_or(chrono::NaiveDate::MIN, |t| t.date_naive());
        match (start, end) {
            (Some(a), Some(b)) => (a, b),
            _ => (today - chrono::Duration::days(30), today),
        }
    });
    let text = |k: &str| q.get(k).and_then(Value::as_str).map(str::to_string);
    let (email, message_id) = (text("email"), text("messageId"));
    let template = q.get("templateId").and_then(Value::as_u64);
    let settled = s.accepted.len().saturating_sub(s.log_lag);
    let mut matches: Vec<Value> = (0..settled)
        .filter_map(|i| {
            let m = &s.accepted[i];
            let at = chrono::DateTime::from_timestamp(s.accepted_at[i], 0)?;
            let to = m["to"][0]["email"].as_str().map(str::to_string);
            let id = s.accepted_ids.get(i).cloned().unwrap_or_default();
            let fits = (email.is_none() || to == email)
                && (template.is_none() || m["templateId"].as_u64() == template)
                && (message_id.is_none() || Some(&id) == message_id.as_ref())
                && window.is_none_or(|(a, b)| (a..=b).contains(&at.date_naive()));
            let mut e = json!({"email": to, "subject": "Mentoria", "templateId": m["templateId"],
                               "messageId": id, "uuid": format!("{i:08x}-fake-log"),
                               "date": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                               "from": "ops@acaso.example"});
            // Brevo leaves `tags` out when the mail had none; never null.
            if let (Some(tags), Some(o)) = (m.get("tags"), e.as_object_mut()) {
                o.insert("tags".into(), tags.clone());
            }
            fits.then_some(e)
        })
        .collect();
    if q.get("sort").and_then(Value::as_str) != Some("asc") {
        matches.reverse();
    }
    let count = matches.len();
    let offset = q.get("offset").and_then(Value::as_u64).unwrap_or(0);
    let limit = q.get("limit").and_then(Value::as_u64).unwrap_or(500);
    let page: Vec<Value> = matches
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect();
    (200, json!({"count": count, "transactionalEmails": page}))
}

/// A query string as a JSON object: each value percent-decoded, and a number where
/// Brevo's definition says integer (left a string, which then fails, when it is not).
fn query_object(query: &str) -> Value {
    let integers = ["templateId", "limit", "offset", "days"];
    let mut o = serde_json::Map::new();
    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        let v = percent_decode(v);
        let value = match v.parse::<u64>() {
            Ok(n) if integers.contains(&k) => json!(n),
            _ => Value::String(v),
        };
        o.insert(percent_decode(k), value);
    }
    Value::Object(o)
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((l, d)) => !l.is_empty() && d.contains('.') && !s.contains(char::is_whitespace),
        None => false,
    }
}

/// Validates a send like Brevo does and, when it passes, accepts it (credits, keys).
fn validate_and_accept(body: &Result<Value, serde_json::Error>, s: &mut State) -> (u16, Value) {
    let Ok(body) = body else {
        s.violations
            .push("POST /smtp/email: the body is not JSON".into());
        return (400, err("bad_request", "Input must be a valid JSON object"));
    };
    let conform = conforms(s, "POST /smtp/email", "send-request", body);
    let Some(template) = body.get("templateId").and_then(Value::as_u64) else {
        return (
            400,
            err("missing_parameter", "templateId or htmlContent is missing"),
        );
    };
    if body.get("messageVersions").is_some() && body.get("to").is_some() {
        return (
            400,
            err(
                "invalid_parameter",
                "to and messageVersions cannot be used together",
            ),
        );
    }
    let to = body
        .get("to")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if to.is_empty() {
        return (400, err("missing_parameter", "to is missing"));
    }
    for r in &to {
        let email = r.get("email").and_then(Value::as_str).unwrap_or("");
        if !is_email(email) {
            return (400, err("invalid_parameter", "email is not valid in to"));
        }
        if r.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.chars().count() > 70)
        {
            return (
                400,
                err(
                    "invalid_parameter",
                    "name should be less than 70 characters in to",
                ),
            );
        }
    }
    for k in ["cc", "bcc"] {
        if body
            .get(k)
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            return (
                400,
                err("invalid_parameter", &format!("{k} cannot be empty")),
            );
        }
    }
    let headers = body
        .get("headers")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if headers.values().any(|v| !v.is_string()) {
        return (
            400,
            err("invalid_parameter", "headers values must be strings"),
        );
    }
    if body
        .get("params")
        .and_then(Value::as_object)
        .is_some_and(serde_json::Map::is_empty)
    {
        // Brevo refuses an empty params object (sendinblue/APIv3-nodejs-library#103).
        return (400, err("missing_parameter", "params is blank"));
    }
    if let Err(e) = conform {
        return (400, err("invalid_parameter", &e));
    }
    if s.missing_templates.contains(&template) {
        return (400, err("invalid_parameter", "Template ID does not exist"));
    }
    s.roll();
    let now = s.now();
    // Either spelling Brevo has documented names the key.
    let key = ["idempotencyKey", "Idempotency-Key"]
        .iter()
        .find_map(|k| headers.get(*k).and_then(Value::as_str));
    if let Some(key) = key
        && s.honour_idempotency
        && s.keys
            .get(key)
            .is_some_and(|first| now - first < IDEMPOTENCY_WINDOW_SECS)
    {
        s.duplicates += 1;
        return (
            400,
            err(
                "duplicate_parameter",
                "Request with the same idempotency key was already processed",
            ),
        );
    }
    let sandbox = headers.get("X-Sib-Sandbox").and_then(Value::as_str) == Some("drop");
    if s.credits_type == "sendLimit" && s.credits < 1.0 && !sandbox {
        s.refused_no_credits += 1;
        let status = s.quota_status;
        return (
            status,
            err("not_enough_credits", "Not enough credits to send the email"),
        );
    }
    if let Some(key) = key {
        // A first acceptance, or one after the window closed: a new window opens.
        s.keys.insert(key.to_string(), now);
    }
    if sandbox {
        s.sandboxed.push(body.clone());
    } else if s.credits_type == "sendLimit" {
        s.credits -= 1.0;
    }
    let n = MESSAGE_SEQ.fetch_add(1, Ordering::Relaxed);
    let id = format!("<2026{n:08}.fake@smtp-relay.mailin.fr>");
    if !sandbox {
        if s.print_accepted {
            println!(
                "accepted: template {} to {} params {}",
                body["templateId"], body["to"][0]["email"], body["params"]
            );
        }
        s.accepted.push(body.clone());
        s.accepted_at.push(now);
        s.accepted_ids.push(id.clone());
        s.report_accepted(now);
    }
    (201, json!({"messageId": id}))
}

/// The idempotency window follows the fake's clock: a repeated key is refused within
/// the window of its first acceptance and accepted (mailed again) after.
#[test]
fn a_repeated_idempotency_key_is_refused_for_the_window_of_the_fakes_clock() {
    let fake = FakeBrevo::start("k", 10.0);
    let send = || {
        let body = json!({"templateId": 1, "to": [{"email": "a@example.org"}],
                          "headers": {"idempotencyKey": "key-1"}});
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let resp = agent
            .post(format!("{}/smtp/email", fake.url))
            .header("api-key", "k")
            .header("content-type", "application/json")
            .send(body.to_string())
            .expect("the fake answers");
        resp.status().as_u16()
    };
    fake.set_now(1_000_000);
    assert_eq!(send(), 201);
    fake.set_now(1_000_000 + IDEMPOTENCY_WINDOW_SECS - 1);
    assert_eq!(send(), 400, "a repeat within the window is refused");
    fake.set_now(1_000_000 + IDEMPOTENCY_WINDOW_SECS);
    assert_eq!(send(), 201, "past the window the key is accepted again");
    assert_eq!(send(), 400, "and a new window opened");
    let s = fake.state();
    assert_eq!((s.accepted.len(), s.duplicates), (2, 2));
}

/// The credits go back to the plan's size when the fake's clock crosses the daily reset,
/// and a send beyond them is refused and counted.
#[test]
fn the_credits_reset_daily_at_the_chosen_time() {
    let fake = FakeBrevo::start("k", 2.0);
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let send = |i: u32| {
        let body = json!({"templateId": 1, "to": [{"email": format!("a{i}@example.org")}]});
        agent
            .post(format!("{}/smtp/email", fake.url))
            .header("api-key", "k")
            .header("content-type", "application/json")
            .send(body.to_string())
            .expect("the fake answers")
            .status()
            .as_u16()
    };
    // 2026-12-01T23:00:00Z; the reset at 00:00 UTC.
    fake.set_now(1_796_166_000);
    fake.reset_daily_at(0);
    assert_eq!((send(1), send(2), send(3)), (201, 201, 402));
    fake.set_now(1_796_169_599);
    assert_eq!(send(4), 402, "a second before the reset");
    fake.set_now(1_796_169_600);
    assert_eq!(send(5), 201, "at the reset");
    let s = fake.state();
    assert_eq!((s.credits, s.refused_no_credits), (1.0, 2));
}

/// A client for the fake's own tests: every status is an answer, not an error.
fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    )
}

/// `GET path` or `POST path body` with key `k`: the status and the JSON answer.
fn call(fake: &FakeBrevo, path: &str, body: Option<&Value>) -> (u16, Value) {
    let url = format!("{}{path}", fake.url);
    let resp = match body {
        Some(b) => agent()
            .post(&url)
            .header("api-key", "k")
            .header("content-type", "application/json")
            .send(b.to_string()),
        None => agent().get(&url).header("api-key", "k").call(),
    };
    let mut resp = resp.expect("the fake answers");
    let text = resp.body_mut().read_to_string().expect("a body");
    let value = serde_json::from_str(&text).expect("a JSON answer");
    (resp.status().as_u16(), value)
}

fn assert_fits_brevo(name: &str, value: &Value) {
    let v = schema::violations(&brevo_schema(name), value);
    assert!(
        v.is_empty(),
        "not a {name} as Brevo defines it: {v:?} in {value}"
    );
}

/// Every answer the fake gives, checked against Brevo's definition: the account, an
/// accepted send, the refusals (400 of each kind, 401, 402), and the log's pages.
#[test]
fn the_fakes_answers_fit_brevos_definition() {
    let fake = FakeBrevo::start("k", 1.0);
    fake.set_now(1_796_166_000);
    fake.state().missing_templates.insert(77);
    let (status, account) = call(&fake, "/account", None);
    assert_eq!(status, 200);
    assert_fits_brevo("account-answer", &account);
    let mail = |to: &str, template: u32| {
        json!({"templateId": template, "to": [{"email": to, "name": "Ana"}],
               "params": {"A": 1}, "headers": {"idempotencyKey": to, "Idempotency-Key": to},
               "tags": ["acaso-mail", to]})
    };
    let (status, sent) = call(&fake, "/smtp/email", Some(&mail("a@example.org", 3)));
    assert_eq!(status, 201);
    assert_fits_brevo("send-answer", &sent);
    for (body, want) in [
        (mail("a@example.org", 3), 400),  // a repeated key
        (mail("not-an-address", 3), 400), // an invalid address
        (mail("b@example.org", 77), 400), // an unknown template
        (mail("c@example.org", 3), 402),  // no credits left
    ] {
        let (status, answer) = call(&fake, "/smtp/email", Some(&body));
        assert_eq!(status, want, "{answer}");
        assert_fits_brevo("error", &answer);
    }
    let (status, answer) = call(&fake, "/smtp/emails?email=nobody%40example.org", None);
    assert_eq!(status, 200);
    assert_fits_brevo("log-answer", &answer);
    let (status, answer) = call(&fake, "/smtp/emails?templateId=3", None);
    assert_eq!((status, answer["count"].as_u64()), (200, Some(1)));
    assert_fits_brevo("log-answer", &answer);
    let wrong = agent()
        .get(format!("{}/account", fake.url))
        .header("api-key", "wrong")
        .call()
        .expect("the fake answers");
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(fake.take_violations().is_empty());
}

/// What Brevo refuses, the fake refuses, and a request that breaks the definition is
/// recorded as such (it would fail the test that made it).
#[test]
fn the_fake_refuses_what_brevos_definition_does_not_allow() {
    let fake = FakeBrevo::start("k", 5.0);
    let base = json!({"templateId": 3, "to": [{"email": "a@example.org"}]});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let (status, answer) = call(&fake, "/smtp/email", Some(&with("params", json!({}))));
    assert_eq!(
        (status, answer["message"].as_str()),
        (400, Some("params is blank"))
    );
    assert_eq!(fake.take_violations().len(), 1);
    for bad in [
        with("cc", json!([])),
        with("headers", json!({"idempotencyKey": 7})),
        with("tempalteId", json!(3)),
        with(
            "to",
            json!([{"email": "a@example.org", "name": "x".repeat(71)}]),
        ),
        json!({"to": [{"email": "a@example.org"}]}),
    ] {
        let (status, _) = call(&fake, "/smtp/email", Some(&bad));
        assert_eq!(status, 400, "{bad}");
        assert_eq!(fake.take_violations().len(), 1, "{bad}");
    }
    for query in [
        "",
        "?startDate=2026-11-01",
        "?email=a%40example.org&startDate=2026-11-01&endDate=2026-12-15",
        "?email=a%40example.org&limit=1001",
        "?email=a%40example.org&sort=newest",
        "?email=a%40example.org&days=3",
    ] {
        let (status, _) = call(&fake, &format!("/smtp/emails{query}"), None);
        assert_eq!(status, 400, "{query}");
        assert_eq!(fake.take_violations().len(), 1, "{query}");
    }
    assert!(fake.accepted().is_empty());
}

/// The log as Brevo documents it: newest first unless `sort=asc`, `limit` and `offset`
/// page it, `count` is every match, dates filter by day (the past 30 days by default),
/// and `tags` is left out for a mail sent without tags.
#[test]
fn the_log_pages_sorts_and_filters_as_documented() {
    let fake = FakeBrevo::start("k", 50.0);
    let day = 86_400;
    let t0 = 1_796_166_000; // 2026-12-01T23:00:00Z
    for i in 0..7i64 {
        fake.set_now(t0 + i * day);
        let mut body = json!({"templateId": 3, "to": [{"email": "a@example.org"}]});
        if i != 6 {
            body["tags"] = json!([format!("t{i}")]);
        }
        assert_eq!(call(&fake, "/smtp/email", Some(&body)).0, 201);
    }
    let tags = |q: &str| -> (u64, Vec<String>) {
        let (status, v) = call(
            &fake,
            &format!("/smtp/emails?email=a%40example.org{q}"),
            None,
        );
        assert_eq!(status, 200, "{q}: {v}");
        assert_fits_brevo("log-answer", &v);
        let list = v["transactionalEmails"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let names = list
            .iter()
            .map(|e| {
                e.get("tags")
                    .map_or("-".into(), |t| t[0].as_str().unwrap_or("?").into())
            })
            .collect();
        (v["count"].as_u64().unwrap_or(0), names)
    };
    assert_eq!(
        tags("&limit=3"),
        (7, vec!["-".into(), "t5".into(), "t4".into()])
    );
    assert_eq!(
        tags("&limit=3&offset=3"),
        (7, vec!["t3".into(), "t2".into(), "t1".into()])
    );
    assert_eq!(tags("&limit=3&offset=6"), (7, vec!["t0".into()]));
    assert_eq!(
        tags("&limit=2&sort=asc"),
        (7, vec!["t0".into(), "t1".into()])
    );
    // Days 2026-12-03..2026-12-04 UTC hold t2 and t3 (one a day at 23:00Z from 12-01).
    assert_eq!(
        tags("&startDate=2026-12-03&endDate=2026-12-04"),
        (2, vec!["t3".into(), "t2".into()])
    );
    // With no dates, the past 30 days: 40 days later, nothing.
    fake.set_now(t0 + 40 * day);
    assert_eq!(tags(""), (0, vec![]));
    assert!(fake.take_violations().is_empty());
}
