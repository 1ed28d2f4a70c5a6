//! Counting queued mail by urgency band, from the messages at the head of the queue.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::mail;
use crate::mailbox::Envelope;
use crate::urgency::Urgency;

/// At most this many messages are read to break the queue down by urgency.
pub const SCAN_MAX: u32 = 100_000;

/// Mails per urgency band (`bad` = unreadable bodies).
pub fn bands(mails: &[Envelope], now: DateTime<Utc>, tz: Tz) -> BTreeMap<String, u32> {
    let mut bands: BTreeMap<String, u32> = BTreeMap::new();
    for e in mails {
        let band = match mail::parse(&e.body, tz) {
            Ok(m) => Urgency::of(m.deadline, now, tz).band(),
            Err(_) => "bad",
        };
        *bands.entry(band.to_string()).or_default() += 1;
    }
    bands
}
