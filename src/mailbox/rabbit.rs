//! The Mailbox on RabbitMQ: the queues declared or adopted, messages taken one at a
//! time with basic.get and manual acks, and every move a confirmed copy made before
//! the original is acked (a crash in between leaves a duplicate copy, never a loss).

use anyhow::Result;
use chrono::{DateTime, Utc};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};

use super::broker::Broker;
use super::publisher::Publisher;
use super::topology::{
    H_ATTEMPTS, H_DETAIL, H_PARKED_AT, H_REASON, OUR_HEADERS, QueueInfo, Topology, detail_header,
};
use super::{Envelope, Mailbox, Taken, Ticket, identity};
use crate::config::Config;

/// Unconfirmed publishes allowed in flight: enough to hide the round trip.
const CONFIRM_WINDOW: usize = 1000;

/// The main queue and its family, on one connection.
pub struct Rabbit {
    broker: Broker,
    topo: Topology,
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
        /// Reason code.
        reason: &'static str,
        /// Details.
        detail: String,
    },
    /// Re-publish it with this priority.
    Requeue(u8),
}

/// Decodes what acaso-mail reads from a message's properties.
fn envelope(props: &BasicProperties, body: Vec<u8>) -> Envelope {
    let message_id = props.message_id().as_ref().map(|s| s.as_str().to_string());
    Envelope {
        identity: identity(message_id.as_deref(), &body),
        message_id,
        priority: props.priority().unwrap_or(0),
        timestamp: *props.timestamp(),
        attempts: header_u32(props, H_ATTEMPTS).unwrap_or(0),
        reason: header_str(props, H_REASON),
        detail: header_str(props, H_DETAIL),
        parked_at: header_str(props, H_PARKED_AT),
        body,
    }
}

fn header_u32(props: &BasicProperties, key: &str) -> Option<u32> {
    match props.headers().as_ref()?.inner().get(key)? {
        AMQPValue::ShortShortUInt(n) => Some(u32::from(*n)),
        AMQPValue::ShortUInt(n) => Some(u32::from(*n)),
        AMQPValue::LongUInt(n) => Some(*n),
        AMQPValue::ShortShortInt(n) => u32::try_from(*n).ok(),
        AMQPValue::ShortInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
        _ => None,
    }
}

fn header_str(props: &BasicProperties, key: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// A copy of `props`, persistent, with extra headers.
fn with_headers(props: &BasicProperties, extra: &[(&str, AMQPValue)]) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    for (k, v) in extra {
        headers.insert((*k).into(), v.clone());
    }
    props.clone().with_headers(headers).with_delivery_mode(2)
}

