//! Suppression: a mail whose every recipient Brevo reported as hard-bounced, invalid,
//! blocked or complaining (as `acaso-mail events` recorded it) is parked as
//! `suppressed` instead of spending a credit on a mail that cannot arrive.

use anyhow::Result;

use crate::mail::Mail;
use crate::state::Store;

/// The park reason.
pub const REASON: crate::park::ParkReason = crate::park::ParkReason::Suppressed;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mail_is_suppressed_only_when_every_recipient_is() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        let blocked = crate::brevo::events::Blocked {
            email: "dead@example.org".into(),
            code: "hardBounce".into(),
            blocked_at: None,
        };
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .expect("now")
            .to_utc();
        store
            .record_blocked(&[blocked], true, now)
            .expect("blocked");
        let mail = |to: &[&str]| {
            let to: Vec<serde_json::Value> =
                to.iter().map(|t| serde_json::json!({"email": t})).collect();
            let body = serde_json::json!({"template_id": 9, "to": to});
            crate::mail::parse_value(body, chrono_tz::UTC).expect("mail")
        };
        let why = check(&store, &mail(&["dead@example.org"])).expect("check");
        let why = why.expect("suppressed");
        assert!(
            why.contains("hardBounce") && why.contains("(source: Brevo blockedContacts)"),
            "{why}"
        );
        let both = mail(&["dead@example.org", "alive@example.org"]);
        assert_eq!(check(&store, &both).expect("check"), None);
        assert_eq!(
            check(&store, &mail(&["alive@example.org"])).expect("check"),
            None
        );
    }
}
