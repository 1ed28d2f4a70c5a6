//! The Mailbox: everything acaso-mail does with RabbitMQ, behind one adapter. It owns
//! the queue topology (the main queue, adopted as it is when it already exists, the
//! retry queues and the parking queue), what acaso-mail writes on messages, and the
//! life of a taken message: take, look without taking, ack, return to its place, park
//! with a reason, retry after a delay, replay, re-publish.
//!
//! Commands see [`Envelope`]s and [`Taken`](crate::taken::Taken) mails, never an AMQP
//! type: the [`Mailbox`](crate::taken::Mailbox) trait the drain speaks to lives with the
//! drain's types, and [`Rabbit`] implements it (`rabbit/take.rs`). A broker that is
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

pub use crate::envelope::{Envelope, identity};
pub use inspect::{Inspector, Target, hint_for, reachable, target};
pub use rabbit::{Depth, Rabbit, Reorder, Sweep, Which};
pub use reorder::Reordered;
pub use topology::QueueInfo;

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
