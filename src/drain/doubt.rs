//! A mail in doubt (an earlier attempt whose answer nobody saw): how long it may be
//! sent again under the same key, when Brevo's log can be asked, and what asking found.
//! Shared by the engine, which acts on it, and the look-up, which asks.

use chrono::{DateTime, Utc};

/// How long after a send whose answer was never seen it is still safe to send again:
/// Brevo refuses a repeated idempotency key for 15 minutes by its changelog, 30 by its
/// guide; assume the shorter and keep a margin. Past it, the mail waits until Brevo's
/// log can list the latest attempt ([`LOG_SETTLE`]), then the log is asked: it is never
/// resent blindly in between.
pub(super) const UNSEEN_SEND_LIMIT: chrono::Duration = chrono::Duration::minutes(12);
/// How long Brevo's log may take to list a mail it accepted (undocumented: "allow
/// minutes"); a look-up sooner than this after the latest attempt is not asked yet.
pub(crate) const LOG_SETTLE: chrono::Duration = chrono::Duration::minutes(20);

/// What looking up a mail in doubt came to.
pub(super) enum Lookup {
    /// Brevo's log lists it: it went (journaled as sent): ack it.
    Sent,
    /// Brevo's log does not list it: the earlier attempt never went (no longer in
    /// doubt in the journal).
    NotSent,
    /// Not asked (too soon, or this run's look-ups are spent), or no answer: ask again
    /// in at least `secs` seconds.
    Later {
        /// The least wait.
        secs: u64,
        /// Why, for the retry's detail header.
        detail: String,
    },
    /// The log cannot tell, and asking again will not help: a person must
    /// (`uncertain_send`).
    Unknowable(String),
}

/// Seconds to wait when the latest attempt, at `last`, may not be in Brevo's log yet.
pub(super) fn too_soon(now: DateTime<Utc>, last: Option<DateTime<Utc>>) -> Option<u64> {
    let last = last.filter(|last| now - *last < LOG_SETTLE)?;
    Some(u64::try_from((LOG_SETTLE - (now - last)).num_seconds()).unwrap_or(0))
}
