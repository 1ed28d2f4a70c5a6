//! A queued mail as the domain sees it: its body and what its properties and our
//! headers say about it, with no broker type. The Mailbox reads messages into it.

use sha2::{Digest, Sha256};

/// A message as acaso-mail reads it: its body and what its properties and our headers
/// say about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Its identity: `id:<message_id>`, or `sha256:<digest of the body>` when the
    /// producer set no message id (the legacy producer sets none).
    pub identity: String,
    /// Its `message_id`, if any.
    pub message_id: Option<String>,
    /// Its AMQP priority.
    pub priority: u8,
    /// When it was published (UNIX seconds), if it says.
    pub timestamp: Option<u64>,
    /// Transient send failures so far (`x-acaso-attempts`).
    pub attempts: u32,
    /// Why it was parked (`x-acaso-reason`).
    pub reason: Option<String>,
    /// Details of the last failure (`x-acaso-detail`).
    pub detail: Option<String>,
    /// When it was parked (`x-acaso-parked-at`, RFC 3339).
    pub parked_at: Option<String>,
    /// Its body, byte for byte.
    pub body: Vec<u8>,
}

/// The identity of a message: its `message_id` when it has one (acaso-mail sets it),
/// else a digest of its body (the same body is the same mail).
pub fn identity(message_id: Option<&str>, body: &[u8]) -> String {
    match message_id {
        Some(id) if !id.is_empty() => format!("id:{id}"),
        _ => format!("sha256:{:x}", Sha256::digest(body)),
    }
}
