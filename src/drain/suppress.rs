//! Suppression: a mail whose every recipient Brevo reported as hard-bounced, invalid,
//! blocked or complaining (as `acaso-mail events` recorded it) is parked as
//! `suppressed` instead of spending a credit on a mail that cannot arrive.

use anyhow::Result;

use crate::mail::Mail;
use crate::state::Store;

/// The park reason.
pub const REASON: &str = "suppressed";

/// Why `mail` must not be sent, for the parking detail: each recipient, Brevo's reason
/// and where acaso-mail learned it. `None`: send it.
pub fn check(store: &Store, mail: &Mail) -> Result<Option<String>> {
    let mut why = Vec::with_capacity(mail.to.len());
    for r in &mail.to {
        match store.suppression(&r.email)? {
            Some(s) => why.push(format!(
                "{}: {} since {} (source: Brevo {})",
                r.email, s.reason, s.at, s.source
            )),
            None => return Ok(None),
        }
    }
    if why.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "{}; replay with `acaso-mail dead-letters replay --reason suppressed` once the address is fixed or unblocked",
        why.join("; ")
    )))
}