/// A copy of `props` without acaso-mail's headers.
fn without_our_headers(props: &BasicProperties) -> BasicProperties {
    let Some(h) = props.headers().clone() else {
        return props.clone();
    };
    let mut kept = FieldTable::default();
    for (k, v) in h.inner() {
        if !OUR_HEADERS.contains(&k.as_str()) {
            kept.insert(k.clone(), v.clone());
        }
    }
    props.clone().with_headers(kept)
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

impl Rabbit {
    /// Connects and declares (or adopts) the main queue and its retry and parking queues.
    pub async fn open(cfg: &Config) -> Result<Self> {
        let broker = Broker::connect(cfg).await?;
        let topo = Topology::new(&cfg.queue);
        let info = broker.main_queue(topo.main()).await?;
        broker.side_queues(&topo).await?;
        Ok(Rabbit {
            broker,
            topo,
            info,
            takes: None,
            publisher: None,
        })
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

    async fn takes(&mut self) -> Result<&Channel> {
        if self.takes.is_none() {
            self.takes = Some(self.broker.channel().await?);
        }
        self.takes
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no channel"))
    }

    async fn publisher(&mut self) -> Result<&mut Publisher> {
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
    pub async fn browse(&self, which: Which, n: u32) -> Result<Vec<Envelope>> {
        let queue = self.name(which);
        let ch = self.broker.channel().await?;
        let mut out = Vec::new();
        while out.len() < usize::try_from(n).unwrap_or(usize::MAX) {
            let got = self
                .broker
                .call(
                    &format!("reading {queue}"),
                    ch.basic_get(queue.as_str().into(), BasicGetOptions::default()),
                )
                .await?;
            let Some(m) = got else { break };
            out.push(envelope(&m.delivery.properties, m.delivery.data));
        }
        self.broker
            .call(
                "returning browsed messages",
                ch.close(200, "browsed".into()),
            )
            .await?;
        Ok(out)
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

    /// Moves a taken mail to `target` with extra headers: the copy is confirmed before
    /// the original is acked.
    async fn move_to(
        &mut self,
        taken: Taken,
        target: &str,
        headers: &[(&str, AMQPValue)],
    ) -> Result<()> {
        let (acker, props) = taken.ticket.amqp()?;
        let props = with_headers(&props, headers);
        let publisher = self.publisher().await?;
        publisher.publish(target, &taken.mail.body, props).await?;
        publisher.finish().await?;
        self.settle("acking a moved mail", acker.ack(BasicAckOptions::default()))
            .await
    }

    /// Goes through the parking queue in order, asking `choose` what to do with each
    /// mail (numbered from 1); the mails kept return to their places when it ends.
    pub async fn sweep_parking(
        &mut self,
        mut choose: impl FnMut(u32, &Envelope) -> Sweep,
    ) -> Result<()> {
        let parking = self.topo.parking();
        let main = self.topo.main().to_string();
        let ch = self.broker.channel().await?;
        let mut index = 0u32;
        loop {
            let got = self
                .broker
                .call(
                    "reading the parking queue",
                    ch.basic_get(parking.as_str().into(), BasicGetOptions::default()),
                )
                .await?;
            let Some(m) = got else { break };
            index += 1;
            let d = m.delivery;
            let env = envelope(&d.properties, d.data);
            match choose(index, &env) {
                Sweep::Keep => continue,
                Sweep::Replay => {
                    let props = without_our_headers(&d.properties);
                    let publisher = self.publisher().await?;
                    publisher.publish(&main, &env.body, props).await?;
                    publisher.finish().await?;
                }
                Sweep::Purge => {}
            }
            self.settle(
                "removing a mail from the parking queue",
                d.acker.ack(BasicAckOptions::default()),
            )
            .await?;
        }
        self.broker
            .call(
                "returning the unselected parked mails",
                ch.close(200, "done".into()),
            )
            .await
    }

    /// Re-publishes every mail of the main queue in one AMQP transaction: `fate` says
    /// for each whether it is parked or requeued with a new priority; the requeued go
    /// back most urgent first, oldest first within a priority. `tick` is called per mail
    /// re-published; when `stop` turns true before the commit, nothing changes and
    /// `Ok(false)` is returned.
    pub async fn reorder(
        &mut self,
        mut fate: impl FnMut(&Envelope) -> Reorder,
        mut tick: impl FnMut(),
        stop: impl Fn() -> bool,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (main, parking) = (self.topo.main().to_string(), self.topo.parking());
        let ch = self.broker.channel().await?;
        self.broker
            .call("starting a transaction", ch.tx_select())
            .await?;
        let mut taken = Vec::new();
        while let Some(m) = self
            .broker
            .call(
                "reading the queue",
                ch.basic_get(main.as_str().into(), BasicGetOptions::default()),
            )
            .await?
        {
            if stop() {
                return Ok(false);
            }
            taken.push(m.delivery);
        }
        let Some(last_tag) = taken.last().map(|d| d.delivery_tag) else {
            return Ok(true);
        };
        let mut keep = Vec::new();
        for (pos, d) in taken.into_iter().enumerate() {
            let env = envelope(&d.properties, d.data);
            match fate(&env) {
                Reorder::Park { reason, detail } => {
                    let headers = [
                        (H_REASON, text(reason)),
                        (H_DETAIL, text(&detail_header(&detail))),
                        (H_PARKED_AT, text(&now.to_rfc3339())),
                    ];
                    let props = with_headers(&d.properties, &headers);
                    self.tx_publish(&ch, &parking, &env.body, props).await?;
                }
                Reorder::Requeue(p) => {
                    keep.push((p, env.timestamp.unwrap_or(0), pos, env.body, d.properties))
                }
            }
        }
        keep.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        for (p, _, _, body, props) in keep {
            tick();
            let props = props.with_priority(p).with_delivery_mode(2);
            self.tx_publish(&ch, &main, &body, props).await?;
        }
        if stop() {
            // Nothing committed: closing the channel rolls back and returns the originals.
            let _ = self.broker.call("rolling back", ch.tx_rollback()).await;
            return Ok(false);
        }
        let ack_all = ch.basic_ack(last_tag, BasicAckOptions { multiple: true });
        self.broker.call("acking the originals", ack_all).await?;
        self.broker
            .call("committing the re-published queue", ch.tx_commit())
            .await?;
        self.broker.close_channel(&ch).await;
        Ok(true)
    }

    /// Awaits an ack or nack: lapin answers `false` when the channel was already gone,
    /// so the broker never got it and the mail is still (or again) in its queue.
    async fn settle(
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

    async fn tx_publish(
        &self,
        ch: &Channel,
        queue: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<()> {
        let publish = ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            props,
        );
        self.broker
            .call(&format!("publishing to {queue}"), publish)
            .await
            .map(|_| ())
    }

    /// Closes the connection; unacked mails return to their queues.
    pub async fn close(self) {
        if let Some(ch) = &self.takes {
            self.broker.close_channel(ch).await;
        }
        self.broker.close().await;
    }
}

impl Mailbox for Rabbit {
    async fn take(&mut self) -> Result<Option<Taken>> {
        let main = self.topo.main().to_string();
        let ch = self.takes().await?.clone();
        let got = self
            .broker
            .call(
                "taking a mail",
                ch.basic_get(main.as_str().into(), BasicGetOptions::default()),
            )
            .await?;
        Ok(got.map(|m| {
            let d = m.delivery;
            Taken {
                mail: envelope(&d.properties, d.data),
                ticket: Ticket::Amqp {
                    acker: d.acker,
                    props: d.properties,
                },
            }
        }))
    }

    async fn ack(&mut self, taken: Taken) -> Result<()> {
        let (acker, _) = taken.ticket.amqp()?;
        self.settle("acking a mail", acker.ack(BasicAckOptions::default()))
            .await
    }

    async fn put_back(&mut self, taken: Taken) -> Result<()> {
        let (acker, _) = taken.ticket.amqp()?;
        let requeue = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        self.settle("returning a mail to the queue", acker.nack(requeue))
            .await
    }

    async fn park(
        &mut self,
        taken: Taken,
        reason: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let headers = [
            (H_REASON, text(reason)),
            (H_DETAIL, text(&detail_header(detail))),
            (H_PARKED_AT, text(&now.to_rfc3339())),
        ];
        let parking = self.topo.parking();
        self.move_to(taken, &parking, &headers).await
    }

    async fn retry(
        &mut self,
        taken: Taken,
        attempts: u32,
        delay_secs: u64,
        detail: &str,
    ) -> Result<()> {
        let headers = [
            (H_ATTEMPTS, AMQPValue::LongUInt(attempts)),
            (H_DETAIL, text(&detail_header(detail))),
        ];
        let q = self.topo.retry(delay_secs);
        self.move_to(taken, &q, &headers).await
    }
}
