//! The census of a fault test: where every mail is once the faults are over.
//!
//! Each mail of a census is named by its recipient, `m<N>@example.org` ([`mail_to`]).
//! A mail is *sent* each time the fake Brevo accepted it (a `duplicate_parameter`
//! refusal is not a send), and *queued* once per copy in the main, retry and parking
//! queues. The promise "no mail lost, none sent twice" is: for every mail,
//! sent + queued = 1. A mail with 0 is lost; one with 2 or more is twice (sent twice,
//! or sent and still queued, or queued twice).
//!
//! The queues are read without consuming: every message is held unacked on one
//! connection (retry queues first, so a message cannot expire into the main queue
//! between two reads), then all are handed back when the connection closes.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use acaso_mail::mailbox::batch;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use serde_json::Value;

use super::fake_brevo::FakeBrevo;
use super::{block_on, header_str};

/// The retry queues' delays (`<queue>.retry.<delay>s`), as acaso-mail declares them.
pub const RETRY_DELAYS: [u64; 4] = [60, 300, 1800, 3600];

/// The recipient that names mail `n` of a census.
pub fn mail_to(n: usize) -> String {
    format!("m{n}@example.org")
}

/// Which mail a body (generic format) is: `n` of `m<n>@example.org`.
fn mail_of(body: &[u8]) -> Option<usize> {
    let v: Value = serde_json::from_slice(body).ok()?;
    mail_of_value(&v, "to", "email")
}

/// Which mail a JSON document names under `to[0].<field>`.
fn mail_of_value(v: &Value, to: &str, field: &str) -> Option<usize> {
    v.get(to)?
        .get(0)?
        .get(field)?
        .as_str()?
        .strip_prefix('m')?
        .strip_suffix("@example.org")?
        .parse()
        .ok()
}

/// Where a copy of a mail sits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    /// The main queue.
    Main,
    /// A retry queue, by delay.
    Retry(u64),
    /// The parking queue, by `x-acaso-reason`.
    Parked(String),
    /// The staging queue of an interrupted `reprioritize` (the next run moves it back).
    Staging,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Main => write!(f, "main"),
            Place::Retry(d) => write!(f, "retry.{d}s"),
            Place::Parked(r) => write!(f, "parked ({r})"),
            Place::Staging => write!(f, "staging (reprioritize)"),
        }
    }
}

/// What a census found.
#[derive(Debug, Default)]
pub struct Census {
    /// Mails counted.
    pub mails: usize,
    /// Exactly once: accepted by Brevo once, queued nowhere.
    pub sent: usize,
    /// Exactly once: not sent, one copy in the main queue.
    pub in_main: usize,
    /// Exactly once: not sent, one copy in a retry queue.
    pub in_retry: usize,
    /// Exactly once: not sent, one copy parked, by reason.
    pub parked: BTreeMap<String, usize>,
    /// Mails nowhere: not sent, not queued.
    pub lost: Vec<usize>,
    /// Mails Brevo accepted twice or more (mail, times).
    pub sent_twice: Vec<(usize, usize)>,
    /// When Brevo accepted each mail (Unix seconds, the fake's clock).
    pub sent_at: HashMap<usize, Vec<i64>>,
    /// Mails Brevo accepted that are also still queued (mail, where).
    pub sent_and_queued: Vec<(usize, Vec<Place>)>,
    /// Mails never sent with two or more copies queued (mail, where).
    pub queued_twice: Vec<(usize, Vec<Place>)>,
    /// Messages queued, or sends accepted, that name no mail of this census.
    pub strangers: usize,
    /// Sends the fake refused as repeats of an idempotency key (not sends).
    pub refused_repeats: u32,
}

impl Census {
    /// Mails sent or queued more than once, in all.
    pub fn twice(&self) -> usize {
        self.sent_twice.len() + self.sent_and_queued.len() + self.queued_twice.len()
    }

    /// Whether every mail is exactly once somewhere, and nothing else is.
    pub fn exact(&self) -> bool {
        self.lost.is_empty() && self.twice() == 0 && self.strangers == 0
    }

