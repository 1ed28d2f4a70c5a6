//! Everything RabbitMQ: connecting, declaring (or adopting) queues, pipelined publishing
//! with publisher confirms, and the retry and parking queues named after the main one.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use lapin::options::{
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, PublisherConfirm,
};

use crate::config::Config;
use crate::error::Failure;
use crate::urgency::{OUR_MAX_PRIORITY, PriorityScale};

/// Delays before a failed send is tried again, one retry queue each: attempt 1 waits
/// the first, attempt 2 the second, and so on; the last repeats.
pub const RETRY_DELAYS_SECS: [u64; 4] = [60, 300, 1800, 3600];

/// Header: how many sends of this mail failed transiently so far.
pub const H_ATTEMPTS: &str = "x-acaso-attempts";
/// Header: why a mail was parked.
pub const H_REASON: &str = "x-acaso-reason";
/// Header: the details of why it was parked or retried.
pub const H_DETAIL: &str = "x-acaso-detail";
/// Header: when it was parked (RFC 3339).
pub const H_PARKED_AT: &str = "x-acaso-parked-at";

/// A connection to RabbitMQ.
pub struct Broker {
    conn: Connection,
    timeout: Duration,
}

/// What acaso-mail knows about the main queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// Its name.
    pub name: String,
    /// Messages ready for delivery.
    pub ready: u32,
    /// Whether it survives a broker restart (`None` when it could not be told).
    pub durable: Option<bool>,
    /// Its `x-max-priority` (0 when it is not a priority queue).
    pub max_priority: u8,
}

impl QueueInfo {
    /// How urgency maps to priority on this queue.
    pub fn scale(&self) -> PriorityScale {
        PriorityScale::new(self.max_priority)
    }
}

fn timeout_err(what: &str) -> anyhow::Error {
    Failure::Unavailable(format!("RabbitMQ did not answer in time ({what})")).into()
}

impl Broker {
    /// Connects, failing with an "unavailable" error after the configured timeout.
    pub async fn connect(cfg: &Config) -> Result<Self> {
        let props = ConnectionProperties::default()
            .with_connection_name(format!("acaso-mail {}", std::process::id()).into());
        // Security hook: amqps:// with the CA of --amqp-ca-file (crate::wire).
        let conn = tokio::time::timeout(cfg.timeout, crate::wire::connect_amqp(cfg, props))
            .await
            .map_err(|_| {
                Failure::Unavailable(format!(
                    "RabbitMQ at {} did not answer within {}s; is it running? (rabbitmq-server -detached)",
                    cfg.amqp_display,
                    cfg.timeout.as_secs()
                ))
            })?
            .map_err(|e| {
                // Security hook: an untrusted certificate says so, and which option fixes it.
                Failure::Unavailable(crate::wire::explain_amqp_error(cfg, &e).unwrap_or_else(|| format!(
                    "cannot connect to RabbitMQ at {}: {e}; is it running? (rabbitmq-server -detached)",
                    cfg.amqp_display
                )))
            })?;
        Ok(Broker {
            conn,
            timeout: cfg.timeout,
        })
    }

    /// A new channel.
    pub async fn channel(&self) -> Result<Channel> {
        tokio::time::timeout(self.timeout, self.conn.create_channel())
            .await
            .map_err(|_| timeout_err("opening a channel"))?
            .context("opening an AMQP channel")
    }

    /// A channel in confirm mode.
    pub async fn confirm_channel(&self) -> Result<Channel> {
        let ch = self.channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enabling publisher confirms")?;
        Ok(ch)
    }

    /// Declares the main queue (durable, `x-max-priority` 9) or, when it already exists
    /// with other arguments (the legacy `queue`), adopts it as it is and finds out its
    /// durability and priority levels from the broker's refusal.
    pub async fn main_queue(&self, name: &str) -> Result<QueueInfo> {
        let mut args = FieldTable::default();
        args.insert(
            "x-max-priority".into(),
            AMQPValue::ShortShortUInt(OUR_MAX_PRIORITY),
        );
        let mut durable = Some(true);
        let mut max_priority = OUR_MAX_PRIORITY;
        let mut ok = self.try_declare(name, true, &args).await?;
        if let Err(refusal) = &ok
            && refusal.contains("'durable'")
        {
            durable = Some(false);
            ok = self.try_declare(name, false, &args).await?;
        }
        if let Err(refusal) = &ok {
            match parse_current_max_priority(refusal) {
                Some(p) => max_priority = p,
                // Some other argument differs; we cannot tell the levels.
                None => max_priority = 0,
            }
        }
        let ready = self.ready(name).await?;
        Ok(QueueInfo {
            name: name.to_string(),
            ready,
            durable,
            max_priority,
        })
    }

