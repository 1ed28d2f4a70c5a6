//! The connection to RabbitMQ, and the one place where a broker that is gone, failing
//! or silent becomes [`Failure::Unavailable`] (exit 4): every wait on the broker goes
//! through [`Broker::call`], bounded by `--timeout`.

use std::time::Duration;

use anyhow::Result;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};

use super::topology::{QueueInfo, Topology, parse_current_max_priority};
use crate::config::Config;
use crate::error::Failure;
use crate::urgency::OUR_MAX_PRIORITY;

mod why;
pub(in crate::mailbox) use why::connect_hint;
use why::{
    NOT_AMQP_HINT, error_text, explain_amqp_error, host_port, is_not_amqp, silent_peer_message,
};

/// A connection to RabbitMQ.
pub struct Broker {
    conn: Connection,
    timeout: Duration,
}

/// The error for a broker operation that failed or timed out: the connection is likely
/// gone, and every unacked mail goes back to its queue on its own.
pub fn lost(what: &str, why: impl std::fmt::Display) -> anyhow::Error {
    let why = why.to_string();
    super::quarantine::note_failure(&why);
    Failure::Unavailable(format!(
        "lost RabbitMQ while {what}: {why}; unacked mails return to the queue"
    ))
    .into()
}

/// Awaits a broker operation for at most `timeout`, mapping failure and silence alike
/// to [`Failure::Unavailable`].
pub async fn within<T, E: std::fmt::Display>(
    timeout: Duration,
    what: &str,
    fut: impl std::future::Future<Output = std::result::Result<T, E>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(lost(what, e)),
        Err(_) => Err(lost(
            what,
            format_args!("no answer within {}s", timeout.as_secs()),
        )),
    }
}

/// The TLS options lapin connects with: the built-in roots plus `--amqp-ca-file`.
fn amqp_tls_config(wire: &crate::wire::Wire) -> lapin::tcp::OwnedTLSConfig {
    lapin::tcp::OwnedTLSConfig {
        identity: None,
        cert_chain: wire.amqp_ca.as_ref().map(|ca| ca.pem.clone()),
    }
}

