//! The queues acaso-mail uses and what it writes on messages: the main queue, the retry
//! queues and the parking queue are all named after the main one, and every header
//! acaso-mail adds starts with `x-acaso-`. Nothing here talks to the broker.

use crate::park::ParkReason;
use crate::taken::RetryDelay;
use crate::urgency::PriorityScale;

/// Header: how many sends of this mail failed transiently so far.
pub const H_ATTEMPTS: &str = "x-acaso-attempts";
/// Header: why a mail was parked.
pub const H_REASON: &str = "x-acaso-reason";
/// Header: the details of why it was parked or retried.
pub const H_DETAIL: &str = "x-acaso-detail";
/// Header: when it was parked (RFC 3339).
pub const H_PARKED_AT: &str = "x-acaso-parked-at";
/// Header: when `dead-letters` last replayed it (RFC 3339), for the operator's eyes. It
/// outlives the replay (it is not one of [`OUR_HEADERS`]).
pub const H_REPLAYED_AT: &str = "x-acaso-replayed-at";

/// The headers acaso-mail writes; a replayed mail leaves them behind.
pub const OUR_HEADERS: [&str; 4] = [H_REASON, H_DETAIL, H_PARKED_AT, H_ATTEMPTS];

/// Every reason a mail is parked for (the `x-acaso-reason` header): the codes of
/// [`ParkReason`].
pub const PARK_REASONS: &[&str] = ParkReason::CODES;

/// A detail header is cut to this many characters.
pub const DETAIL_MAX_CHARS: usize = 1000;

/// The names of one main queue's family of queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    main: String,
}

impl Topology {
    /// The family of `main`.
    pub fn new(main: &str) -> Self {
        Topology { main: main.into() }
    }

    /// The main queue, where the producer publishes and drains take from.
    pub fn main(&self) -> &str {
        &self.main
    }

    /// The parking queue: mails that must not or cannot be sent, for a person to see.
    pub fn parking(&self) -> String {
        format!("{}.dead", self.main)
    }

    /// The staging queue of `reprioritize`: mails on their way back to `main` with
    /// today's priority. Empty between runs; what a run killed halfway left there, the
    /// next run puts back.
    pub fn staging(&self) -> String {
        format!("{}.reprioritize", self.main)
    }

    /// The retry queue that holds mails for `delay` before they return to `main`.
    pub fn retry(&self, delay: RetryDelay) -> String {
        format!("{}.retry.{}s", self.main, delay.secs())
    }

    /// Every retry queue, with its delay.
    pub fn retries(&self) -> impl Iterator<Item = (RetryDelay, String)> + '_ {
        RetryDelay::ALL.into_iter().map(|d| (d, self.retry(d)))
    }
}

/// A detail, cut to what a header carries.
pub fn detail_header(detail: &str) -> String {
    detail.chars().take(DETAIL_MAX_CHARS).collect()
}

/// What acaso-mail knows about the main queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// Its name.
    pub name: String,
    /// Messages ready for delivery.
    pub ready: u32,
    /// Whether it survives a broker restart (`None` when it could not be told).
    pub durable: Option<bool>,
    /// Its `x-max-priority` (0 when it is not a priority queue).
    pub max_priority: u8,
}

impl QueueInfo {
    /// How urgency maps to priority on this queue.
    pub fn scale(&self) -> PriorityScale {
        PriorityScale::new(self.max_priority)
    }
}

/// Reads `x-max-priority` out of RabbitMQ's PRECONDITION_FAILED text, e.g.
/// "... received the value '9' of type 'short_short_uint' but current is the value '255'
/// of type 'signedint'", or "... but current is none".
pub fn parse_current_max_priority(text: &str) -> Option<u8> {
    if !text.contains("'x-max-priority'") {
        return None;
    }
    let (_, current) = text.split_once("but current is")?;
    let current = current.trim_start();
    if current.starts_with("none") {
        return Some(0);
    }
    let digits: String = current
        .trim_start_matches("the value ")
        .trim_start_matches('\'')
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse::<u32>()
        .ok()
        .map(|p| u8::try_from(p).unwrap_or(u8::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_main_queue() {
        let t = Topology::new("acaso.mail");
        assert_eq!(t.parking(), "acaso.mail.dead");
        assert_eq!(t.staging(), "acaso.mail.reprioritize");
        assert_eq!(t.retry(RetryDelay::Minute), "acaso.mail.retry.60s");
        let names: Vec<String> = t.retries().map(|(_, q)| q).collect();
        assert_eq!(
            names,
            [60, 300, 1800, 3600].map(|s| format!("acaso.mail.retry.{s}s"))
        );
    }

    #[test]
    fn retry_delays_grow_and_honour_brevo() {
        let retry_delay = |a, at_least| RetryDelay::for_attempt(a, at_least).secs();
        assert_eq!(retry_delay(1, None), 60);
        assert_eq!(retry_delay(2, None), 300);
        assert_eq!(retry_delay(9, None), 3600);
        assert_eq!(retry_delay(1, Some(120)), 300);
        assert_eq!(retry_delay(1, Some(99_999)), 3600);
        assert_eq!(retry_delay(u32::MAX, None), 3600);
    }

    #[test]
    fn details_are_capped() {
        assert_eq!(
            detail_header(&"é".repeat(5000)).chars().count(),
            DETAIL_MAX_CHARS
        );
    }

    #[test]
    fn reads_max_priority_from_the_refusal() {
        let t = "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue 'queue' in vhost '/': received the value '9' of type 'short_short_uint' but current is the value '255' of type 'signedint'";
        assert_eq!(parse_current_max_priority(t), Some(255));
        let t = "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue 'q' in vhost '/': received the value '9' of type 'short_short_uint' but current is none";
        assert_eq!(parse_current_max_priority(t), Some(0));
        // RabbitMQ 3.10's wording.
        let t = "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue 'q' in vhost '/': received '9' but current is '255'";
        assert_eq!(parse_current_max_priority(t), Some(255));
        assert_eq!(
            parse_current_max_priority("PRECONDITION_FAILED - inequivalent arg 'exclusive'"),
            None
        );
    }
}
