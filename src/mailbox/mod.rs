//! The Mailbox: everything acaso-mail does with RabbitMQ, behind one adapter. It owns
//! the queue topology (the main queue, adopted as it is when it already exists, the
//! retry queues and the parking queue), what acaso-mail writes on messages, and the
//! life of a taken message: take, look without taking, ack, return to its place, park
//! with a reason, retry after a delay, replay, re-publish.
//!
//! Commands see [`Envelope`]s and [`Taken`] mails, never an AMQP type. A broker that is
//! lost, failing or silent surfaces as exit 4 from one place (`broker::within`).

pub mod batch;
mod broker;
mod inspect;
mod maintenance;
#[cfg(test)]
pub mod memory;
mod message;
pub mod outcomes;
mod publisher;
pub mod quarantine;
mod rabbit;
mod reader;
mod reorder;
pub mod topology;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::park::ParkReason;

pub use crate::envelope::{Envelope, identity};
pub use inspect::{Inspector, Target, hint_for, reachable, target};
pub use rabbit::{Depth, Rabbit, Reorder, Sweep, Which};
pub use reorder::Reordered;
pub use topology::QueueInfo;

/// A mail taken from the main queue and not yet settled: until it is acked, parked,
/// retried or put back, the broker holds it for this run (and returns it to the queue
/// if the run dies).
#[derive(Debug)]
pub struct Taken {
    /// What it is.
    pub mail: Envelope,
    ticket: Ticket,
}

/// What settles a taken mail with the mailbox it came from.
// The small variant exists only in unit tests.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Ticket {
    Amqp {
        acker: lapin::Acker,
        props: lapin::BasicProperties,
    },
    #[cfg(test)]
    Memory(u64),
}

impl Ticket {
    /// The AMQP handles of a mail taken from RabbitMQ.
    fn amqp(self) -> Result<(lapin::Acker, lapin::BasicProperties)> {
        match self {
            Ticket::Amqp { acker, props } => Ok((acker, props)),
            #[cfg(test)]
            Ticket::Memory(_) => anyhow::bail!("a mail taken from another mailbox"),
        }
    }
}

/// The life of a taken mail, as the drain sees it. Implemented by [`Rabbit`] and, for
/// unit tests, by an in-memory mailbox.
// Used through generics on one runtime: the futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Mailbox {
    /// Takes the mail at the head of the main queue (most urgent first), if any.
    async fn take(&mut self) -> Result<Option<Taken>>;
    /// Done with it: the broker forgets it.
    async fn ack(&mut self, taken: Taken) -> Result<()>;
    /// Returns it to its place in the main queue.
    async fn put_back(&mut self, taken: Taken) -> Result<()>;
    /// Moves it to the parking queue with a reason and details, for a person to see.
    async fn park(&mut self, taken: Taken, why: Parking<'_>) -> Result<()>;
    /// The identities of the mails in the parking queue that `wanted` selects, read
    /// without consuming or reordering anything.
    async fn parked_identities(
        &mut self,
        wanted: impl FnMut(&str) -> bool,
    ) -> Result<std::collections::HashSet<String>>;
    /// Moves it to a retry queue, to come back after a delay.
    async fn retry(&mut self, taken: Taken, next: Retry<'_>) -> Result<()>;
    /// Waits until the broker has every ack and move made so far (an ack is a one-way
    /// message: only a round trip behind it shows it arrived).
    async fn sync(&mut self) -> Result<()>;
}

/// Why and when a mail is parked.
#[derive(Debug, Clone, Copy)]
pub struct Parking<'a> {
    /// Why.
    pub reason: ParkReason,
    /// What happened, for the operator.
    pub detail: &'a str,
    /// When.
    pub at: DateTime<Utc>,
}

/// A failed send's next attempt.
#[derive(Debug, Clone, Copy)]
pub struct Retry<'a> {
    /// Failures so far, this one included.
    pub attempts: u32,
    /// How long it waits before it is back in the main queue.
    pub delay: topology::RetryDelay,
    /// What went wrong.
    pub detail: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_prefers_message_id_and_is_stable() {
        let body = br#"{"template": 9}"#;
        let a = identity(None, body);
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");
        assert_eq!(a, identity(Some(""), body));
        assert_ne!(a, identity(None, br#"{"template": 7}"#));
        assert_eq!(identity(Some("m-1"), body), "id:m-1");
        // The digest of "abc", as every SHA-256 implementation writes it.
        assert_eq!(
            identity(None, b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