    /// Declares on a throwaway channel; `Ok(Err(text))` is the broker's refusal
    /// (PRECONDITION_FAILED closes the channel, so it must not be one we keep).
    async fn try_declare(
        &self,
        name: &str,
        durable: bool,
        args: &FieldTable,
    ) -> Result<Result<(), String>> {
        let ch = self.channel().await?;
        let opts = QueueDeclareOptions {
            durable,
            ..QueueDeclareOptions::default()
        };
        let res = tokio::time::timeout(
            self.timeout,
            ch.queue_declare(name.into(), opts, args.clone()),
        )
        .await
        .map_err(|_| timeout_err("declaring a queue"))?;
        match res {
            Ok(_) => {
                self.close_channel(&ch).await;
                Ok(Ok(()))
            }
            Err(e) => {
                let text = e.to_string();
                if text.contains("PRECONDITION_FAILED") {
                    Ok(Err(text))
                } else {
                    Err(anyhow!(e).context(format!("declaring queue {name}")))
                }
            }
        }
    }

    /// The number of ready messages in an existing queue.
    pub async fn ready(&self, name: &str) -> Result<u32> {
        let ch = self.channel().await?;
        let opts = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let q = tokio::time::timeout(
            self.timeout,
            ch.queue_declare(name.into(), opts, FieldTable::default()),
        )
        .await
        .map_err(|_| timeout_err("counting messages"))?
        .with_context(|| format!("queue {name} does not exist"))?;
        self.close_channel(&ch).await;
        Ok(q.message_count())
    }

    /// Declares the parking queue and the retry queues of `main` (durable, plain).
    /// Each retry queue holds mails for a fixed delay, then dead-letters them back to
    /// `main` through the default exchange.
    pub async fn aux_queues(&self, main: &str, dead: &str) -> Result<()> {
        let ch = self.channel().await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        ch.queue_declare(dead.into(), durable, FieldTable::default())
            .await
            .with_context(|| format!("declaring parking queue {dead}"))?;
        for delay in RETRY_DELAYS_SECS {
            let mut args = FieldTable::default();
            let ttl_ms = u32::try_from(delay * 1000).unwrap_or(u32::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongUInt(ttl_ms));
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString("".into()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(main.into()),
            );
            let q = retry_queue_name(main, delay);
            ch.queue_declare(q.as_str().into(), durable, args)
                .await
                .with_context(|| format!("declaring retry queue {q}"))?;
        }
        self.close_channel(&ch).await;
        Ok(())
    }

    /// Purges a queue, returning how many messages it dropped.
    pub async fn purge(&self, name: &str) -> Result<u32> {
        let ch = self.channel().await?;
        let n = ch
            .queue_purge(name.into(), QueuePurgeOptions::default())
            .await
            .with_context(|| format!("purging {name}"))?;
        Ok(n)
    }

    /// Closes the connection politely, without waiting more than the timeout.
    pub async fn close(self) {
        let _ = tokio::time::timeout(self.timeout, self.conn.close(200, "bye".into())).await;
    }

    /// Awaits a broker operation for at most the configured timeout: nothing hangs forever.
    pub async fn within<T, E: std::fmt::Display>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = std::result::Result<T, E>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                Err(Failure::Unavailable(format!("RabbitMQ failed while {what}: {e}")).into())
            }
            Err(_) => Err(timeout_err(what)),
        }
    }

    /// Closes a channel, bounded by the timeout, ignoring errors (used once its work is
    /// settled; unacked messages go back to the queue either way).
    pub async fn close_channel(&self, ch: &Channel) {
        let _ = tokio::time::timeout(self.timeout, ch.close(200, "done".into())).await;
    }
}

/// The retry queue for a given delay.
pub fn retry_queue_name(main: &str, delay_secs: u64) -> String {
    format!("{main}.retry.{delay_secs}s")
}

/// Reads `x-max-priority` out of RabbitMQ's PRECONDITION_FAILED text, e.g.
/// "... received the value '9' of type 'short_short_uint' but current is the value '255'
/// of type 'signedint'", or "... but current is none".
fn parse_current_max_priority(text: &str) -> Option<u8> {
    if !text.contains("'x-max-priority'") {
        return None;
    }
    let (_, current) = text.split_once("but current is")?;
    let current = current.trim_start();
    if current.starts_with("none") {
        return Some(0);
    }
    let digits: String = current
        .trim_start_matches("the value ")
        .trim_start_matches('\'')
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse::<u32>()
        .ok()
        .map(|p| u8::try_from(p).unwrap_or(u8::MAX))
}

/// Sets QoS so a consumer holds at most `n` unacked messages.
pub async fn set_prefetch(ch: &Channel, n: u16) -> Result<()> {
    ch.basic_qos(n, BasicQosOptions::default())
        .await
        .context("setting prefetch")
}

/// A publisher that pipelines: it keeps up to `window` messages unconfirmed, and only
/// reports success once the broker has confirmed every one of them.
pub struct Publisher {
    channel: Channel,
    window: usize,
    pending: VecDeque<PublisherConfirm>,
    /// Messages the broker has confirmed so far.
    pub confirmed: u64,
}

