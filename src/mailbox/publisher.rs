//! Publishing with publisher confirms, pipelined: up to `window` messages unconfirmed,
//! and success reported only once the broker has confirmed every one of them.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Result;
use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};

use super::broker::{Broker, lost, within};

/// A confirm-mode publisher.
pub struct Publisher {
    channel: Channel,
    timeout: Duration,
    window: usize,
    pending: VecDeque<PublisherConfirm>,
    confirmed: u64,
}

impl Publisher {
    /// A publisher on a fresh confirm-mode channel.
    pub async fn new(broker: &Broker, window: usize) -> Result<Self> {
        let channel = broker.confirm_channel().await?;
        Ok(Publisher {
            channel,
            timeout: broker.timeout(),
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
        let opts = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = within(
            self.timeout,
            &format!("publishing to {queue}"),
            self.channel
                .basic_publish(ShortString::from(""), queue.into(), opts, body, props),
        )
        .await?;
        self.pending.push_back(confirm);
        Ok(())
    }

    async fn confirm_one(&mut self) -> Result<()> {
        let Some(c) = self.pending.pop_front() else {
            return Ok(());
        };
        match within(self.timeout, "waiting for the broker's confirm", c).await? {
            Confirmation::Ack(None) => {
                self.confirmed += 1;
                Ok(())
            }
            Confirmation::Ack(Some(_)) => Err(lost(
                "publishing",
                "the broker returned a message as unroutable (queue deleted?)",
            )),
            Confirmation::Nack(_) => {
                Err(lost("publishing", "the broker refused (nacked) a message"))
            }
            Confirmation::NotRequested => {
                Err(anyhow::anyhow!("publisher confirms are not enabled"))
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

    /// Messages the broker has confirmed so far.
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// Messages published so far, confirmed or not.
    pub fn published(&self) -> u64 {
        self.confirmed + self.pending.len() as u64
    }

    /// Closes its channel once everything is confirmed (bounded, errors ignored).
    pub async fn close(self, broker: &Broker) {
        broker.close_channel(&self.channel).await;
    }

    /// Messages published but not yet confirmed.
    pub fn unconfirmed(&self) -> usize {
        self.pending.len()
    }
}
