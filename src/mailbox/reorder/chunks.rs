//! The chunk machinery both passes of a re-ordering share: a pass's counters, the marks
//! that ack originals once their copies are confirmed, parked copies held to a chunk's
//! end, and staging batches published.

use std::collections::VecDeque;

use anyhow::Result;
use lapin::BasicProperties;

use super::super::Envelope;
use super::super::batch::Batch;
use super::super::broker::Broker;
use super::super::publisher::Publisher;
use super::super::rabbit::Rabbit;
use super::super::reader::Reader;

/// What both passes share: journaling parked copies, progress, the stop check, and
/// the name of this run's batches.
pub(super) struct Hooks<'a> {
    pub parked: &'a mut dyn FnMut(&[String]) -> Result<()>,
    pub tick: &'a mut dyn FnMut(),
    pub stop: &'a dyn Fn() -> bool,
    pub run: &'a str,
}

/// What a pass has taken so far.
#[derive(Debug, Default)]
pub(super) struct Pass {
    /// Messages taken.
    pub taken: u64,
    /// The delivery tag of the last one.
    pub last: Option<u64>,
    /// Whether `stop` cut the pass short.
    pub stopped: bool,
}

impl Pass {
    /// One more message taken, with this delivery tag.
    pub fn took(&mut self, tag: u64) {
        self.taken += 1;
        self.last = Some(tag);
    }
}

/// What the way back did.
#[derive(Debug, Default)]
pub(super) struct Back {
    /// Mails that came from staging messages of an earlier run.
    pub resumed: u64,
    /// Whether `stop` cut it short.
    pub stopped: bool,
}

/// A chunk's end: once `published` copies are confirmed, the originals up to `tag` can
/// be acked; `taken` messages had been taken by then.
#[derive(Debug, Clone, Copy)]
struct Mark {
    published: u64,
    tag: u64,
    taken: u64,
}

/// The originals waiting for their copies' confirms, acked in order.
#[derive(Debug, Default)]
pub(super) struct Acks {
    marks: VecDeque<Mark>,
    /// The last mark acked: acking its tag again is a channel error.
    acked: Option<Mark>,
}

impl Acks {
    /// A chunk ends: its originals up to `tag` wait for `published` copies.
    pub fn mark(&mut self, published: u64, tag: u64, taken: u64) {
        self.marks.push_back(Mark {
            published,
            tag,
            taken,
        });
    }

    /// Marks not yet acked.
    pub fn waiting(&self) -> usize {
        self.marks.len()
    }

    /// Messages taken by the last ack.
    pub fn acked_taken(&self) -> u64 {
        self.acked.map_or(0, |m| m.taken)
    }

    /// Acks the originals through the last mark whose copies are all `confirmed`.
    pub async fn settle(&mut self, reader: &Reader, broker: &Broker, confirmed: u64) -> Result<()> {
        let mut through = None;
        while self.marks.front().is_some_and(|m| m.published <= confirmed) {
            through = self.marks.pop_front();
        }
        if let Some(m) = through {
            reader.ack_through(broker, m.tag).await?;
            self.acked = Some(m);
        }
        Ok(())
    }

    /// The last tag taken, unless it is acked already.
    pub fn unacked(&self, last: Option<u64>) -> Option<u64> {
        last.filter(|t| Some(*t) != self.acked.map(|m| m.tag))
    }
}

/// A parked copy waiting for its chunk's end.
pub(super) struct Held {
    identity: String,
    body: Vec<u8>,
    props: BasicProperties,
}

impl Held {
    /// The copy of `env` to park, with these properties.
    pub fn new(env: Envelope, props: BasicProperties) -> Held {
        Held {
            identity: env.identity,
            body: env.body,
            props,
        }
    }
}

impl Rabbit {
    /// The next message of a pass, held unacked; `None` at the end of the queue, or
    /// when `stop` says to stop (then the pass is marked stopped).
    pub(super) async fn next_unless(
        &self,
        reader: &mut Reader,
        stop: &dyn Fn() -> bool,
        pass: &mut Pass,
    ) -> Result<Option<lapin::message::Delivery>> {
        if stop() {
            pass.stopped = true;
            return Ok(None);
        }
        reader.next(&self.broker).await
    }

    /// Ends a pass: every copy confirmed, then the messages up to `unacked` (the last
    /// one taken, unless already acked) acked, and both channels closed.
    pub(super) async fn end_pass(
        &self,
        reader: Reader,
        mut publisher: Publisher,
        unacked: Option<u64>,
    ) -> Result<()> {
        publisher.finish().await?;
        if let Some(tag) = unacked {
            reader.ack_through(&self.broker, tag).await?;
        }
        reader.close(&self.broker).await?;
        publisher.close(&self.broker).await;
        Ok(())
    }
}

/// Publishes the mails gathered in `batch` to the staging queue as one message with
/// priority `key`, if there are any.
pub(super) async fn stage(
    publisher: &mut Publisher,
    staging: &str,
    batch: &mut Batch,
    key: u8,
    run: &str,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let (body, headers) = batch.take(run);
    let props = BasicProperties::default()
        .with_priority(key)
        .with_delivery_mode(2)
        .with_headers(headers);
    publisher.publish(staging, &body, props).await
}

/// Publishes the `held` parked copies to `queue`, their identities journaled first
/// (`parked`).
pub(super) async fn release_parks(
    publisher: &mut Publisher,
    queue: &str,
    held: &mut Vec<Held>,
    parked: &mut dyn FnMut(&[String]) -> Result<()>,
) -> Result<()> {
    if held.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = held.iter().map(|h| h.identity.clone()).collect();
    parked(&ids)?;
    for h in held.drain(..) {
        publisher.publish(queue, &h.body, h.props).await?;
    }
    Ok(())
}