    /// The census as a table, then the mails that break it (at most 10 of each kind).
    pub fn table(&self) -> String {
        let mut t = String::new();
        let mut row = |what: &str, n: usize| {
            let _ = writeln!(t, "  {what:<48} {n:>6}");
        };
        row("mails", self.mails);
        row("sent once", self.sent);
        row("queued once: main", self.in_main);
        row("queued once: retry", self.in_retry);
        for (reason, n) in &self.parked {
            row(&format!("queued once: parked {reason}"), *n);
        }
        row("LOST (not sent, not queued)", self.lost.len());
        row("TWICE (sent >= 2, or sent + queued >= 2)", self.twice());
        row("  of which sent twice or more", self.sent_twice.len());
        row(
            "  of which sent and still queued",
            self.sent_and_queued.len(),
        );
        let mut by_place: BTreeMap<String, usize> = BTreeMap::new();
        for (_, places) in &self.sent_and_queued {
            for p in places {
                *by_place.entry(p.to_string()).or_default() += 1;
            }
        }
        for (p, n) in &by_place {
            row(&format!("    copies in {p}"), *n);
        }
        row("  of which queued twice, not sent", self.queued_twice.len());
        row("strangers (naming no mail of the census)", self.strangers);
        row(
            "repeats refused by Brevo (duplicate_parameter)",
            self.refused_repeats as usize,
        );
        let few = |v: Vec<String>| {
            let n = v.len();
            let mut s: Vec<String> = v.into_iter().take(10).collect();
            if n > 10 {
                s.push(format!("... {} more", n - 10));
            }
            s.join(", ")
        };
        if !self.lost.is_empty() {
            let _ = writeln!(
                t,
                "  lost: {}",
                few(self.lost.iter().map(|m| format!("m{m}")).collect())
            );
        }
        if !self.sent_twice.is_empty() {
            let _ = writeln!(
                t,
                "  sent twice: {}",
                few(self
                    .sent_twice
                    .iter()
                    .map(|(m, n)| format!("m{m} x{n}"))
                    .collect())
            );
        }
        for (what, list) in [
            ("sent and queued", &self.sent_and_queued),
            ("queued twice", &self.queued_twice),
        ] {
            if !list.is_empty() {
                let _ = writeln!(
                    t,
                    "  {what}: {}",
                    few(list
                        .iter()
                        .map(|(m, p)| format!(
                            "m{m} in {}",
                            p.iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join("+")
                        ))
                        .collect())
                );
            }
        }
        t
    }
}

/// The names of a main queue's family, with where each puts a copy.
fn family(queue: &str) -> Vec<(String, Option<u64>, bool)> {
    let mut v: Vec<(String, Option<u64>, bool)> = RETRY_DELAYS
        .iter()
        .map(|d| (format!("{queue}.retry.{d}s"), Some(*d), false))
        .collect();
    v.push((queue.to_string(), None, false));
    v.push((format!("{queue}.dead"), None, true));
    v.push((format!("{queue}.reprioritize"), None, false));
    v
}

/// Every message of `queue`'s family on the broker at `amqp`, read without consuming:
/// (where, headers, body).
pub fn browse(amqp: &str, queue: &str) -> Vec<(Place, FieldTable, Vec<u8>)> {
    browse_these(amqp, family(queue))
}

/// Every message of these queues (name, retry delay, parking), read without consuming.
fn browse_these(
    amqp: &str,
    queues: Vec<(String, Option<u64>, bool)>,
) -> Vec<(Place, FieldTable, Vec<u8>)> {
    block_on("reading the queues for a census", async {
        let conn = Connection::connect(amqp, ConnectionProperties::default())
            .await
            .expect("the census connects to the broker");
        let mut out = Vec::new();
        for (name, delay, parking) in queues {
            // One channel per queue: a missing queue closes only its own channel.
            let ch = conn.create_channel().await.expect("channel");
            while let Ok(Some(m)) = ch
                .basic_get(name.as_str().into(), BasicGetOptions { no_ack: false })
                .await
            {
                let headers = m.delivery.properties.headers().clone().unwrap_or_default();
                let place = match (delay, parking) {
                    (Some(d), _) => Place::Retry(d),
                    (None, true) => Place::Parked(
                        header_str(&headers, "x-acaso-reason").unwrap_or_else(|| "?".into()),
                    ),
                    (None, false) if name.ends_with(".reprioritize") => {
                        // A staging message is a batch of mails: each is a copy.
                        let mails = batch::unpack(&m.delivery.properties, &m.delivery.data)
                            .expect("a staging batch acaso-mail can read");
                        for (props, body) in mails {
                            let h = props.headers().clone().unwrap_or_default();
                            out.push((Place::Staging, h, body));
                        }
                        continue;
                    }
                    (None, false) => Place::Main,
                };
                out.push((place, headers, m.delivery.data));
            }
        }
        // Closing hands every message back, unacked, where it was.
        let _ = conn.close(200, "census done".into()).await;
        out
    })
}

/// Mails waiting in the staging queue of `queue` (each batch unpacked), read without
/// consuming.
pub fn staged_mails(amqp: &str, queue: &str) -> u32 {
    let staging = format!("{queue}.reprioritize");
    let n = browse_these(amqp, vec![(staging, None, false)]).len();
    u32::try_from(n).expect("a count")
}

