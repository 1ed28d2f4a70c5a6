//! Re-ordering the main queue with today's priorities, in bounded chunks, through a
//! staging queue (`<main>.reprioritize`), with no transaction and nothing lost:
//!
//! 1. **Out**: every mail ready in the main queue when the run starts is copied to the
//!    staging queue (or parked), and its original acked once the copy is confirmed.
//!    In staging a mail's priority is `9 - rank(old priority)`, so that on the way back
//!    the mails of one new priority come oldest first (a lower old priority for the same
//!    day means published earlier), then in their original order.
//! 2. **Back**: every staged mail, this run's and any an interrupted run left, is
//!    copied to the main queue with its new priority, and acked once confirmed. A mail
//!    whose identity already went back in this run is a duplicate left by a crash: it
//!    is dropped (acked without a copy).
//!
//! Never more than `PREFETCH` mails are unacked, nor `WINDOW` copies unconfirmed; the
//! only memory that grows is one 8-byte hash per mail sent back (deduplication).
//! A mail parked on the way (expired, unreadable) is journaled before its copy goes out
//! (a chunk's parked copies wait for the chunk's end: one transaction for them all); a
//! crash before its original's ack leaves the original, which the next run sends on
//! to a drain instead of parking it again (the drain drops it if a copy is parked).
//! A crash anywhere leaves every mail in the main queue, the staging queue or both
//! (copy confirmed, original not yet acked); the next run finishes the job and drops
//! the second copy; drains in between skip a repeat through the journal.

use std::collections::{BTreeMap, HashSet, VecDeque};

use anyhow::Result;
use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use sha2::{Digest, Sha256};

use super::Envelope;
use super::message::{envelope, parking_headers, with_headers};
use super::publisher::Publisher;
use super::rabbit::{Rabbit, Reorder};
use super::reader::Reader;
use crate::urgency::OUR_MAX_PRIORITY;

/// Mails held unacked at once.
const PREFETCH: u16 = 2000;
/// Copies published and not yet confirmed.
const WINDOW: usize = 1000;
/// Originals are acked (all at once, up to the latest confirmed) every this many.
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
    pub parked: BTreeMap<&'static str, u64>,
    /// Second copies dropped (same identity as a mail already put back).
    pub duplicates: u64,
    /// Whether `stop` ended the run before the end (mails may wait in staging).
    pub stopped: bool,
    /// Mails left in the staging queue.
    pub left_in_staging: u64,
}

