//! The soak of issue 11 ("No mail lost, none sent twice"), outside `cargo test`: run it
//! with `scripts/soak`, which builds it and the binary and passes the arguments on.
//!
//! `soak [--drain-kills 40] [--reprio-stop-app 10] [--reprio-kill9 10] [--accept-5xx 10] [--reprio-sigkill 10] [--mails 2000] [--seed 1] [--two-hosts]`
//!
//! `--two-hosts`: every run goes to one of two "hosts" (two state directories) drawn at
//! random, both keeping their state in one private PostgreSQL (`tests/support/pg.rs`);
//! each drain kill also starts a drain on the other host at the same moment, which waits
//! for the run lock and is killed in its turn.
//!
//! On a private RabbitMQ node (never the shared one) and an in-process fake Brevo, it
//! publishes `--mails` mails (`m<N>@example.org`, deadlines 2 h to 5 days away), then
//! runs the interruptions in a random order (from `--seed`), each after moving time on
//! by 1 to 180 minutes (acaso-mail's `--now` and the fake Brevo's clock together, so
//! Brevo's 30-minute idempotency window passes when the clock says so; retried mails
//! whose delay is over are moved back to the main queue, as the broker's TTL would):
//!
//! - a drain-eod killed with SIGKILL once Brevo has received a few of its sends and
//!   holds others, accepted and unanswered; Brevo faults (5xx, a connection dropped
//!   before or after accepting, 429) are scripted for about half of them;
//! - a reprioritize stopped mid-run by `rabbitmqctl stop_app` (then `start_app`);
//! - a reprioritize stopped mid-run by a SIGKILL of the broker (then a restart);
//! - a drain-hourly during which Brevo accepts some mails and answers 500, 502, 503 or
//!   504 all the same, then the next drain-hourly an hour later (past Brevo's window:
//!   only a look-up in its log tells whether those went);
//! - a reprioritize killed with SIGKILL mid-run, followed by a drain-hourly (not by
//!   another reprioritize), which must put the staged mails back before it sends.
//!
//! Then two hours pass and clean drains run until nothing is left to send, and the
//! census (`tests/support/census.rs`) is printed. Exit 1 when a mail is lost or twice.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use support::node::{NodeOptions, PrivateNode};
use support::{Fault, World, census, job, spawn};

/// Tries at interrupting one reprioritize mid-run before giving up on it.
const TRIES: u32 = 12;

struct Args {
    drain_kills: usize,
    reprio_stop_app: usize,
    reprio_kill9: usize,
    accept_5xx: usize,
    reprio_sigkill: usize,
    mails: usize,
    seed: u64,
    two_hosts: bool,
}

fn args() -> Args {
    let mut a = Args {
        drain_kills: 40,
        reprio_stop_app: 10,
        reprio_kill9: 10,
        accept_5xx: 10,
        reprio_sigkill: 10,
        mails: 2000,
        seed: 1,
        two_hosts: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--two-hosts" {
            a.two_hosts = true;
            continue;
        }
        let n = it.next().and_then(|v| v.parse::<u64>().ok());
        let Some(n) = n else {
            eprintln!(
                "usage: soak [--drain-kills 40] [--reprio-stop-app 10] [--reprio-kill9 10] [--accept-5xx 10] [--reprio-sigkill 10] [--mails 2000] [--seed 1] [--two-hosts]"
            );
            std::process::exit(2)
        };
        let n_usize = usize::try_from(n).unwrap_or(usize::MAX);
        match flag.as_str() {
            "--drain-kills" => a.drain_kills = n_usize,
            "--reprio-stop-app" => a.reprio_stop_app = n_usize,
            "--reprio-kill9" => a.reprio_kill9 = n_usize,
            "--accept-5xx" => a.accept_5xx = n_usize,
            "--reprio-sigkill" => a.reprio_sigkill = n_usize,
            "--mails" => a.mails = n_usize,
            "--seed" => a.seed = n,
            _ => {
                eprintln!("soak: unknown flag {flag}");
                std::process::exit(2)
            }
        }
    }
    a
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    DrainKill,
    ReprioStopApp,
    ReprioKill9,
    Accept5xx,
    ReprioSigkill,
}

