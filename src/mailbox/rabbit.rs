//! The Mailbox on RabbitMQ: the queues declared or adopted, messages taken one at a
//! time with basic.get and manual acks, and every move a confirmed copy made before
//! the original is acked (a crash in between leaves a duplicate copy, never a loss).

use anyhow::Result;
use lapin::options::BasicGetOptions;
use lapin::{BasicProperties, Channel};

use super::broker::Broker;
use super::message::envelope;
use super::publisher::Publisher;
use super::reader::Reader;
use super::topology::{QueueInfo, Topology};

mod take;
use super::Envelope;
use crate::config::Config;
use crate::error::Failure;
use crate::park::ParkReason;

/// Unconfirmed publishes allowed in flight: enough to hide the round trip.
const CONFIRM_WINDOW: usize = 1000;

/// The main queue and its family, on one connection.
pub struct Rabbit {
    pub(super) broker: Broker,
    pub(super) topo: Topology,
    info: QueueInfo,
    takes: Option<Channel>,
    publisher: Option<Publisher>,
}

/// Which queue to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The main queue.
    Main,
    /// The parking queue.
    Parking,
}

/// How deep the queues are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Ready in the main queue.
    pub ready: u32,
    /// Waiting in the retry queues.
    pub retrying: u32,
    /// In the parking queue.
    pub parked: u32,
    /// Messages in the staging queue of an interrupted `reprioritize` (batches of mails).
    pub staging: u32,
}

/// What to do with one parked mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// Leave it parked, in its place.
    Keep,
    /// Put it back in the main queue without our headers.
    Replay,
    /// Delete it for good.
    Purge,
}

/// What to do with one queued mail when the queue is re-ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reorder {
    /// Park it.
    Park {
        /// Why.
        reason: ParkReason,
        /// Details.
        detail: String,
    },
    /// Re-publish it with this priority.
    Requeue(u8),
    /// Drop it: a second copy of a mail already settled (the journal knows it as sent,
    /// or as parked by a run that died before acking the original).
    Drop,
}

/// The error for a main queue that does not exist: exit 2, naming it and what creates it.
fn missing(cfg: &Config, topo: &Topology) -> anyhow::Error {
    Failure::Usage(format!(
        "queue {} does not exist on {}: check --queue / ACASO_MAIL_QUEUE for a typo; only publish creates queues (`acaso-mail publish -n 0` creates them and publishes nothing: a new deploy's set-up)",
        topo.main(),
        cfg.amqp_display
    ))
    .into()
}

/// Parks the message at the head of the queue if lapin could not read it (its reading
/// would end this run, and the next); a screen that fails only warns; the run goes on.
async fn screen_head(cfg: &Config, ready: u32) {
    if ready == 0 {
        return;
    }
    match super::quarantine::screen_queue(cfg, 1).await {
        Ok(0) => {}
        Ok(n) => crate::warn::notice(&format!(
            "parked {n} message(s) at the head of the queue whose AMQP headers cannot be read (reason malformed)"
        )),
        Err(e) => crate::warn::notice(&format!("warning: {e:#}")),
    }
}

impl Rabbit {
    /// Connects and declares (or adopts) the main queue and its retry and parking
    /// queues: `publish` only, the one command that may create a queue (a producer's
    /// first mail must not be dropped for want of one).
    pub async fn create(cfg: &Config) -> Result<Self> {
        let broker = Broker::connect(cfg).await?;
        let topo = Topology::new(&cfg.queue);
        let info = broker.main_queue(topo.main()).await?;
        broker.side_queues(&topo).await?;
        Ok(Rabbit::with(broker, topo, info))
    }

    /// Connects to an existing main queue, adopts it as it is and declares its retry,
    /// parking and staging queues (the drains, `stats`, `reprioritize`). A main queue
    /// that does not exist is a usage error (exit 2), found passively: most likely a
    /// mistyped `--queue`, which must fail every scheduled run rather than drain an
    /// empty queue of its own making.
    pub async fn open(cfg: &Config) -> Result<Self> {
        let broker = Broker::connect(cfg).await?;
        let topo = Topology::new(&cfg.queue);
        if broker.existing(topo.main()).await?.is_none() {
            broker.close().await;
            return Err(missing(cfg, &topo));
        }
        let info = broker.main_queue(topo.main()).await?;
        broker.side_queues(&topo).await?;
        screen_head(cfg, info.ready).await;
        Ok(Rabbit::with(broker, topo, info))
    }

    fn with(broker: Broker, topo: Topology, info: QueueInfo) -> Self {
        Rabbit {
            broker,
            topo,
            info,
            takes: None,
            publisher: None,
        }
    }

    /// Connects to an existing main queue without declaring anything (for commands that
    /// only read or tidy: `peek`, `dead-letters`). A queue that does not exist is a
    /// usage error (exit 2), as in [`Rabbit::open`]. Its durability and
    /// priority levels are not asked (`durable` is `None`, `max_priority` 0).
    pub async fn open_existing(cfg: &Config) -> Result<Self> {
        let broker = Broker::connect(cfg).await?;
        let topo = Topology::new(&cfg.queue);
        let Some(ready) = broker.existing(topo.main()).await? else {
            broker.close().await;
            return Err(missing(cfg, &topo));
        };
        screen_head(cfg, ready).await;
        let info = QueueInfo {
            name: topo.main().to_string(),
            ready,
            durable: None,
            max_priority: 0,
        };
        Ok(Rabbit::with(broker, topo, info))
    }

    /// Whether a queue of the family exists (asked passively).
    pub async fn exists(&self, which: Which) -> Result<bool> {
        Ok(self.broker.existing(&self.name(which)).await?.is_some())
    }

