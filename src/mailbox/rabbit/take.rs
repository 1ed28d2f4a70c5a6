//! The Mailbox trait on RabbitMQ: the life of a taken message, from the head of the main
//! queue to its ack, its return, or its confirmed copy in a parking or retry queue.

use std::collections::HashSet;

use anyhow::Result;
use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::AMQPValue;

use super::{Rabbit, Which};
use crate::mailbox::message::{envelope, parking_headers, retry_headers, with_headers};
use crate::taken::{Mailbox, Parking, Retry, Taken};

/// What settles a mail taken from RabbitMQ: its delivery's acker, and its properties
/// (copied onto a parked or retried copy).
#[derive(Debug)]
pub struct Delivery {
    acker: lapin::Acker,
    props: lapin::BasicProperties,
}

impl Rabbit {
    async fn takes(&mut self) -> Result<&Channel> {
        if self.takes.is_none() {
            self.takes = Some(self.broker.channel().await?);
        }
        self.takes
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no channel"))
    }

    /// Moves a taken mail to `target` with extra headers: the copy is confirmed before
    /// the original is acked.
    async fn move_to(
        &mut self,
        taken: Taken<Delivery>,
        target: &str,
        headers: &[(&str, AMQPValue)],
    ) -> Result<()> {
        let Delivery { acker, props } = taken.ticket;
        let props = with_headers(&props, headers);
        let publisher = self.publisher().await?;
        publisher.publish(target, &taken.mail.body, props).await?;
        publisher.finish().await?;
        self.settle("acking a moved mail", acker.ack(BasicAckOptions::default()))
            .await
    }
}

impl Mailbox for Rabbit {
    type Ticket = Delivery;

    async fn take(&mut self) -> Result<Option<Taken<Delivery>>> {
        let main = self.topo.main().to_string();
        let ch = self.takes().await?.clone();
        let got = self.get(&ch, &main, "taking a mail").await?;
        Ok(got.map(|d| Taken {
            mail: envelope(&d.properties, d.data),
            ticket: Delivery {
                acker: d.acker,
                props: d.properties,
            },
        }))
    }

    async fn ack(&mut self, taken: Taken<Delivery>) -> Result<()> {
        let acker = taken.ticket.acker;
        self.settle("acking a mail", acker.ack(BasicAckOptions::default()))
            .await
    }

    async fn put_back(&mut self, taken: Taken<Delivery>) -> Result<()> {
        let acker = taken.ticket.acker;
        let requeue = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        self.settle("returning a mail to the queue", acker.nack(requeue))
            .await
    }

    async fn park(&mut self, taken: Taken<Delivery>, why: Parking<'_>) -> Result<()> {
        let headers = parking_headers(why.reason, why.detail, why.at);
        let parking = self.topo.parking();
        self.move_to(taken, &parking, &headers).await
    }

    async fn parked_identities(
        &mut self,
        mut wanted: impl FnMut(&str) -> bool,
    ) -> Result<HashSet<String>> {
        let mut found = HashSet::new();
        if !self.exists(Which::Parking).await? {
            return Ok(found);
        }
        let parking = self.topo.parking();
        self.read_held(&parking, u32::MAX, |e| {
            if wanted(&e.identity) {
                found.insert(e.identity);
            }
        })
        .await?;
        Ok(found)
    }

    async fn sync(&mut self) -> Result<()> {
        // Closing the channel is a round trip the broker answers only after every ack
        // sent on it before; the next take opens a fresh one.
        if let Some(ch) = self.takes.take() {
            self.broker
                .call(
                    "confirming the acks of this run",
                    ch.close(200, "settled".into()),
                )
                .await?;
        }
        Ok(())
    }

    async fn retry(&mut self, taken: Taken<Delivery>, next: Retry<'_>) -> Result<()> {
        let headers = retry_headers(next.attempts, next.detail);
        let q = self.topo.retry(next.delay);
        self.move_to(taken, &q, &headers).await
    }
}