/// Where one mail goes: a queue and the copy's properties, or nowhere (dropped).
type Route = Option<(String, BasicProperties)>;

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
        mut fate: impl FnMut(&Envelope) -> Reorder,
        mut parked_copies: impl FnMut(&[String]) -> Result<()>,
        mut tick: impl FnMut(),
        stop: impl Fn() -> bool,
        now: DateTime<Utc>,
    ) -> Result<Reordered> {
        let main = self.topo.main().to_string();
        let (staging, parking) = (self.topo.staging(), self.topo.parking());
        let scale = self.info().scale();
        let mut r = Reordered {
            resumed: u64::from(self.broker.ready(&staging).await?),
            ..Reordered::default()
        };
        let out = u64::from(self.broker.ready(&main).await?);
        let park = |reason: &'static str, detail: &str, props: &BasicProperties| {
            let props = with_headers(props, &parking_headers(reason, detail, now));
            Some((parking.clone(), props))
        };
        let mut parked = BTreeMap::<&'static str, u64>::new();
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
        let (read, stopped) = self
            .pass(
                &main,
                out,
                |env, props| match settle(fate(env), &env.identity, props) {
                    Err(route) => *route,
                    Ok(p) => {
                        changed += u64::from(p != env.priority);
                        let key = OUR_MAX_PRIORITY - scale.rank(env.priority);
                        Some((staging.clone(), props.clone().with_priority(key)))
                    }
                },
                &mut parked_copies,
                &mut tick,
                &stop,
            )
            .await?;
        (r.read, r.changed) = (read, changed);
        let back = u64::from(self.broker.ready(&staging).await?);
        if !stopped {
            let mut seen = HashSet::with_capacity(usize::try_from(back).unwrap_or(0));
            let (mut requeued, mut duplicates) = (0, 0);
            let (_, stopped) = self
                .pass(
                    &staging,
                    back,
                    |env, props| {
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
                    &mut parked_copies,
                    &mut tick,
                    &stop,
                )
                .await?;
            (r.requeued, r.stopped) = (requeued, stopped);
            r.duplicates = duplicates;
        } else {
            r.stopped = true;
        }
        r.duplicates += sent;
        r.parked = parked;
        r.left_in_staging = u64::from(self.broker.ready(&staging).await?);
        Ok(r)
    }

    /// Moves up to `limit` mails from the head of `from` to where `route` says, each
    /// copy persistent and confirmed before its original is acked. Returns how many
    /// were taken and whether `stop` cut it short.
    async fn pass(
        &self,
        from: &str,
        limit: u64,
        mut route: impl FnMut(&Envelope, &BasicProperties) -> Route,
        parked: &mut impl FnMut(&[String]) -> Result<()>,
        tick: &mut impl FnMut(),
        stop: &impl Fn() -> bool,
    ) -> Result<(u64, bool)> {
        if limit == 0 {
            return Ok((0, false));
        }
        let mut publisher = Publisher::new(&self.broker, WINDOW).await?;
        let parking_queue = self.topo.parking();
        // Mails to park, held until the chunk ends: their identities are journaled in
        // one transaction before their copies go out.
        let mut held: Vec<(String, Vec<u8>, BasicProperties)> = Vec::new();
        let mut reader = Reader::open(&self.broker, from, PREFETCH).await?;
        // (copies published when it was taken, its delivery tag, mails taken), every
        // ACK_EVERY mails.
        let mut marks: VecDeque<(u64, u64, u64)> = VecDeque::new();
        let (mut taken, mut acked, mut last, mut stopped) = (0u64, 0u64, None, false);
        while taken < limit {
            if stop() {
                stopped = true;
                break;
            }
            let Some(d) = reader.next(&self.broker).await? else {
                break;
            };
            taken += 1;
            last = Some(d.delivery_tag);
            let env = envelope(&d.properties, d.data);
            if let Some((queue, props)) = route(&env, &d.properties) {
                let props = props.with_delivery_mode(2);
                if queue == parking_queue {
                    held.push((env.identity, env.body, props));
                } else {
                    publisher.publish(&queue, &env.body, props).await?;
                }
            }
            if taken % ACK_EVERY == 0 {
                release_parks(&mut publisher, &parking_queue, &mut held, parked).await?;
                marks.push_back((publisher.published(), d.delivery_tag, taken));
            }
            if taken - acked >= u64::from(PREFETCH) - ACK_EVERY {
                // Confirms only arrive as fast as copies are published: after a run of
                // dropped duplicates, wait for them rather than for a full prefetch.
                publisher.finish().await?;
            }
            let mut through = None;
            while marks
                .front()
                .is_some_and(|(n, _, _)| *n <= publisher.confirmed())
            {
                through = marks.pop_front().map(|(_, tag, upto)| (tag, upto));
            }
            if let Some((tag, upto)) = through {
                reader.ack_through(&self.broker, tag).await?;
                acked = upto;
            }
            tick();
        }
        release_parks(&mut publisher, &parking_queue, &mut held, parked).await?;
        publisher.finish().await?;
        if let Some(tag) = last {
            reader.ack_through(&self.broker, tag).await?;
        }
        reader.close(&self.broker).await?;
        publisher.close(&self.broker).await;
        Ok((taken, stopped))
    }
}

/// Publishes the `held` parked copies to `queue`, their identities journaled first
/// (`parked`).
async fn release_parks(
    publisher: &mut Publisher,
    queue: &str,
    held: &mut Vec<(String, Vec<u8>, BasicProperties)>,
    parked: &mut impl FnMut(&[String]) -> Result<()>,
) -> Result<()> {
    if held.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = held.iter().map(|(id, _, _)| id.clone()).collect();
    parked(&ids)?;
    for (_, body, props) in held.drain(..) {
        publisher.publish(queue, &body, props).await?;
    }
    Ok(())
}
