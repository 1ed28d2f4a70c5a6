//! What `doctor` asks RabbitMQ, creating nothing: whether the broker answers (TCP, then
//! AMQP, login and vhost), whether the main queue exists and how it was declared, which
//! of its retry, parking and staging queues exist, and what an interrupted
//! `reprioritize` left staged.

use std::time::Duration;

use anyhow::Result;

use super::broker::{Broker, connect_hint};
use super::topology::{QueueInfo, Topology};
use crate::config::Config;

/// A connection for looking, never declaring a queue that does not exist.
pub struct Inspector {
    broker: Broker,
    topo: Topology,
}

/// Where the broker of the URL listens, its vhost and user, as the URL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The vhost.
    pub vhost: String,
    /// The user.
    pub user: String,
}

/// The host, port, vhost and user of an AMQP URL, or why it cannot be read.
pub fn target(url: &str) -> Result<Target, String> {
    let u: lapin::uri::AMQPUri = url.parse()?;
    Ok(Target {
        host: u.authority.host,
        port: u.authority.port,
        vhost: u.vhost,
        user: u.authority.userinfo.username,
    })
}

/// Whether anything accepts a TCP connection at the URL's host and port, within
/// `timeout`: `Err` says why not.
pub async fn reachable(t: &Target, timeout: Duration) -> Result<(), String> {
    let addr = (t.host.clone(), t.port);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}

/// What to do about a connection RabbitMQ refused, from its words.
pub fn hint_for(error: &str) -> &'static str {
    connect_hint(error)
}

impl Inspector {
    /// Connects (AMQP handshake, login, vhost); declares nothing.
    pub async fn connect(cfg: &Config) -> Result<Self> {
        Ok(Inspector {
            broker: Broker::connect(cfg).await?,
            topo: Topology::new(&cfg.queue),
        })
    }

    /// The queues' names.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// The main queue, or `None` when it does not exist. Asked passively first; only a
    /// queue that exists is then declared with acaso-mail's arguments, which RabbitMQ
    /// refuses without change when it was declared otherwise (that refusal says how):
    /// a declaration equal to the existing one changes nothing either.
    pub async fn main(&self) -> Result<Option<QueueInfo>> {
        if self.broker.existing(self.topo.main()).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.broker.main_queue(self.topo.main()).await?))
    }

    /// The retry, parking and staging queues that do not exist.
    pub async fn missing_side_queues(&self) -> Result<Vec<String>> {
        let mut names = vec![self.topo.parking(), self.topo.staging()];
        names.extend(self.topo.retries().map(|(_, q)| q));
        let mut missing = Vec::new();
        for q in names {
            if self.broker.existing(&q).await?.is_none() {
                missing.push(q);
            }
        }
        Ok(missing)
    }

    /// Messages in the staging queue (an interrupted `reprioritize`), 0 when it does
    /// not exist.
    pub async fn staged(&self) -> Result<u32> {
        self.broker.ready_or_none(&self.topo.staging()).await
    }

    /// Closes the connection.
    pub async fn close(self) {
        self.broker.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_target_of_a_url() {
        let t = target("amqp://acaso:secret@mq.example:5673/prod").expect("a URL");
        assert_eq!(
            t,
            Target {
                host: "mq.example".into(),
                port: 5673,
                vhost: "prod".into(),
                user: "acaso".into()
            }
        );
        let t = target("amqp://guest:guest@127.0.0.1:5672/%2f").expect("a URL");
        assert_eq!((t.port, t.vhost.as_str()), (5672, "/"));
        assert!(target("http://[::1").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_url_is_read_or_refused_without_panic(s in ".{0,80}") {
            let _ = target(&s);
            let _ = target(&format!("amqp://{s}"));
        }
    }
}