/// What the interruptions did, for the report.
#[derive(Default)]
struct Tally {
    drain_kills_landed: usize,
    drains_done_before_kill: usize,
    reprio_stop_app_landed: usize,
    reprio_kill9_landed: usize,
    accept_5xx_landed: usize,
    accepted_then_5xx: usize,
    reprio_sigkill_landed: usize,
    reprio_done_before: usize,
    reprio_exit_codes: std::collections::BTreeMap<String, usize>,
    runs_per_host: [usize; 2],
    partner_kills_landed: usize,
    partners_done_before_kill: usize,
    faults_scripted: usize,
    released: usize,
    minutes: i64,
    past_window: usize,
}

struct Soak {
    node: PrivateNode,
    w: World,
    /// `--two-hosts`: host B's state directory (host A's is the world's), and the
    /// private PostgreSQL both keep their state in.
    host_b: Option<(tempfile::TempDir, support::pg::Cluster)>,
    clock: DateTime<FixedOffset>,
    rng: StdRng,
    t: Tally,
    /// How long a reprioritize has been seen to run, in ms: faults are aimed within it.
    reprio_ms: u128,
    /// How long `rabbitmqctl stop_app` has been seen to take, in ms.
    ctl_ms: u128,
}

impl Soak {
    /// The binary as host `i` runs it (0: A, the world's state directory; 1: B).
    fn host_cmd(&mut self, i: usize) -> std::process::Command {
        let mut c = self.w.std_cmd();
        if let (1, Some((b, _))) = (i, &self.host_b) {
            c.env("ACASO_MAIL_STATE_DIR", b.path());
        }
        self.t.runs_per_host[i] += 1;
        c
    }

    /// The binary on a host drawn at random (always A with one host).
    fn host(&mut self) -> std::process::Command {
        let i = if self.host_b.is_some() {
            self.rng.random_range(0..2)
        } else {
            0
        };
        self.host_cmd(i)
    }

    fn now(&self) -> String {
        self.clock.to_rfc3339()
    }

    /// Moves time on by `minutes` for acaso-mail and the fake Brevo, and lets the
    /// retry delays that are over pass.
    fn advance(&mut self, minutes: i64) -> usize {
        self.clock += chrono::Duration::minutes(minutes);
        self.t.minutes += minutes;
        self.w.fake.set_now(self.clock.timestamp());
        let secs = u64::try_from(minutes * 60).unwrap_or(0);
        let moved = census::release_retries(&self.w.amqp, &self.w.queue, secs);
        self.t.released += moved;
        moved
    }

    /// The daily job run again after an interrupted one, as the README says to: it
    /// moves back what waits in the staging queue (out of the drains' reach meanwhile)
    /// and drops second copies.
    fn finish_reprioritize(&mut self) -> String {
        let staged = census::staged_mails(&self.w.amqp, &self.w.queue);
        if staged == 0 {
            return "nothing left in staging".into();
        }
        let now = self.now();
        let out = self
            .host()
            .args(["--now", &now, "--json", "reprioritize"])
            .output()
            .expect("reprioritize");
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        format!(
            "re-run: exit {:?}, {staged} found in staging, resumed {}, duplicates dropped {}, expired {}",
            out.status.code(),
            s["resumed"],
            s["duplicates"],
            s["expired"]
        )
    }

