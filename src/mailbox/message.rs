//! A message's AMQP properties, read into an [`Envelope`] and written back with
//! acaso-mail's `x-acaso-*` headers added or removed.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

use chrono::{DateTime, Utc};

use super::topology::{H_ATTEMPTS, H_DETAIL, H_PARKED_AT, H_REASON, OUR_HEADERS, detail_header};
use super::{Envelope, identity};
use crate::park::ParkReason;

/// Decodes what acaso-mail reads from a message's properties.
pub fn envelope(props: &BasicProperties, body: Vec<u8>) -> Envelope {
    let message_id = props.message_id().as_ref().map(|s| s.as_str().to_string());
    Envelope {
        identity: identity(message_id.as_deref(), &body),
        message_id,
        priority: props.priority().unwrap_or(0),
        timestamp: *props.timestamp(),
        attempts: header_u32(props, H_ATTEMPTS).unwrap_or(0),
        reason: header_str(props, H_REASON),
        detail: header_str(props, H_DETAIL),
        parked_at: header_str(props, H_PARKED_AT),
        body,
    }
}

fn header_u32(props: &BasicProperties, key: &str) -> Option<u32> {
    match props.headers().as_ref()?.inner().get(key)? {
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

fn header_str(props: &BasicProperties, key: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// A copy of `props`, persistent, with extra headers.
pub fn with_headers(props: &BasicProperties, extra: &[(&str, AMQPValue)]) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    for (k, v) in extra {
        headers.insert((*k).into(), v.clone());
    }
    props.clone().with_headers(headers).with_delivery_mode(2)
}

/// A copy of `props` without acaso-mail's headers.
pub fn without_our_headers(props: &BasicProperties) -> BasicProperties {
    let Some(h) = props.headers().clone() else {
        return props.clone();
    };
    let mut kept = FieldTable::default();
    for (k, v) in h.inner() {
        if !OUR_HEADERS.contains(&k.as_str()) {
            kept.insert(k.clone(), v.clone());
        }
    }
    props.clone().with_headers(kept)
}

/// A string header value.
pub fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// The headers of a parked mail: why, the details (capped), and when.
pub fn parking_headers(
    reason: ParkReason,
    detail: &str,
    now: DateTime<Utc>,
) -> [(&'static str, AMQPValue); 3] {
    [
        (H_REASON, text(reason.as_str())),
        (H_DETAIL, text(&detail_header(detail))),
        (H_PARKED_AT, text(&now.to_rfc3339())),
    ]
}

/// The headers of a mail waiting for its next attempt.
pub fn retry_headers(attempts: u32, detail: &str) -> [(&'static str, AMQPValue); 2] {
    [
        (H_ATTEMPTS, AMQPValue::LongUInt(attempts)),
        (H_DETAIL, text(&detail_header(detail))),
    ]
}
