//! A mail taken from the queue and not settled yet, and the [`Mailbox`] trait: the life of
//! a taken mail as the drain sees it. The drain owns this port; `mailbox::Rabbit`
//! implements it on RabbitMQ, and `mailbox::memory::Memory` in memory for unit tests.
//! What settles a mail with the mailbox it came from (an AMQP delivery's acker, a tag)
//! is the mailbox's own [`Mailbox::Ticket`]: the drain holds it and never looks inside.

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::envelope::Envelope;
use crate::park::ParkReason;

/// A mail taken from the main queue and not yet settled: until it is acked, parked,
/// retried or put back, the broker holds it for this run (and returns it to the queue
/// if the run dies).
#[derive(Debug)]
pub struct Taken<T> {
    /// What it is.
    pub mail: Envelope,
    /// What settles it with the mailbox it came from.
    pub(crate) ticket: T,
}

/// The life of a taken mail, as the drain sees it.
// Used through generics on one runtime: the futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Mailbox {
    /// What settles a taken mail with this mailbox; it travels with the mail's send.
    type Ticket: Send + std::fmt::Debug + 'static;
    /// Takes the mail at the head of the main queue (most urgent first), if any.
    async fn take(&mut self) -> Result<Option<Taken<Self::Ticket>>>;
    /// Done with it: the broker forgets it.
    async fn ack(&mut self, taken: Taken<Self::Ticket>) -> Result<()>;
    /// Returns it to its place in the main queue.
    async fn put_back(&mut self, taken: Taken<Self::Ticket>) -> Result<()>;
    /// Moves it to the parking queue with a reason and details, for a person to see.
    async fn park(&mut self, taken: Taken<Self::Ticket>, why: Parking<'_>) -> Result<()>;
    /// The identities of the mails in the parking queue that `wanted` selects, read
    /// without consuming or reordering anything.
    async fn parked_identities(
        &mut self,
        wanted: impl FnMut(&str) -> bool,
    ) -> Result<std::collections::HashSet<String>>;
    /// Moves it to a retry queue, to come back after a delay.
    async fn retry(&mut self, taken: Taken<Self::Ticket>, next: Retry<'_>) -> Result<()>;
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
    pub delay: RetryDelay,
    /// What went wrong.
    pub detail: &'a str,
}

/// How long a mail waits before it is tried again, one retry queue each: attempt 1
/// waits the first, attempt 2 the second, and so on; the last repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RetryDelay {
    /// 60 s.
    Minute,
    /// 300 s.
    FiveMinutes,
    /// 1,800 s.
    HalfHour,
    /// 3,600 s.
    Hour,
}

impl RetryDelay {
    /// Every delay, shortest first: the retry queues.
    pub const ALL: [RetryDelay; 4] = [
        RetryDelay::Minute,
        RetryDelay::FiveMinutes,
        RetryDelay::HalfHour,
        RetryDelay::Hour,
    ];

    /// The delay in seconds (in its queue's name and TTL).
    pub const fn secs(self) -> u64 {
        match self {
            RetryDelay::Minute => 60,
            RetryDelay::FiveMinutes => 300,
            RetryDelay::HalfHour => 1800,
            RetryDelay::Hour => 3600,
        }
    }

    /// The delay before retry attempt `attempt` (1-based), at least `at_least` seconds
    /// (the longest when none is that long).
    pub fn for_attempt(attempt: u32, at_least: Option<u64>) -> Self {
        let idx = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        let by_attempt = Self::ALL.get(idx).copied().unwrap_or(RetryDelay::Hour);
        let wanted = at_least.unwrap_or(0).max(by_attempt.secs());
        Self::ALL
            .into_iter()
            .find(|d| d.secs() >= wanted)
            .unwrap_or(RetryDelay::Hour)
    }
}