impl Publisher {
    /// A publisher on a fresh confirm-mode channel.
    pub async fn new(broker: &Broker, window: usize) -> Result<Self> {
        Ok(Publisher {
            channel: broker.confirm_channel().await?,
            window: window.max(1),
            pending: VecDeque::new(),
            confirmed: 0,
        })
    }

    /// Publishes one message to `queue` through the default exchange (mandatory, so an
    /// unroutable message is an error rather than silently dropped).
    pub async fn publish(
        &mut self,
        queue: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<()> {
        if self.pending.len() >= self.window {
            self.confirm_one().await?;
        }
        let confirm = self
            .channel
            .basic_publish(
                ShortString::from(""),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                props,
            )
            .await
            .map_err(|e| Failure::Unavailable(format!("publishing to {queue}: {e}")))?;
        self.pending.push_back(confirm);
        Ok(())
    }

    async fn confirm_one(&mut self) -> Result<()> {
        let Some(c) = self.pending.pop_front() else {
            return Ok(());
        };
        match c.await {
            Ok(Confirmation::Ack(None)) => {
                self.confirmed += 1;
                Ok(())
            }
            Ok(Confirmation::Ack(Some(_))) => Err(anyhow!(
                "the broker returned a message as unroutable (queue deleted?)"
            )),
            Ok(Confirmation::Nack(_)) => Err(anyhow!("the broker refused (nacked) a message")),
            Ok(Confirmation::NotRequested) => Err(anyhow!("publisher confirms are not enabled")),
            Err(e) => {
                Err(Failure::Unavailable(format!("waiting for the broker's confirm: {e}")).into())
            }
        }
    }

    /// Waits for every outstanding confirm; returns the number confirmed in all.
    pub async fn finish(&mut self) -> Result<u64> {
        while !self.pending.is_empty() {
            self.confirm_one().await?;
        }
        Ok(self.confirmed)
    }

    /// Messages published but not yet confirmed.
    pub fn unconfirmed(&self) -> usize {
        self.pending.len()
    }
}

/// Properties for a new persistent message: what the guarantees need (an identity, the
/// publish time for "oldest first") and nothing more, since every property byte is
/// stored by the broker; the legacy producer sets no content type either.
pub fn new_properties(message_id: String, priority: u8, timestamp: u64) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(message_id.into())
        .with_priority(priority)
        .with_timestamp(timestamp)
}

/// A copy of `props` with extra headers, made persistent: for moving a message to the
/// parking or a retry queue with its body and properties intact.
pub fn with_headers(props: &BasicProperties, extra: &[(&str, AMQPValue)]) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    for (k, v) in extra {
        headers.insert((*k).into(), v.clone());
    }
    props.clone().with_headers(headers).with_delivery_mode(2)
}

/// Reads an integer header.
pub fn header_u32(props: &BasicProperties, key: &str) -> Option<u32> {
    let headers = props.headers().as_ref()?;
    let v = headers.inner().get(key)?;
    match v {
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

/// Reads a string header.
pub fn header_str(props: &BasicProperties, key: &str) -> Option<String> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_max_priority_from_the_refusal() {
        let t = "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue 'queue' in vhost '/': received the value '9' of type 'short_short_uint' but current is the value '255' of type 'signedint'";
        assert_eq!(parse_current_max_priority(t), Some(255));
        let t = "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue 'q' in vhost '/': received the value '9' of type 'short_short_uint' but current is none";
        assert_eq!(parse_current_max_priority(t), Some(0));
        // RabbitMQ 3.10's wording.
        let t = "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue 'q' in vhost '/': received '9' but current is '255'";
        assert_eq!(parse_current_max_priority(t), Some(255));
        assert_eq!(
            parse_current_max_priority("PRECONDITION_FAILED - inequivalent arg 'exclusive'"),
            None
        );
    }
}

/// A message looked at without being consumed.
#[derive(Debug, Clone)]
pub struct Browsed {
    /// Its properties.
    pub props: BasicProperties,
    /// Its body.
    pub body: Vec<u8>,
}

impl Broker {
    /// Looks at up to `n` messages at the head of `queue`, in the order a consumer
    /// would get them, then closes the channel without acking: RabbitMQ puts each
    /// message back in its original position, so nothing is consumed or reordered.
    pub async fn browse(&self, queue: &str, n: u32) -> Result<Vec<Browsed>> {
        let ch = self.channel().await?;
        let mut out = Vec::new();
        while out.len() < usize::try_from(n).unwrap_or(usize::MAX) {
            let got = tokio::time::timeout(
                self.timeout,
                ch.basic_get(queue.into(), lapin::options::BasicGetOptions::default()),
            )
            .await
            .map_err(|_| timeout_err("reading the queue"))?
            .with_context(|| format!("reading {queue}"))?;
            let Some(m) = got else { break };
            out.push(Browsed {
                props: m.delivery.properties,
                body: m.delivery.data,
            });
        }
        ch.close(200, "browsed".into())
            .await
            .context("returning browsed messages")?;
        Ok(out)
    }
}