/// Counts mails `0..mails` of `queue` on the broker at `amqp` and in what `fake`
/// accepted.
pub fn take(amqp: &str, queue: &str, fake: &FakeBrevo, mails: usize) -> Census {
    let mut sent: HashMap<usize, usize> = HashMap::new();
    let mut queued: HashMap<usize, Vec<Place>> = HashMap::new();
    let mut c = Census {
        mails,
        ..Census::default()
    };
    {
        let s = fake.state();
        c.refused_repeats = s.duplicates;
        for (i, body) in s.accepted.iter().enumerate() {
            match mail_of_value(body, "to", "email") {
                Some(m) if m < mails => {
                    *sent.entry(m).or_default() += 1;
                    if let Some(t) = s.accepted_at.get(i) {
                        c.sent_at.entry(m).or_default().push(*t);
                    }
                }
                _ => c.strangers += 1,
            }
        }
    }
    for (place, _, body) in browse(amqp, queue) {
        match mail_of(&body) {
            Some(m) if m < mails => queued.entry(m).or_default().push(place),
            _ => c.strangers += 1,
        }
    }
    for m in 0..mails {
        let s = sent.get(&m).copied().unwrap_or(0);
        let mut q = queued.remove(&m).unwrap_or_default();
        q.sort();
        match (s, q.len()) {
            (0, 0) => c.lost.push(m),
            (1, 0) => c.sent += 1,
            (0, 1) => match &q[0] {
                Place::Main | Place::Staging => c.in_main += 1,
                Place::Retry(_) => c.in_retry += 1,
                Place::Parked(r) => *c.parked.entry(r.clone()).or_default() += 1,
            },
            (s, 0) => c.sent_twice.push((m, s)),
            (0, _) => c.queued_twice.push((m, q)),
            (s, _) if s >= 2 => c.sent_twice.push((m, s)),
            (_, _) => c.sent_and_queued.push((m, q)),
        }
    }
    c
}

/// Moves every mail of the retry queues whose delay is at most `max_delay` seconds
/// back to the main queue, as the broker does when a retry queue's TTL runs out (same
/// properties and headers, `x-acaso-attempts` included): the census moves acaso-mail's
/// clock with `--now`, which the broker's TTLs do not follow. Each copy is confirmed
/// by the broker before the original is acked. Returns how many moved.
pub fn release_retries(amqp: &str, queue: &str, max_delay: u64) -> usize {
    block_on("moving retried mails back to the main queue", async {
        let conn = Connection::connect(amqp, ConnectionProperties::default())
            .await
            .expect("connect to release retries");
        let mut moved = 0;
        for d in RETRY_DELAYS.iter().filter(|d| **d <= max_delay) {
            let name = format!("{queue}.retry.{d}s");
            let ch = conn.create_channel().await.expect("channel");
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("confirms");
            while let Ok(Some(m)) = ch
                .basic_get(name.as_str().into(), BasicGetOptions { no_ack: false })
                .await
            {
                let mut props = m.delivery.properties.clone();
                // What dead-lettering does: the mail says where it came from.
                let mut headers = props.headers().clone().unwrap_or_default();
                headers.insert(
                    "x-census-released-from".into(),
                    AMQPValue::LongString(name.as_str().into()),
                );
                props = props.with_headers(headers);
                let confirm = ch
                    .basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions::default(),
                        &m.delivery.data,
                        props,
                    )
                    .await
                    .expect("publish a released retry")
                    .await
                    .expect("confirmation of a released retry");
                assert!(confirm.is_ack(), "the broker refused a released retry");
                ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
                    .await
                    .expect("ack the retried original");
                moved += 1;
            }
        }
        let _ = conn.close(200, "released".into()).await;
        moved
    })
}

/// Ready messages in `queue` on the broker at `amqp` (0 when it does not exist).
pub fn ready_on(amqp: &str, queue: &str) -> u32 {
    try_ready_on(amqp, queue).expect("connect to count")
}

/// Ready messages in `queue` on the broker at `amqp` (0 when it does not exist);
/// `None` when the broker cannot be reached.
pub fn try_ready_on(amqp: &str, queue: &str) -> Option<u32> {
    block_on("counting messages", async {
        let conn = Connection::connect(amqp, ConnectionProperties::default())
            .await
            .ok()?;
        let ch = conn.create_channel().await.ok()?;
        let n = ch
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_or(0, |q| q.message_count());
        let _ = conn.close(200, "ok".into()).await;
        Some(n)
    })
}

/// Ready messages in the main and retry queues of `queue`: mails still to drain.
pub fn pending_on(amqp: &str, queue: &str) -> u32 {
    family(queue)
        .iter()
        .filter(|(_, _, parking)| !parking)
        .map(|(name, _, _)| ready_on(amqp, name))
        .sum()
}
