//! Reading a queue as a stream: one consumer with a bounded prefetch, so the broker
//! pushes the head of the queue (in priority order) without a round trip per message,
//! and never more than `prefetch` messages are held unacked for this run.

use std::time::{Duration, Instant};

use anyhow::Result;
use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};

use super::broker::{Broker, lost};

/// How long a reader waits for a delivery before it asks the broker whether the queue
/// still has anything ready (another consumer may have taken what it expected).
const IDLE: Duration = Duration::from_millis(500);

/// A consumer on one queue, on its own channel.
pub struct Reader {
    ch: Channel,
    consumer: Consumer,
    queue: String,
}

impl Reader {
    /// Starts consuming `queue` with at most `prefetch` messages unacked.
    pub async fn open(broker: &Broker, queue: &str, prefetch: u16) -> Result<Self> {
        let ch = broker.channel().await?;
        broker
            .call(
                "setting the prefetch",
                ch.basic_qos(prefetch.max(1), BasicQosOptions::default()),
            )
            .await?;
        let consumer = broker
            .call(
                &format!("consuming {queue}"),
                ch.basic_consume(
                    queue.into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await?;
        Ok(Reader {
            ch,
            consumer,
            queue: queue.to_string(),
        })
    }

    /// The next message, held unacked; `None` once the queue has nothing ready for us.
    /// Silence while the queue says it has messages is bounded by the timeout.
    pub async fn next(&mut self, broker: &Broker) -> Result<Option<lapin::message::Delivery>> {
        let since = Instant::now();
        loop {
            match tokio::time::timeout(IDLE, self.consumer.next()).await {
                Ok(Some(Ok(d))) => return Ok(Some(d)),
                Ok(Some(Err(e))) => return Err(lost(&format!("reading {}", self.queue), e)),
                Ok(None) => {
                    return Err(lost(
                        &format!("reading {}", self.queue),
                        "the broker cancelled the consumer (queue deleted?)",
                    ));
                }
                Err(_) if broker.ready(&self.queue).await? == 0 => return Ok(None),
                Err(_) if since.elapsed() >= broker.timeout() => {
                    return Err(lost(
                        &format!("reading {}", self.queue),
                        format_args!("no message within {}s", broker.timeout().as_secs()),
                    ));
                }
                Err(_) => {}
            }
        }
    }

    /// Acks every message up to and including `tag`.
    pub async fn ack_through(&self, broker: &Broker, tag: u64) -> Result<()> {
        broker
            .call(
                &format!("acking messages of {}", self.queue),
                self.ch.basic_ack(tag, BasicAckOptions { multiple: true }),
            )
            .await
    }

    /// Closes the channel: every message still unacked goes back to its place.
    pub async fn close(self, broker: &Broker) -> Result<()> {
        broker
            .call(
                &format!("handing back unread messages of {}", self.queue),
                self.ch.close(200, "done".into()),
            )
            .await
    }
}
