//! The Mailbox's maintenance work: going through the parking queue (replay, purge) and
//! re-ordering the main queue with today's priorities.

use anyhow::Result;
use chrono::{DateTime, Utc};
use lapin::options::{BasicAckOptions, BasicPublishOptions};
use lapin::{BasicProperties, Channel};

use super::Envelope;
use super::message::{envelope, parking_headers, with_headers, without_our_headers};
use super::rabbit::{Rabbit, Reorder, Sweep};

impl Rabbit {
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
            let got = self.get(&ch, &parking, "reading the parking queue").await?;
            let Some(d) = got else { break };
            index += 1;
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
        while let Some(m) = self.get(&ch, &main, "reading the queue").await? {
            if stop() {
                return Ok(false);
            }
            taken.push(m);
        }
        let Some(last_tag) = taken.last().map(|d| d.delivery_tag) else {
            return Ok(true);
        };
        let mut keep = Vec::new();
        for (pos, d) in taken.into_iter().enumerate() {
            let env = envelope(&d.properties, d.data);
            match fate(&env) {
                Reorder::Park { reason, detail } => {
                    let headers = parking_headers(reason, &detail, now);
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
}