    /// What the journal says of mails found twice: their identity (from the parking
    /// queue's listing), when Brevo accepted them, and their journal rows.
    fn explain(
        &self,
        mails: impl Iterator<Item = usize>,
        sent_at: &std::collections::HashMap<usize, Vec<i64>>,
        start: i64,
    ) {
        let now = self.now();
        let out = self
            .w
            .std_cmd()
            .args(["--now", &now, "--json", "dead-letters"])
            .output()
            .expect("dead-letters");
        let listing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if self.host_b.is_some() {
            return println!("  (the journal is in PostgreSQL: {:?})", self.w.state_url);
        }
        let db = match rusqlite::Connection::open(self.w.state.path().join("state.sqlite3")) {
            Ok(db) => db,
            Err(e) => return println!("  (journal unreadable: {e})"),
        };
        let row = |sql: &str, id: &str| -> String {
            db.query_row(sql, [id], |r| {
                let n = r.as_ref().column_count();
                let cell = |i| match r.get_ref(i) {
                    Ok(rusqlite::types::ValueRef::Text(t)) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                    Ok(rusqlite::types::ValueRef::Integer(n)) => n.to_string(),
                    Ok(rusqlite::types::ValueRef::Null) => "NULL".into(),
                    other => format!("{other:?}"),
                };
                Ok((0..n).map(cell).collect::<Vec<_>>().join(" | "))
            })
            .unwrap_or_else(|e| format!("none ({e})"))
        };
        for m in mails {
            let to = census::mail_to(m);
            let ids: Vec<String> = listing["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["to"].as_str() == Some(to.as_str()))
                .map(|e| format!("{} at {}: {}", e["reason"], e["parked_at"], e["detail"]))
                .collect();
            let mid = listing["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["to"].as_str() == Some(to.as_str()))
                .and_then(|e| e["message_id"].as_str())
                .map(|id| format!("id:{id}"))
                .unwrap_or_default();
            let accepted: Vec<String> = sent_at.get(&m).map_or(Vec::new(), |ts| {
                ts.iter()
                    .map(|t| format!("+{} min", (t - start) / 60))
                    .collect()
            });
            println!(
                "  m{m} ({mid}): accepted at [{}]; parked: {ids:?}",
                accepted.join(", ")
            );
            println!(
                "    attempts: {}",
                row("SELECT * FROM attempts WHERE identity = ?1", &mid)
            );
            println!(
                "    sent: {}",
                row("SELECT * FROM sent WHERE identity = ?1", &mid)
            );
            println!(
                "    parked: {}",
                row("SELECT * FROM parked WHERE identity = ?1", &mid)
            );
        }
    }

    fn main_ready(&self) -> u32 {
        census::ready_on(&self.w.amqp, &self.w.queue)
    }

    fn received(&self) -> usize {
        self.w.fake.state().received.len()
    }

    /// A drain-eod killed with SIGKILL mid-run; a run that ended before its kill (a
    /// Brevo fault stopped it, or the queue ran dry) is tried again, up to `TRIES` times.
    fn drain_kill(&mut self) -> String {
        let mut ended = Vec::new();
        for attempt in 1..=TRIES {
            let (landed, what) = self.drain_kill_once();
            if landed {
                return if attempt == 1 {
                    what
                } else {
                    format!("{what} (try {attempt}; before: {})", ended.join("; "))
                };
            }
            ended.push(what);
        }
        format!(
            "no drain could be killed mid-run in {TRIES} tries: {}",
            ended.join("; ")
        )
    }

    /// A drain-eod killed with SIGKILL after Brevo received 1 to 12 of its sends; says
    /// whether the kill landed mid-run.
    fn drain_kill_once(&mut self) -> (bool, String) {
        let faults = self.rng.random_bool(0.5);
        if faults {
            let mut script = Vec::new();
            for _ in 0..self.rng.random_range(1..=8) {
                let f = match self.rng.random_range(0..10) {
                    0..=4 => Fault::Pass,
                    5 => Fault::Status(500, r#"{"code":"internal_error","message":"x"}"#.into()),
                    6 => Fault::Status(503, "Service Unavailable".into()),
                    7 => Fault::Drop,
                    8 => Fault::AcceptThenDrop,
                    _ => Fault::RateLimited {
                        retry_after: Some(1),
                        reset: 1,
                    },
                };
                self.t.faults_scripted += usize::from(!matches!(f, Fault::Pass));
                script.push(Fault::optional(f));
            }
            self.w.fake.state().script.extend(script);
        }
        self.w.fake.state().latency = Duration::from_millis(self.rng.random_range(50..=250));
        let k = self.rng.random_range(1..=12);
        let conc = self.rng.random_range(1..=32u32).to_string();
        let base = self.received();
        let now = self.now();
        let main_host = if self.host_b.is_some() {
            self.rng.random_range(0..2)
        } else {
            0
        };
        let mut child = spawn(self.host_cmd(main_host).args([
            "--now",
            &now,
            "-q",
            "drain-eod",
            "--concurrency",
            &conc,
        ]));
        // Two hosts: the other one starts a drain at the same moment; it waits for the
        // run lock in PostgreSQL, and is killed in its turn once it has sent a few.
        let partner = if self.host_b.is_some() {
            Some(spawn(self.host_cmd(1 - main_host).args([
                "--now",
                &now,
                "-q",
                "--lock-wait",
                "120",
                "drain-eod",
                "--concurrency",
                &conc,
            ])))
        } else {
            None
        };
        // Killed once Brevo received k sends; with faults, once it answered k, so that
        // some faulted answers (5xx, 429, dropped connections) are settled first.
        let settled = |this: &Self| {
            let got = this.received() - base;
            if faults {
                got.saturating_sub(this.w.fake.in_flight() as usize) >= k
            } else {
                got >= k
            }
        };
        let start = Instant::now();
        while !settled(self) && child.is_running() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let in_flight = self.w.fake.in_flight();
        let landed;
        let outcome = match child.try_kill_mid_run() {
            Ok(_) => {
                landed = true;
                self.t.drain_kills_landed += 1;
                format!(
                    "killed after {} send(s), {in_flight} unanswered",
                    self.received() - base
                )
            }
            Err(out) => {
                landed = false;
                self.t.drains_done_before_kill += 1;
                format!(
                    "ended before the kill (exit {:?}): {}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            }
        };
        if let Some(mut partner) = partner {
            let base = self.received();
            let start = Instant::now();
            while self.received() - base < k
                && partner.is_running()
                && start.elapsed() < Duration::from_secs(60)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            match partner.try_kill_mid_run() {
                Ok(_) => self.t.partner_kills_landed += 1,
                Err(_) => self.t.partners_done_before_kill += 1,
            }
        }
        // Let the killed run's sends be answered before the next run (the fake holds
        // each for its latency), then clear what the kill left unused.
        let wait = Instant::now();
        while self.w.fake.in_flight() > 0 && wait.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut s = self.w.fake.state();
        s.script.clear();
        s.latency = Duration::ZERO;
        drop(s);
        let what = format!(
            "drain-eod --concurrency {conc}{}: {outcome}",
            if faults { " with Brevo faults" } else { "" }
        );
        (landed, what)
    }

    /// A drain-hourly during which Brevo accepts 1 to 4 mails and answers a 5xx all
    /// the same, then, an hour later, the next drain-hourly. Landed when at least one
    /// such answer was given.
    fn accept_5xx(&mut self) -> String {
        let run = |this: &mut Self| {
            let now = this.now();
            let out = this
                .host()
                .args(["--now", &now, "--json", "drain-hourly"])
                .output()
                .expect("drain-hourly");
            let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            format!(
                "exit {:?}, sent {}, already_sent {}, retried {}, parked {}",
                out.status.code(),
                s["sent"],
                s["already_sent"],
                s["retried"],
                s["parked"]
            )
        };
        let mut tries = Vec::new();
        for attempt in 1..=TRIES {
            if self.main_ready() == 0 {
                break;
            }
            let n = self.rng.random_range(1..=4);
            let mut script = Vec::new();
            // Which entries of the script are an accept-then-5xx.
            let mut kinds = Vec::new();
            for _ in 0..n {
                if self.rng.random_bool(0.5) {
                    script.push(Fault::optional(Fault::Pass));
                    kinds.push(false);
                }
                kinds.push(true);
                let status = [500u16, 502, 503, 504][self.rng.random_range(0..4)];
                script.push(Fault::optional(Fault::AcceptThenStatus(
                    status,
                    r#"{"code":"internal_error","message":"x"}"#.into(),
                )));
            }
            let scripted = script.len();
            self.w.fake.state().script.extend(script);
            let accepted_before = self.w.fake.state().accepted.len();
            let first = run(self);
            let left = self.w.fake.state().script.len();
            self.w.fake.state().script.clear();
            let used = scripted - left;
            // A new acceptance answered 5xx (a repeat Brevo refused is no such thing).
            let accepted = self.w.fake.state().accepted.len() - accepted_before;
            let faulted = kinds[..used].iter().filter(|k| **k).count();
            let what = format!("{n} accept-then-5xx scripted ({used} answers used): {first}");
            if accepted == 0 || faulted == 0 {
                tries.push(what);
                continue;
            }
            self.t.accept_5xx_landed += 1;
            self.t.accepted_then_5xx += faulted;
            let gap = self.rng.random_range(60..=75);
            let moved = self.advance(gap);
            let second = run(self);
            return format!(
                "drain-hourly with {what} (try {attempt}); +{gap} min ({moved} retried back), next drain-hourly: {second}"
            );
        }
        format!(
            "no drain-hourly met an accept-then-5xx in {} tries: {}",
            tries.len(),
            tries.join("; ")
        )
    }

    /// A reprioritize killed with SIGKILL mid-run, held there by a proxy (at a random
    /// publish: a staging batch on the way out, or a mail's copy on the way back), then
    /// a drain-hourly, which puts the staged mails back before it sends.
    fn reprio_sigkill(&mut self) -> String {
        for attempt in 1..=TRIES {
            let n0 = self.main_ready();
            if n0 == 0 {
                return "reprioritize: the main queue is empty, nothing to kill".into();
            }
            let nth = self.rng.random_range(1..=(n0 * 9 / 10).max(1));
            let proxy = support::proxy::Proxy::hold_at_on(
                self.node.port,
                support::proxy::Method::BasicPublish,
                nth,
            );
            let now = self.now();
            let mut child = spawn(
                self.w
                    .std_cmd()
                    .env("QUEUE_SERVICE_URL", proxy.url())
                    .args(["--now", &now, "-q", "reprioritize"]),
            );
            let start = Instant::now();
            while !proxy.triggered()
                && child.is_running()
                && start.elapsed() < Duration::from_secs(60)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            let landed = proxy.triggered() && child.try_kill_mid_run().is_ok();
            drop(proxy);
            if !landed {
                self.t.reprio_done_before += 1;
                continue;
            }
            self.t.reprio_sigkill_landed += 1;
            // The broker returns the killed run's unacked messages as soon as the
            // kill closes its socket; any it returns late, the next run puts back.
            let staged = census::staged_mails(&self.w.amqp, &self.w.queue);
            // An hourly drain held to its limit: it must put the staged mails back and
            // send the most urgent, and leave mail for the steps that follow (a
            // drain-eod would send it all, with the soak's unlimited credits).
            let which = "drain-hourly --strict-limit";
            let now = self.now();
            let out = self
                .host()
                .args(["--now", &now, "--json", "drain-hourly", "--strict-limit"])
                .output()
                .expect("drain");
            let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let after = census::staged_mails(&self.w.amqp, &self.w.queue);
            return format!(
                "reprioritize of {n0} mails killed at publish #{nth} (try {attempt}), {staged} mail(s) staged; {which}: exit {:?}, sent {}, {after} left staged",
                out.status.code(),
                s["sent"]
            );
        }
        format!("reprioritize: finished before its SIGKILL {TRIES} times")
    }

    /// A reprioritize interrupted mid-run by `stop_app` or a broker SIGKILL, at a
    /// random point after it began taking the queue. It counts as interrupted when the
    /// run failed (exit 4: the broker went away under it) after it had begun taking;
    /// when it finished first, the broker fault still happens, between runs, and it is
    /// tried again with an earlier fault. `rabbitmqctl stop_app` takes a second or more
    /// to land, longer than a small queue takes: from the second try on it is started
    /// before the reprioritize, with a random head start.
    fn reprio(&mut self, ev: Event) -> String {
        let stop_app = ev == Event::ReprioStopApp;
        let what = if stop_app {
            "stop_app"
        } else {
            "broker kill -9"
        };
        for attempt in 1..=TRIES {
            let n0 = self.main_ready();
            if n0 == 0 {
                return "reprioritize: the main queue is empty, nothing to interrupt".into();
            }
            let ahead = stop_app && attempt >= 2;
            let delay = Duration::from_millis(if ahead {
                self.rng
                    .random_range(0..=u64::try_from(self.ctl_ms).unwrap_or(0))
            } else {
                self.rng
                    .random_range(0..=u64::try_from(self.reprio_ms * 7 / 10).unwrap_or(0))
            });
            let now = self.now();
            let (amqp, queue) = (self.w.amqp.clone(), self.w.queue.clone());
            let mut cmd = self.host();
            cmd.args(["--now", &now, "-q", "reprioritize"]);
            let ctl_lead = Duration::from_millis(u64::try_from(self.ctl_ms).unwrap_or(0));
            // Waits until the run has begun taking the queue (or ended, or the broker
            // went away); says whether it began.
            let wait_taking = |child: &mut support::Running| {
                let start = Instant::now();
                while child.is_running() && start.elapsed() < Duration::from_secs(60) {
                    match census::try_ready_on(&amqp, &queue) {
                        Some(n) if n < n0 => return true,
                        None => return false,
                        _ => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
                false
            };
            let began_taking;
            let out;
            let mut ran = Duration::ZERO;
            if ahead {
                let node = &self.node;
                let (o, b, took) = std::thread::scope(|sc| {
                    let ctl = sc.spawn(|| {
                        let t = Instant::now();
                        node.stop_app();
                        t.elapsed()
                    });
                    // The run starts `delay` before the stop_app is expected to land.
                    std::thread::sleep(ctl_lead.saturating_sub(delay));
                    let mut child = spawn(&mut cmd);
                    let b = wait_taking(&mut child);
                    let took = ctl.join().expect("stop_app");
                    (child.wait_with_output(), b, took)
                });
                self.ctl_ms = took.as_millis().clamp(200, 5000);
                (out, began_taking) = (o, b);
            } else {
                let mut child = spawn(&mut cmd);
                began_taking = wait_taking(&mut child);
                let began = Instant::now();
                std::thread::sleep(delay);
                if stop_app {
                    self.node.stop_app();
                } else {
                    self.node.kill9();
                }
                out = child.wait_with_output();
                ran = began.elapsed();
            }
            if stop_app {
                self.node.start_app();
            } else {
                self.node.restart();
            }
            let code = out.status.code().map_or("signal".into(), |c| c.to_string());
            *self.t.reprio_exit_codes.entry(code.clone()).or_default() += 1;
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err.trim();
            if code != "0" && began_taking {
                match ev {
                    Event::ReprioStopApp => self.t.reprio_stop_app_landed += 1,
                    _ => self.t.reprio_kill9_landed += 1,
                }
                return format!(
                    "reprioritize of {n0} mails, {what} {} (try {attempt}): exit {code}: {err}",
                    if ahead {
                        format!("started {} ms before it", delay.as_millis())
                    } else {
                        format!("{} ms after it began taking", delay.as_millis())
                    }
                );
            }
            // It finished first (or never began): aim earlier next time.
            self.t.reprio_done_before += 1;
            if code == "0" && !ahead {
                self.reprio_ms = ran.as_millis().min(self.reprio_ms);
            }
        }
        format!("reprioritize: finished before the {what} {TRIES} times")
    }
}

fn main() {
    let a = args();
    let began = Instant::now();
    let mut rng = StdRng::seed_from_u64(a.seed);
    eprintln!("soak: starting a private RabbitMQ node");
    let node = PrivateNode::start(NodeOptions::default());
    let mut w = World::on(&node.amqp_url(), "soak", 1_000_000_000.0);
    // Two hosts: two state directories, one private PostgreSQL for their state.
    let host_b = a.two_hosts.then(|| {
        eprintln!("soak: two hosts: starting a private PostgreSQL");
        let cluster = support::pg::Cluster::start(true);
        w.state_url = Some(cluster.new_database());
        (support::private_dir("host B's state directory"), cluster)
    });
    let clock = DateTime::parse_from_rfc3339("2026-11-27T08:00:00-03:00").expect("start");
    w.fake.set_now(clock.timestamp());
    let jobs: Vec<_> = (0..a.mails)
        .map(|n| {
            let due = clock + chrono::Duration::minutes(rng.random_range(120..=5 * 24 * 60));
            job(&census::mail_to(n), 3, &due.to_rfc3339())
        })
        .collect();
    w.publish(&jobs, &clock.to_rfc3339());
    let mut soak = Soak {
        node,
        w,
        host_b,
        clock,
        rng,
        t: Tally::default(),
        reprio_ms: 3000,
        ctl_ms: 1500,
    };
    let mut events = vec![Event::DrainKill; a.drain_kills];
    events.extend(vec![Event::ReprioStopApp; a.reprio_stop_app]);
    events.extend(vec![Event::ReprioKill9; a.reprio_kill9]);
    events.extend(vec![Event::Accept5xx; a.accept_5xx]);
    events.extend(vec![Event::ReprioSigkill; a.reprio_sigkill]);
    events.shuffle(&mut soak.rng);
    let total = events.len();
    let mut first_loss = None;
    for (i, ev) in events.into_iter().enumerate() {
        let minutes = match soak.rng.random_range(0..10) {
            0..=3 => soak.rng.random_range(1..=5),
            4..=5 => soak.rng.random_range(20..=29),
            6..=8 => soak.rng.random_range(31..=60),
            _ => soak.rng.random_range(61..=180),
        };
        soak.t.past_window += usize::from(minutes >= 30);
        let moved = soak.advance(minutes);
        let what = match ev {
            Event::DrainKill => soak.drain_kill(),
            Event::Accept5xx => soak.accept_5xx(),
            Event::ReprioSigkill => soak.reprio_sigkill(),
            e => {
                let what = soak.reprio(e);
                format!("{what}; {}", soak.finish_reprioritize())
            }
        };
        // A census after each interruption: a mail lost here is lost for good (a
        // mail sent and still queued may yet be settled by a later run).
        let c = census::take(&soak.w.amqp, &soak.w.queue, &soak.w.fake, a.mails);
        if first_loss.is_none() && !c.lost.is_empty() {
            first_loss = Some(i + 1);
        }
        eprintln!(
            "soak: [{:>2}/{total}] {:>6.1}s  +{minutes:>3} min ({} retried back)  {what}  \
             | census: lost {}, sent+queued {}, queued twice {}",
            i + 1,
            began.elapsed().as_secs_f64(),
            moved,
            c.lost.len(),
            c.sent_and_queued.len(),
            c.queued_twice.len()
        );
    }
    // Two hours on: past Brevo's window and every retry delay. Clean drains until
    // nothing is left to send, an hour apart.
    soak.advance(120);
    // An interrupted reprioritize leaves mail in its staging queue, which drains do not
    // take: the daily job's next run moves it back.
    let now = soak.now();
    let out = soak
        .host()
        .args(["--now", &now, "-q", "reprioritize"])
        .output()
        .expect("reprioritize");
    eprintln!("soak: final reprioritize: exit {:?}", out.status.code());
    let mut clean = 0;
    while census::pending_on(&soak.w.amqp, &soak.w.queue) > 0 && clean < 12 {
        clean += 1;
        let now = soak.now();
        let out = soak
            .host()
            .args(["--now", &now, "--json", "drain-eod"])
            .output()
            .expect("clean drain");
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        eprintln!(
            "soak: clean drain {clean}: exit {:?}, sent {}, already_sent {}, parked {}, retried {}",
            out.status.code(),
            s["sent"],
            s["already_sent"],
            s["parked"],
            s["retried"]
        );
        soak.advance(61);
    }
    let c = census::take(&soak.w.amqp, &soak.w.queue, &soak.w.fake, a.mails);
    let t = &soak.t;
    println!(
        "soak: seed {}, {} mails, {:.0} s, {} minutes of acaso-mail time",
        a.seed,
        a.mails,
        began.elapsed().as_secs_f64(),
        t.minutes
    );
    println!(
        "interruptions: {}/{} drain kills landed mid-run ({} drains ended before their kill), \
         {}/{} reprioritize runs failed under stop_app and {}/{} under a broker kill -9 ({} runs \
         ended before the fault and were tried again); reprioritize exit codes {:?}",
        t.drain_kills_landed,
        a.drain_kills,
        t.drains_done_before_kill,
        t.reprio_stop_app_landed,
        a.reprio_stop_app,
        t.reprio_kill9_landed,
        a.reprio_kill9,
        t.reprio_done_before,
        t.reprio_exit_codes
    );
    println!(
        "{}/{} drain-hourly runs met Brevo accepting then answering 5xx ({} such answers), \
         each followed by the next drain-hourly an hour later; {}/{} reprioritize runs killed \
         with SIGKILL mid-run, each followed by a drain",
        t.accept_5xx_landed,
        a.accept_5xx,
        t.accepted_then_5xx,
        t.reprio_sigkill_landed,
        a.reprio_sigkill
    );
    println!(
        "time: {} of {total} steps moved the clock 30 min or more (past Brevo's window); \
         {} Brevo faults scripted; {} retried mails moved back to the main queue; {clean} clean drain(s)",
        t.past_window, t.faults_scripted, t.released
    );
    if a.two_hosts {
        println!(
            "two hosts on one PostgreSQL: {} runs on host A, {} on host B; {} partner drains \
             (started at once on the other host, waiting for the lock) killed mid-run, {} ended first",
            t.runs_per_host[0],
            t.runs_per_host[1],
            t.partner_kills_landed,
            t.partners_done_before_kill
        );
    }
    if let Some(step) = first_loss {
        println!("the first mail was lost at step {step} (see the step lines on stderr)");
    }
    println!("census:\n{}", c.table());
    for (m, _) in &c.sent_twice {
        let at: Vec<String> = c.sent_at.get(m).map_or(Vec::new(), |ts| {
            ts.iter()
                .map(|t| format!("+{} min", (t - clock.timestamp()) / 60))
                .collect()
        });
        println!(
            "  m{m} accepted by Brevo at {} (its idempotency window is 30 min)",
            at.join(", ")
        );
    }
    if !c.sent_and_queued.is_empty() || !c.queued_twice.is_empty() {
        soak.explain(
            c.sent_and_queued
                .iter()
                .chain(&c.queued_twice)
                .map(|(m, _)| *m),
            &c.sent_at,
            clock.timestamp(),
        );
    }
    // A soak whose faults did not land proves less than it says: that fails too.
    let landed = t.drain_kills_landed
        + t.reprio_stop_app_landed
        + t.reprio_kill9_landed
        + t.accept_5xx_landed
        + t.reprio_sigkill_landed;
    let asked =
        a.drain_kills + a.reprio_stop_app + a.reprio_kill9 + a.accept_5xx + a.reprio_sigkill;
    let bad = !c.lost.is_empty() || c.twice() > 0 || landed < asked;
    println!(
        "{}: {} lost, {} twice, {landed} of {asked} interruptions landed mid-run",
        if bad { "FAIL" } else { "OK" },
        c.lost.len(),
        c.twice()
    );
    // Exit skips destructors: stop the node (and delete its queues) first.
    drop(soak);
    std::process::exit(i32::from(bad));
}
