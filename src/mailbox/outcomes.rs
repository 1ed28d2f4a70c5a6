//! Delivery outcomes back to the app: a durable topic exchange (`acaso.mail.events` by
//! default), routing key the event name, one small JSON document per outcome, published
//! persistent and mandatory with publisher confirms. An outcome is "published" only once
//! the broker confirmed it; one no queue is bound for is counted as unrouted (the app
//! is not listening for that event), not as a failure.

use std::collections::VecDeque;

use anyhow::Result;
use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind, PublisherConfirm};

use super::broker::{Broker, lost, within};
use crate::config::Config;

/// The default exchange name.
pub const DEFAULT_EXCHANGE: &str = "acaso.mail.events";

/// Unconfirmed outcomes allowed in flight (10,000 outcomes: 0.8 s with 2,048, 1.2 s with 256).
const WINDOW: usize = 2048;

/// What the broker said of the outcomes published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmed {
    /// The keys of the outcomes the broker took responsibility for (routed or not).
    pub keys: Vec<String>,
    /// Of those, how many no queue was bound for.
    pub unrouted: u32,
}

/// A confirm-mode publisher to the outcomes exchange.
pub struct Outcomes {
    broker: Broker,
    channel: Channel,
    exchange: String,
    pending: VecDeque<(String, PublisherConfirm)>,
    done: Confirmed,
}

impl Outcomes {
    /// Connects and declares the durable topic exchange `exchange` (an existing one of
    /// another kind is the broker's refusal, exit 4 with its words).
    pub async fn open(cfg: &Config, exchange: &str) -> Result<Self> {
        let broker = Broker::connect(cfg).await?;
        let channel = broker.confirm_channel().await?;
        broker
            .call(
                &format!("declaring exchange {exchange}"),
                channel.exchange_declare(
                    exchange.into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                ),
            )
            .await?;
        Ok(Outcomes {
            broker,
            channel,
            exchange: exchange.to_string(),
            pending: VecDeque::new(),
            done: Confirmed::default(),
        })
    }

    /// Publishes one outcome (`key` identifies it in the outbox).
    pub async fn publish(&mut self, key: &str, routing: &str, body: &[u8]) -> Result<()> {
        if self.pending.len() >= WINDOW {
            self.confirm_one().await?;
        }
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(key.into())
            .with_type(routing.into());
        let opts = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = within(
            self.broker.timeout(),
            &format!("publishing an outcome to {}", self.exchange),
            self.channel.basic_publish(
                ShortString::from(self.exchange.as_str()),
                routing.into(),
                opts,
                body,
                props,
            ),
        )
        .await?;
        self.pending.push_back((key.to_string(), confirm));
        Ok(())
    }

    async fn confirm_one(&mut self) -> Result<()> {
        let Some((key, c)) = self.pending.pop_front() else {
            return Ok(());
        };
        match within(self.broker.timeout(), "waiting for the broker's confirm", c).await? {
            Confirmation::Ack(returned) => {
                if returned.is_some() {
                    self.done.unrouted += 1;
                }
                self.done.keys.push(key);
                Ok(())
            }
            Confirmation::Nack(_) => Err(lost(
                "publishing outcomes",
                "the broker refused (nacked) an outcome",
            )),
            Confirmation::NotRequested => {
                Err(anyhow::anyhow!("publisher confirms are not enabled"))
            }
        }
    }

    /// The outcomes confirmed since the last call (those of a publisher that failed
    /// midway included).
    pub fn take_confirmed(&mut self) -> Confirmed {
        std::mem::take(&mut self.done)
    }

    /// Waits for every confirm.
    pub async fn finish(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            self.confirm_one().await?;
        }
        Ok(())
    }

    /// Closes the channel and the connection (bounded, errors ignored).
    pub async fn close(self) {
        self.broker.close_channel(&self.channel).await;
        self.broker.close().await;
    }
}
