//! The drain, as a small state machine: a **budget** ([`budget`]) gives the run its
//! caps; for each mail at the head of the queue, [`decide`] says send, park, stop or
//! "already sent"; the [`engine`] takes, decides, sends, settles and finishes; the
//! [`summary`] says what happened; the [`mod@plan`] is the same decisions as a dry run.
//!
//! It speaks to the queue through the [`Mailbox`](crate::taken::Mailbox) trait and to
//! Brevo through the [`Sender`](crate::brevo::Sender) trait, so that every Brevo outcome
//! is unit-tested against an in-memory mailbox.

pub mod budget;
pub mod decide;
mod doubt;
pub mod engine;
mod lookup;
pub mod plan;
mod settle;
pub mod staged;
pub mod summary;
mod suppress;
#[cfg(test)]
mod tests;

pub use budget::{Budget, Limit, Pace};
pub use decide::Rules;
pub(crate) use doubt::LOG_SETTLE;
pub use engine::{Drain, Io, Options, Progress, Unwatched};
pub use plan::{Action, Plan, plan};
pub use summary::Summary;