    /// How many mails are parked (0 when the parking queue was never made).
    pub async fn parked(&self) -> Result<u32> {
        self.broker.ready_or_none(&self.topo.parking()).await
    }

    /// The main queue as it was found when opened.
    pub fn info(&self) -> &QueueInfo {
        &self.info
    }

    /// The queues' names.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    fn name(&self, which: Which) -> String {
        match which {
            Which::Main => self.topo.main().to_string(),
            Which::Parking => self.topo.parking(),
        }
    }

    pub(super) async fn publisher(&mut self) -> Result<&mut Publisher> {
        if self.publisher.is_none() {
            self.publisher = Some(Publisher::new(&self.broker, CONFIRM_WINDOW).await?);
        }
        self.publisher
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("no publisher"))
    }

    /// Looks at up to `n` messages at the head of a queue, in the order a consumer
    /// would get them, then closes the channel without acking: RabbitMQ puts each
    /// message back in its original position, so nothing is consumed or reordered.
    /// They stream in through one consumer whose prefetch is what is wanted, so the
    /// cost is that of `n` messages whatever the depth of the queue.
    pub async fn browse(&self, which: Which, n: u32) -> Result<Vec<Envelope>> {
        let queue = self.name(which);
        let want = n.min(self.broker.ready(&queue).await?);
        let Ok(prefetch) = u16::try_from(want) else {
            return self.browse_one_by_one(&queue, want).await;
        };
        if prefetch == 0 {
            return Ok(Vec::new());
        }
        let mut reader = Reader::open(&self.broker, &queue, prefetch).await?;
        let mut out = Vec::with_capacity(usize::from(prefetch));
        while out.len() < usize::from(prefetch) {
            let Some(d) = reader.next(&self.broker).await? else {
                break;
            };
            out.push(envelope(&d.properties, d.data));
        }
        reader.close(&self.broker).await?;
        Ok(out)
    }

    /// [`Rabbit::browse`] beyond what a prefetch can say: one basic.get per message.
    async fn browse_one_by_one(&self, queue: &str, n: u32) -> Result<Vec<Envelope>> {
        let mut out = Vec::new();
        self.read_held(queue, n, |e| out.push(e)).await?;
        Ok(out)
    }

    /// Hands `each` up to `n` messages from the head of `queue`, one basic.get each,
    /// all held unacked on one channel, then handed back in place when it closes:
    /// nothing is consumed or reordered.
    async fn read_held(&self, queue: &str, n: u32, mut each: impl FnMut(Envelope)) -> Result<()> {
        let ch = self.broker.channel().await?;
        for _ in 0..n {
            let got = self.get(&ch, queue, &format!("reading {queue}")).await?;
            let Some(d) = got else { break };
            each(envelope(&d.properties, d.data));
        }
        self.broker
            .call(
                &format!("returning the mails read from {queue}"),
                ch.close(200, "read".into()),
            )
            .await
    }

    /// One message from `queue` on `ch`, held unacked, if the queue has one.
    pub(super) async fn get(
        &self,
        ch: &Channel,
        queue: &str,
        what: &str,
    ) -> Result<Option<lapin::message::Delivery>> {
        let got = ch.basic_get(queue.into(), BasicGetOptions::default());
        Ok(self.broker.call(what, got).await?.map(|m| m.delivery))
    }

    /// Ready messages in the main queue now.
    pub async fn ready(&self) -> Result<u32> {
        self.broker.ready(self.topo.main()).await
    }

    /// How deep the main, retry and parking queues are now.
    pub async fn depth(&self) -> Result<Depth> {
        let mut retrying = 0u32;
        for (_, q) in self.topo.retries() {
            retrying = retrying.saturating_add(self.broker.ready(&q).await?);
        }
        Ok(Depth {
            ready: self.ready().await?,
            retrying,
            parked: self.broker.ready(&self.topo.parking()).await?,
            staging: self.broker.ready(&self.topo.staging()).await?,
        })
    }

    /// Publishes a new persistent mail to the main queue: what the guarantees need (an
    /// identity, the publish time for "oldest first") and nothing more, since the
    /// broker stores every property byte. Confirmed by [`Rabbit::confirm_all`].
    pub async fn publish_new(
        &mut self,
        body: &[u8],
        message_id: String,
        priority: u8,
        timestamp: u64,
    ) -> Result<()> {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(message_id.into())
            .with_priority(priority)
            .with_timestamp(timestamp);
        let main = self.topo.main().to_string();
        self.publisher().await?.publish(&main, body, props).await
    }

    /// Waits for the broker to confirm everything published; returns the total.
    pub async fn confirm_all(&mut self) -> Result<u64> {
        self.publisher().await?.finish().await
    }

    /// Published and confirmed so far, and published but not yet confirmed.
    pub fn publish_counts(&self) -> (u64, usize) {
        self.publisher
            .as_ref()
            .map_or((0, 0), |p| (p.confirmed(), p.unconfirmed()))
    }

    /// Awaits an ack or nack: lapin answers `false` when the channel was already gone,
    /// so the broker never got it and the mail is still (or again) in its queue.
    pub(super) async fn settle(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = lapin::Result<bool>>,
    ) -> Result<()> {
        if self.broker.call(what, fut).await? {
            Ok(())
        } else {
            Err(super::broker::lost(
                what,
                "the channel closed before the broker got it",
            ))
        }
    }

    /// Closes the connection; unacked mails return to their queues.
    pub async fn close(self) {
        if let Some(ch) = &self.takes {
            self.broker.close_channel(ch).await;
        }
        self.broker.close().await;
    }
}
