//! Re-ordering the main queue with today's priorities, in bounded chunks, through a
//! staging queue (`<main>.reprioritize`), with no transaction and nothing lost:
//!
//! 1. **Out**: every mail ready in the main queue when the run starts is copied to the
//!    staging queue (or parked), and its original acked once the copy is confirmed.
//!    Mails travel to staging in batches (see `batch`): one staging message carries up
//!    to `ACK_EVERY` mails (and `batch::MAX_BYTES`) of the same old priority, so each
//!    mail crosses the broker as a message of its own only twice (out of the main
//!    queue, back into it), as in a single consume-and-republish pass. A batch's
//!    priority is `9 - rank(old priority)`, so that on the way back the mails of one new
//!    priority come oldest first (a lower old priority for the same day means published
//!    earlier), then in their original order.
//! 2. **Back**: every staged mail, this run's and any an interrupted run left (batches,
//!    or single mails from a version before batches), is copied to the main queue with
//!    its new priority, and its batch acked once every copy is confirmed. A mail whose
//!    identity already went back in this run is a duplicate left by a crash: it is
//!    dropped (acked without a copy).
//!
//! Never more than `PREFETCH` mails are unacked on the way out, nor `STAGED_PREFETCH`
//! batches on the way back, nor `WINDOW` copies unconfirmed; the only memory that grows
//! is one 8-byte hash per mail sent back (deduplication).
//! A mail parked on the way (expired, unreadable) is journaled before its copy goes out
//! (a chunk's parked copies wait for the chunk's end: one transaction for them all); a
//! crash before its original's ack leaves the original, which the next run sends on
//! to a drain instead of parking it again (the drain drops it if a copy is parked).
//! A crash anywhere leaves every mail in the main queue, the staging queue or both
//! (copy confirmed, original not yet acked); the next run finishes the job and drops
//! the second copy; drains in between skip a repeat through the journal.

use std::collections::{BTreeMap, HashSet};

use anyhow::Result;
use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use sha2::{Digest, Sha256};

mod chunks;

use self::chunks::{Acks, Back, Held, Hooks, Pass, release_parks, stage};
use super::Envelope;
use super::batch::{self, Batch};
use super::message::{envelope, parking_headers, text, with_headers};
use super::publisher::Publisher;
use super::rabbit::{Rabbit, Reorder};
use super::reader::Reader;
use super::topology::{H_DETAIL, detail_header};
use crate::park::ParkReason;
use crate::urgency::OUR_MAX_PRIORITY;

/// Mails held unacked at once on the way out.
const PREFETCH: u16 = 2000;
/// Batches held unacked at once on the way back.
const STAGED_PREFETCH: u16 = 8;
/// Copies published and not yet confirmed.
const WINDOW: usize = 1000;
/// On the way out, originals are acked (all at once, up to the latest confirmed) every
/// this many, and a batch holds at most this many mails.
const ACK_EVERY: u64 = 250;

/// What a re-ordering did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reordered {
    /// Mails taken from the main queue.
    pub read: u64,
    /// Mails an interrupted run had left in the staging queue.
    pub resumed: u64,
    /// Mails put back in the main queue with today's priority.
    pub requeued: u64,
    /// Of the mails read from the main queue, those whose priority changed.
    pub changed: u64,
    /// Mails parked, per reason.
    pub parked: BTreeMap<ParkReason, u64>,
    /// Second copies dropped (same identity as a mail already put back).
    pub duplicates: u64,
    /// Whether `stop` ended the run before the end (mails may wait in staging).
    pub stopped: bool,
    /// Messages left in the staging queue: batches of up to `ACK_EVERY` mails (or, from
    /// a version before batches, single mails).
    pub left_in_staging: u64,
}

/// Where one mail goes: a queue and the copy's properties, or nowhere (dropped).
type Route = Option<(String, BasicProperties)>;
/// Where a pass sends each mail it takes.
type Router<'r> = dyn FnMut(&Envelope, &BasicProperties) -> Route + 'r;

