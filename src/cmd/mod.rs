//! One module per subcommand, plus what they share: opening the queue, a message's
//! identity, and moving a message to the parking or a retry queue without losing it.

pub mod credits;
pub mod dead_letters;
pub mod drain;
pub mod peek;
pub mod publish;
pub mod reprioritize;
pub mod stats;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use lapin::Acker;
use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::AMQPValue;
use sha2::{Digest, Sha256};

use crate::amqp::{
    self, Broker, H_ATTEMPTS, H_DETAIL, H_PARKED_AT, H_REASON, Publisher, QueueInfo,
};
use crate::config::Config;

/// Connects and declares (or adopts) the main queue and its retry and parking queues.
pub async fn open_queues(cfg: &Config) -> Result<(Broker, QueueInfo)> {
    let broker = Broker::connect(cfg).await?;
    let info = broker.main_queue(&cfg.queue).await?;
    broker.aux_queues(&cfg.queue, &cfg.dead_queue()).await?;
    Ok((broker, info))
}

/// A message's identity: its `message_id` when it has one (acaso-mail sets it), else a
/// digest of its body (the legacy producer sets none; the same body is the same mail).
pub fn identity(props: &BasicProperties, body: &[u8]) -> String {
    match props.message_id() {
        Some(id) if !id.as_str().is_empty() => format!("id:{}", id.as_str()),
        _ => format!("sha256:{}", hex(&Sha256::digest(body))),
    }
}

/// The Brevo idempotency key of an identity: a UUID-shaped digest, stable across runs.
pub fn idempotency_key(identity: &str) -> String {
    let d = Sha256::digest(identity.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4 layout, as Brevo asks for a UUID v4
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_string(&b)
}

/// 16 bytes in the 8-4-4-4-12 hex layout of a UUID.
pub fn uuid_string(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        push_hex(&mut s, *byte);
    }
    s
}

fn push_hex(s: &mut String, b: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    s.push(char::from(DIGITS[usize::from(b >> 4)]));
    s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        push_hex(&mut s, *b);
    }
    s
}

/// Milliseconds-free UNIX time, for the AMQP `timestamp` property.
pub fn unix_seconds(now: DateTime<Utc>) -> u64 {
    u64::try_from(now.timestamp()).unwrap_or(0)
}

/// Moves a message to `target` with extra headers, body and properties intact: the copy
/// is confirmed by the broker before the original is acked, so a crash in between
/// leaves a duplicate copy, never a lost one.
pub async fn move_message(
    publisher: &mut Publisher,
    target: &str,
    m: Held<'_>,
    headers: &[(&str, AMQPValue)],
) -> Result<()> {
    let props = amqp::with_headers(m.props, headers);
    publisher.publish(target, m.body, props).await?;
    publisher
        .finish()
        .await
        .with_context(|| format!("moving a message to {target}"))?;
    m.acker
        .ack(BasicAckOptions::default())
        .await
        .map_err(|e| lost("acking a moved message", &e))?;
    Ok(())
}

/// A message taken from a queue and not yet settled.
#[derive(Clone, Copy)]
pub struct Held<'a> {
    /// Settles it.
    pub acker: &'a Acker,
    /// Its properties, kept when it moves.
    pub props: &'a BasicProperties,
    /// Its body, kept byte for byte when it moves.
    pub body: &'a [u8],
}

/// Parks a message in the parking queue with its reason and the time.
pub async fn park(
    publisher: &mut Publisher,
    cfg: &Config,
    m: Held<'_>,
    reason: &str,
    detail: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let headers = [
        (H_REASON, AMQPValue::LongString(reason.into())),
        (
            H_DETAIL,
            AMQPValue::LongString(detail.chars().take(1000).collect::<String>().into()),
        ),
        (H_PARKED_AT, AMQPValue::LongString(now.to_rfc3339().into())),
    ];
    move_message(publisher, &cfg.dead_queue(), m, &headers).await
}

/// Sends a message to the retry queue for its next attempt.
pub async fn retry(
    publisher: &mut Publisher,
    cfg: &Config,
    m: Held<'_>,
    attempts: u32,
    delay_secs: u64,
    detail: &str,
) -> Result<()> {
    let headers = [
        (H_ATTEMPTS, AMQPValue::LongUInt(attempts)),
        (
            H_DETAIL,
            AMQPValue::LongString(detail.chars().take(1000).collect::<String>().into()),
        ),
    ];
    let q = amqp::retry_queue_name(&cfg.queue, delay_secs);
    move_message(publisher, &q, m, &headers).await
}

/// Returns a message to its place in the queue.
pub async fn requeue(acker: &Acker) -> Result<()> {
    acker
        .nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        })
        .await
        .map_err(|e| lost("returning a message to the queue", &e))?;
    Ok(())
}

/// A broker operation that failed mid-run: the connection is likely gone, and every
/// unacked mail goes back to the queue on its own.
pub fn lost(what: &str, e: &lapin::Error) -> crate::error::Failure {
    crate::error::Failure::Unavailable(format!(
        "lost RabbitMQ while {what}: {e}; unacked mails return to the queue"
    ))
}

/// The delay before retry attempt `attempt` (1-based), at least `at_least` seconds.
pub fn retry_delay(attempt: u32, at_least: Option<u64>) -> u64 {
    let idx = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
    let by_attempt = amqp::RETRY_DELAYS_SECS[idx.min(amqp::RETRY_DELAYS_SECS.len() - 1)];
    let wanted = at_least.unwrap_or(0).max(by_attempt);
    amqp::RETRY_DELAYS_SECS
        .iter()
        .copied()
        .find(|d| *d >= wanted)
        .unwrap_or(amqp::RETRY_DELAYS_SECS[amqp::RETRY_DELAYS_SECS.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_prefers_message_id_and_is_stable() {
        let body = br#"{"template": 9}"#;
        let none = BasicProperties::default();
        let a = identity(&none, body);
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
        assert_eq!(a, identity(&none, body));
        assert_ne!(a, identity(&none, br#"{"template": 7}"#));
        let with_id = BasicProperties::default().with_message_id("m-1".into());
        assert_eq!(identity(&with_id, body), "id:m-1");
    }

    #[test]
    fn idempotency_key_is_a_stable_uuid_v4_shape() {
        let k = idempotency_key("id:m-1");
        assert_eq!(k, idempotency_key("id:m-1"));
        assert_ne!(k, idempotency_key("id:m-2"));
        let parts: Vec<&str> = k.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(
            parts[3].chars().next(),
            Some('8' | '9' | 'a' | 'b')
        ));
    }

    #[test]
    fn retry_delays_grow_and_honour_brevo() {
        assert_eq!(retry_delay(1, None), 60);
        assert_eq!(retry_delay(2, None), 300);
        assert_eq!(retry_delay(9, None), 3600);
        assert_eq!(retry_delay(1, Some(120)), 300);
        assert_eq!(retry_delay(1, Some(99_999)), 3600);
    }
}