/// Connects to RabbitMQ with the configured URL and TLS options.
async fn connect_amqp(cfg: &Config, props: ConnectionProperties) -> lapin::Result<Connection> {
    lapin::DefaultConnectionBuilder::new()?
        .with_uri_str(cfg.amqp_url.expose().to_string())
        .with_properties(props)
        .with_tls_config(amqp_tls_config(&cfg.wire))
        .connect()
        .await
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

impl Broker {
    /// Connects, failing with an "unavailable" error after the configured timeout.
    pub async fn connect(cfg: &Config) -> Result<Self> {
        let props = ConnectionProperties::default()
            .with_connection_name(format!("acaso-mail {}", std::process::id()).into());
        // amqps:// trusts the CA of --amqp-ca-file when one is given (crate::wire).
        let conn = tokio::time::timeout(cfg.timeout, connect_amqp(cfg, props))
            .await
            .map_err(|_| Failure::Unavailable(silent_peer_message(cfg)))?
            .map_err(|e| {
                if is_not_amqp(&error_text(&e)) {
                    return Failure::Unavailable(format!(
                        "something answered at {} but it does not speak AMQP 0-9-1; {NOT_AMQP_HINT}",
                        host_port(cfg)
                    ));
                }
                // An untrusted certificate says so, and which option fixes it.
                Failure::Unavailable(explain_amqp_error(cfg, &e).unwrap_or_else(|| {
                    format!(
                        "cannot connect to RabbitMQ at {}: {e}; {}",
                        cfg.amqp_display,
                        connect_hint(&e.to_string())
                    )
                }))
            })?;
        // A frame lapin cannot parse ends the connection before acaso-mail sees the
        // message: remember it, so that the run parks that message before it ends.
        let mut events = conn.events_listener();
        tokio::spawn(async move {
            use futures_lite::StreamExt;
            while let Some(event) = events.next().await {
                if let lapin::Event::Error(e) = event {
                    super::quarantine::note_failure(&e.to_string());
                }
            }
        });
        Ok(Broker {
            conn,
            timeout: cfg.timeout,
        })
    }

    /// Awaits a broker operation, bounded by the timeout (see [`within`]).
    pub async fn call<T, E: std::fmt::Display>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = std::result::Result<T, E>>,
    ) -> Result<T> {
        within(self.timeout, what, fut).await
    }

    /// The timeout every wait is bounded by.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A new channel.
    pub async fn channel(&self) -> Result<Channel> {
        self.call("opening a channel", self.conn.create_channel())
            .await
    }

    /// A fresh channel in publisher-confirm mode.
    pub async fn confirm_channel(&self) -> Result<Channel> {
        let channel = self.channel().await?;
        self.call(
            "enabling publisher confirms",
            channel.confirm_select(lapin::options::ConfirmSelectOptions::default()),
        )
        .await?;
        Ok(channel)
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
            // Another argument differs when the refusal names no priority: levels unknown.
            max_priority = parse_current_max_priority(refusal).unwrap_or(0);
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
        let declared = tokio::time::timeout(
            self.timeout,
            ch.queue_declare(name.into(), opts, args.clone()),
        )
        .await
        .map_err(|_| lost(&format!("declaring queue {name}"), "no answer"))?;
        match declared {
            Ok(_) => {
                self.close_channel(&ch).await;
                Ok(Ok(()))
            }
            Err(e) if e.to_string().contains("PRECONDITION_FAILED") => Ok(Err(e.to_string())),
            Err(e) => Err(lost(&format!("declaring queue {name}"), e)),
        }
    }

    /// The number of ready messages in an existing queue.
    pub async fn ready(&self, name: &str) -> Result<u32> {
        let ch = self.channel().await?;
        let opts = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let q = self
            .call(
                &format!("counting the messages of {name}"),
                ch.queue_declare(name.into(), opts, FieldTable::default()),
            )
            .await?;
        self.close_channel(&ch).await;
        Ok(q.message_count())
    }

    /// The number of ready messages in a queue, 0 when it does not exist (asked as
    /// [`Broker::existing`] asks).
    pub async fn ready_or_none(&self, name: &str) -> Result<u32> {
        Ok(self.existing(name).await?.unwrap_or(0))
    }

    /// The number of ready messages in a queue, or `None` when it does not exist. Asked
    /// passively, on a throwaway channel (the broker closes it on NOT_FOUND): nothing
    /// is created.
    pub async fn existing(&self, name: &str) -> Result<Option<u32>> {
        let ch = self.channel().await?;
        let opts = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let what = format!("looking for queue {name}");
        let asked = tokio::time::timeout(
            self.timeout,
            ch.queue_declare(name.into(), opts, FieldTable::default()),
        )
        .await
        .map_err(|_| lost(&what, "no answer"))?;
        match asked {
            Ok(q) => {
                self.close_channel(&ch).await;
                Ok(Some(q.message_count()))
            }
            Err(e) if e.to_string().contains("NOT_FOUND") => Ok(None),
            Err(e) => Err(lost(&what, e)),
        }
    }

    /// Declares the parking queue and the retry queues (durable, plain), and the
    /// staging queue of `reprioritize` (durable, `x-max-priority` 9: its priorities order
    /// the way back). Each retry queue holds mails for a fixed delay, then dead-letters
    /// them back to the main queue through the default exchange.
    pub async fn side_queues(&self, topo: &Topology) -> Result<()> {
        let ch = self.channel().await?;
        let parking = topo.parking();
        self.call(
            &format!("declaring parking queue {parking}"),
            ch.queue_declare(parking.as_str().into(), durable(), FieldTable::default()),
        )
        .await?;
        let staging = topo.staging();
        let mut prio = FieldTable::default();
        prio.insert(
            "x-max-priority".into(),
            AMQPValue::ShortShortUInt(OUR_MAX_PRIORITY),
        );
        self.call(
            &format!("declaring staging queue {staging}"),
            ch.queue_declare(staging.as_str().into(), durable(), prio),
        )
        .await?;
        for (delay, q) in topo.retries() {
            let mut args = FieldTable::default();
            let ttl_ms = u32::try_from(delay.secs() * 1000).unwrap_or(u32::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongUInt(ttl_ms));
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString("".into()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(topo.main().into()),
            );
            self.call(
                &format!("declaring retry queue {q}"),
                ch.queue_declare(q.as_str().into(), durable(), args),
            )
            .await?;
        }
        self.close_channel(&ch).await;
        Ok(())
    }

    /// Closes a channel, bounded by the timeout, ignoring errors (used once its work is
    /// settled; unacked messages go back to the queue either way).
    pub async fn close_channel(&self, ch: &Channel) {
        let _ = tokio::time::timeout(self.timeout, ch.close(200, "done".into())).await;
    }

    /// Closes the connection politely, without waiting more than the timeout.
    pub async fn close(self) {
        let _ = tokio::time::timeout(self.timeout, self.conn.close(200, "bye".into())).await;
    }
}