/// An identity as 8 bytes: a collision among a million mails has odds of about 1 in
/// 36 billion.
fn compact(identity: &str) -> u64 {
    let d = Sha256::digest(identity.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

impl Rabbit {
    /// Re-orders the main queue: `fate` says for each mail whether it is parked or
    /// requeued with a new priority; `parked_copies` journals the identities of parked
    /// copies about to be published; `tick` is called for
    /// each mail handled (twice per mail: out and back); `stop` is checked between mails.
    pub async fn reorder(
        &mut self,
        fate: impl FnMut(&Envelope) -> Reorder,
        parked_copies: impl FnMut(&[String]) -> Result<()>,
        tick: impl FnMut(),
        stop: impl Fn() -> bool,
        now: DateTime<Utc>,
    ) -> Result<Reordered> {
        self.passes(true, fate, parked_copies, tick, stop, now)
            .await
    }

    /// Finishes what an interrupted re-ordering left: only the way back, for the mails
    /// in the staging queue (the main queue is left as it is). Drains and `stats` call
    /// it before they send or count, so that no mail waits out of their reach.
    pub async fn unstage(
        &mut self,
        fate: impl FnMut(&Envelope) -> Reorder,
        parked_copies: impl FnMut(&[String]) -> Result<()>,
        stop: impl Fn() -> bool,
        now: DateTime<Utc>,
    ) -> Result<Reordered> {
        self.passes(false, fate, parked_copies, || {}, stop, now)
            .await
    }

    async fn passes(
        &mut self,
        whole: bool,
        mut fate: impl FnMut(&Envelope) -> Reorder,
        mut parked_copies: impl FnMut(&[String]) -> Result<()>,
        mut tick: impl FnMut(),
        stop: impl Fn() -> bool,
        now: DateTime<Utc>,
    ) -> Result<Reordered> {
        let main = self.topo.main().to_string();
        let (staging, parking) = (self.topo.staging(), self.topo.parking());
        let scale = self.info().scale();
        // Names this run's batches: any other batch met on the way back was left by an
        // interrupted run.
        let run = format!(
            "{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        let mut r = Reordered::default();
        let out = if whole {
            u64::from(self.broker.ready(&main).await?)
        } else {
            0
        };
        let park = |reason: ParkReason, detail: &str, props: &BasicProperties| {
            let props = with_headers(props, &parking_headers(reason, detail, now));
            Some((parking.clone(), props))
        };
        let mut parked = BTreeMap::<ParkReason, u64>::new();
        let mut changed = 0;
        let mut sent = 0u64;
        // Parked and already-sent mails end the same way on both passes: `Err` is the
        // route of such a mail (boxed: a route is large), `Ok` the new priority of one to
        // re-queue.
        // Identities parked by this run: a second copy (a legacy body published twice)
        // is dropped, not parked beside the first.
        let mut parked_here: HashSet<u64> = HashSet::new();
        let mut settle = |f: Reorder,
                          identity: &str,
                          props: &BasicProperties|
         -> std::result::Result<u8, Box<Route>> {
            match f {
                Reorder::Park { .. } if !parked_here.insert(compact(identity)) => {
                    sent += 1;
                    Err(Box::new(None))
                }
                Reorder::Park { reason, detail } => {
                    *parked.entry(reason).or_default() += 1;
                    Err(Box::new(park(reason, &detail, props)))
                }
                Reorder::Drop => {
                    sent += 1;
                    Err(Box::new(None))
                }
                Reorder::Requeue(p) => Ok(p),
            }
        };
        let mut hooks = Hooks {
            parked: &mut parked_copies,
            tick: &mut tick,
            stop: &stop,
            run: &run,
        };
        let Pass {
            taken: read,
            stopped,
            ..
        } = self
            .out(
                out,
                &mut |env, props| match settle(fate(env), &env.identity, props) {
                    Err(route) => *route,
                    Ok(p) => {
                        changed += u64::from(p != env.priority);
                        let key = OUR_MAX_PRIORITY - scale.rank(env.priority);
                        Some((staging.clone(), props.clone().with_priority(key)))
                    }
                },
                &mut hooks,
            )
            .await?;
        (r.read, r.changed) = (read, changed);
        let back = u64::from(self.broker.ready(&staging).await?);
        if !stopped {
            // Sized for the mails this run staged: no doubling of a million-entry table
            // at the end, when memory peaks.
            let mut seen = HashSet::with_capacity(usize::try_from(read).unwrap_or(0));
            let (mut requeued, mut duplicates) = (0, 0);
            let Back { resumed, stopped } = self
                .back(
                    back,
                    &mut |env, props| {
                        if !seen.insert(compact(&env.identity)) {
                            duplicates += 1;
                            return None;
                        }
                        match settle(fate(env), &env.identity, props) {
                            Err(route) => *route,
                            Ok(p) => {
                                requeued += 1;
                                Some((main.clone(), props.clone().with_priority(p)))
                            }
                        }
                    },
                    &mut hooks,
                )
                .await?;
            (r.requeued, r.stopped, r.resumed) = (requeued, stopped, resumed);
            r.duplicates = duplicates;
        } else {
            r.stopped = true;
        }
        r.duplicates += sent;
        r.parked = parked;
        r.left_in_staging = u64::from(self.broker.ready(&staging).await?);
        Ok(r)
    }

    /// Moves up to `limit` mails from the head of the main queue to where `route` says:
    /// the staging queue in batches, the parking queue one by one, or nowhere; every
    /// copy persistent and confirmed before its original is acked. Says how many were
    /// taken and whether `stop` cut it short.
    async fn out(&self, limit: u64, route: &mut Router<'_>, hooks: &mut Hooks<'_>) -> Result<Pass> {
        if limit == 0 {
            return Ok(Pass::default());
        }
        let (main, staging) = (self.topo.main().to_string(), self.topo.staging());
        let parking_queue = self.topo.parking();
        let mut publisher = Publisher::new(&self.broker, WINDOW).await?;
        // Mails to park, held until the chunk ends: their identities are journaled in
        // one transaction before their copies go out.
        let mut held: Vec<Held> = Vec::new();
        let mut batch = Batch::default();
        // The staging priority of the mails in `batch`.
        let mut key = 0u8;
        let mut reader = Reader::open(&self.broker, &main, PREFETCH).await?;
        // A mark at each chunk's end: its originals are acked once its copies are confirmed.
        let mut acks = Acks::default();
        let mut pass = Pass::default();
        while pass.taken < limit {
            let Some(d) = self.next_unless(&mut reader, hooks.stop, &mut pass).await? else {
                break;
            };
            let env = envelope(&d.properties, d.data);
            match route(&env, &d.properties) {
                Some((queue, props)) if queue == parking_queue => {
                    held.push(Held::new(env, props.with_delivery_mode(2)));
                }
                Some((_, props)) => {
                    let k = props.priority().unwrap_or(0);
                    if (k != key && !batch.is_empty()) || !batch.fits(env.body.len()) {
                        // A batch holds one staging priority and at most MAX_BYTES: this
                        // chunk ends with the mail before this one (never this one, which
                        // is in no batch yet).
                        release_parks(&mut publisher, &parking_queue, &mut held, hooks.parked)
                            .await?;
                        stage(&mut publisher, &staging, &mut batch, key, hooks.run).await?;
                        if let Some(tag) = pass.last {
                            acks.mark(publisher.published(), tag, pass.taken);
                        }
                    }
                    key = k;
                    batch.push(&d.properties, &env.body)?;
                }
                None => {}
            }
            pass.took(d.delivery_tag);
            if pass.taken % ACK_EVERY == 0 {
                release_parks(&mut publisher, &parking_queue, &mut held, hooks.parked).await?;
                stage(&mut publisher, &staging, &mut batch, key, hooks.run).await?;
                acks.mark(publisher.published(), d.delivery_tag, pass.taken);
            }
            if pass.taken - acks.acked_taken() >= u64::from(PREFETCH) - ACK_EVERY {
                // Confirms only arrive as fast as copies are published: after a run of
                // dropped duplicates, wait for them rather than for a full prefetch.
                publisher.finish().await?;
            }
            acks.settle(&reader, &self.broker, publisher.confirmed())
                .await?;
            (hooks.tick)();
        }
        release_parks(&mut publisher, &parking_queue, &mut held, hooks.parked).await?;
        stage(&mut publisher, &staging, &mut batch, key, hooks.run).await?;
        self.end_pass(reader, publisher, acks.unacked(pass.last))
            .await?;
        Ok(pass)
    }

    /// Takes up to `limit` messages from the head of the staging queue and sends each
    /// of their mails where `route` says (the main queue, the parking queue, or
    /// nowhere), each copy persistent and confirmed before the staging message is
    /// acked. A batch that cannot be read is routed as one mail (unreadable: parked,
    /// whole).
    async fn back(
        &self,
        limit: u64,
        route: &mut Router<'_>,
        hooks: &mut Hooks<'_>,
    ) -> Result<Back> {
        if limit == 0 {
            return Ok(Back::default());
        }
        let (staging, parking_queue) = (self.topo.staging(), self.topo.parking());
        let mut publisher = Publisher::new(&self.broker, WINDOW).await?;
        let mut held: Vec<Held> = Vec::new();
        let mut reader = Reader::open(&self.broker, &staging, STAGED_PREFETCH).await?;
        // A mark for each staging message: acked once its mails' copies are confirmed.
        let mut acks = Acks::default();
        let mut pass = Pass::default();
        let mut resumed = 0u64;
        while pass.taken < limit {
            let Some(d) = self.next_unless(&mut reader, hooks.stop, &mut pass).await? else {
                break;
            };
            pass.took(d.delivery_tag);
            let earlier = batch::run_of(&d.properties).as_deref() != Some(hooks.run);
            let (mails, unreadable) = match batch::unpack(&d.properties, &d.data) {
                Ok(mails) => (mails, None),
                // Only acaso-mail writes batches: one it cannot read goes on as one
                // message, parked whole as any unreadable mail is (journaled first,
                // never twice), its detail saying why.
                Err(e) => (
                    vec![(d.properties.clone(), d.data.clone())],
                    Some(format!(
                        "a reprioritize batch that could not be read: {e:#}"
                    )),
                ),
            };
            for (props, body) in mails {
                resumed += u64::from(earlier && unreadable.is_none());
                let env = envelope(&props, body);
                match route(&env, &props) {
                    Some((queue, props)) if queue == parking_queue => {
                        let props = match &unreadable {
                            Some(why) => {
                                with_headers(&props, &[(H_DETAIL, text(&detail_header(why)))])
                            }
                            None => props.with_delivery_mode(2),
                        };
                        held.push(Held::new(env, props));
                    }
                    Some((queue, props)) => {
                        let props = props.with_delivery_mode(2);
                        publisher.publish(&queue, &env.body, props).await?;
                    }
                    None => {}
                }
                (hooks.tick)();
            }
            release_parks(&mut publisher, &parking_queue, &mut held, hooks.parked).await?;
            acks.mark(publisher.published(), d.delivery_tag, pass.taken);
            if acks.waiting() >= usize::from(STAGED_PREFETCH) / 2 {
                publisher.finish().await?;
            }
            acks.settle(&reader, &self.broker, publisher.confirmed())
                .await?;
        }
        self.end_pass(reader, publisher, acks.unacked(pass.last))
            .await?;
        Ok(Back {
            resumed,
            stopped: pass.stopped,
        })
    }
}
