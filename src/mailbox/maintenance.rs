//! The Mailbox's maintenance work: going through the parking queue (replay, purge).
//! Re-ordering the main queue is in `reorder`.

use anyhow::Result;
use chrono::{DateTime, Utc};
use lapin::options::BasicAckOptions;

use super::Envelope;
use super::batch;
use super::message::{envelope, text, with_headers, without_our_headers};
use super::rabbit::{Rabbit, Sweep};
use super::topology::H_REPLAYED_AT;

impl Rabbit {
    /// Goes through the parking queue in order, asking `choose` what to do with each
    /// mail (numbered from 1); the mails kept return to their places when it ends. A
    /// replayed mail loses the parking headers and is marked as replayed at `now`.
    pub async fn sweep_parking(
        &mut self,
        now: DateTime<Utc>,
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
                    // A reprioritize batch (parked by a version that did not know
                    // batches) goes back as the mails it holds; one that cannot be read
                    // goes back as it is.
                    let mails = batch::unpack(&d.properties, &env.body)
                        .unwrap_or_else(|_| vec![(d.properties.clone(), env.body.clone())]);
                    let publisher = self.publisher().await?;
                    for (props, body) in mails {
                        let props = with_headers(
                            &without_our_headers(&props),
                            &[(H_REPLAYED_AT, text(&now.to_rfc3339()))],
                        );
                        publisher.publish(&main, &body, props).await?;
                    }
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
}
