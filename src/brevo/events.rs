//! Brevo's delivery events (`GET /smtp/statistics/events`) and blocked transactional
//! contacts (`GET /smtp/blockedContacts`): what became of each mail after Brevo's 201,
//! and the addresses Brevo will not mail. Both are read page by page, oldest first;
//! the answers are read leniently (a row Brevo sends without an event name or a message
//! id is skipped and counted, never a failure of the whole page).

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::Brevo;
use crate::error::Failure;

/// Brevo's event names (the `event` enum of `getEmailEventReport`), in its order.
pub const EVENT_NAMES: [&str; 14] = [
    "bounces",
    "hardBounces",
    "softBounces",
    "delivered",
    "spam",
    "requests",
    "opened",
    "clicks",
    "invalid",
    "deferred",
    "blocked",
    "unsubscribed",
    "error",
    "loadedByProxy",
];

/// The events that say an address must not be mailed again until someone looks.
pub const SUPPRESSING_EVENTS: [&str; 4] = ["hardBounces", "invalid", "blocked", "spam"];

/// The blocked-contact reason codes that suppress an address (an unsubscription is the
/// recipient's choice for marketing mail, not a dead address: Brevo itself still
/// refuses it, so it is suppressed too, and says so).
pub const BLOCKED_CODES: [&str; 6] = [
    "hardBounce",
    "contactFlaggedAsSpam",
    "adminBlocked",
    "unsubscribedViaMA",
    "unsubscribedViaEmail",
    "unsubscribedViaApi",
];

/// The most days one events query may span (Brevo: "can not exceed 90 days").
pub const MAX_SPAN_DAYS: i64 = 90;
/// The largest events page Brevo serves.
pub const MAX_EVENTS_PAGE: u32 = 5_000;
/// The largest blocked-contacts page Brevo serves.
pub const MAX_BLOCKED_PAGE: u32 = 100;

/// One delivery event, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The recipient.
    pub email: String,
    /// When it happened.
    pub date: DateTime<Utc>,
    /// Brevo's message id (the 201's `messageId`).
    pub message_id: String,
    /// Brevo's event name (kept as sent, even one this version does not know).
    pub event: String,
    /// Why (bounces and the like), when Brevo says.
    pub reason: Option<String>,
    /// The tag Brevo reports (acaso-mail tags each send with its idempotency key).
    pub tag: Option<String>,
    /// The template, when the mail used one.
    pub template_id: Option<u32>,
}

/// A page of events: the rows read, and how many rows came but could not be used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsPage {
    /// The usable rows, in the order Brevo sent them.
    pub events: Vec<Event>,
    /// Rows on the page in all (usable or not): the offset moves by this.
    pub rows: usize,
}

/// A blocked or unsubscribed transactional contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The address.
    pub email: String,
    /// Brevo's reason code (safe to compare), as sent.
    pub code: String,
    /// Since when, if Brevo says it readably.
    pub blocked_at: Option<DateTime<Utc>>,
}

/// A page of blocked contacts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockedPage {
    /// The contacts on the page.
    pub contacts: Vec<Blocked>,
    /// Rows on the page in all (usable or not).
    pub rows: usize,
    /// Contacts in all, when Brevo says.
    pub count: Option<u64>,
}

/// A date Brevo writes: RFC 3339 with `Z` or an offset, fractions or none (answers
/// have been seen with `-03:00` and milliseconds), or a bare `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.to_utc());
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// An answer's object and its list `field` (none: an answer with nothing, `{}`).
fn listing(body: &str, what: &str, field: &str) -> Result<(Value, Vec<Value>), String> {
    let mut v: Value =
        serde_json::from_str(body).map_err(|e| format!("unexpected {what} answer: {e}"))?;
    let Some(obj) = v.as_object_mut() else {
        return Err(format!("the {what} answer is not a JSON object"));
    };
    let rows = match obj.remove(field) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(rows)) => rows,
        Some(_) => return Err(format!("the {what} answer's `{field}` is not a list")),
    };
    Ok((v, rows))
}

/// Reads one `GET /smtp/statistics/events` answer. An answer with nothing may be `{}`.
pub fn events_page(body: &str) -> Result<EventsPage, String> {
    let (_, rows) = listing(body, "events", "events")?;
    let events = rows
        .iter()
        .filter_map(|r| {
            Some(Event {
                email: text(r, "email")?,
                date: parse_date(r.get("date")?.as_str()?)?,
                message_id: text(r, "messageId")?,
                event: text(r, "event")?,
                reason: text(r, "reason"),
                tag: text(r, "tag"),
                template_id: r
                    .get("templateId")
                    .and_then(Value::as_u64)
                    .and_then(|t| u32::try_from(t).ok()),
            })
        })
        .collect();
    Ok(EventsPage {
        events,
        rows: rows.len(),
    })
}

/// Reads one `GET /smtp/blockedContacts` answer. An answer with nothing may be `{}`.
pub fn blocked_page(body: &str) -> Result<BlockedPage, String> {
    let (v, rows) = listing(body, "blocked-contacts", "contacts")?;
    let count = v.get("count").and_then(Value::as_u64);
    let contacts = rows
        .iter()
        .filter_map(|r| {
            Some(Blocked {
                email: text(r, "email")?,
                code: r.get("reason").and_then(|x| text(x, "code"))?,
                blocked_at: r
                    .get("blockedAt")
                    .and_then(Value::as_str)
                    .and_then(parse_date),
            })
        })
        .collect();
    Ok(BlockedPage {
        contacts,
        rows: rows.len(),
        count,
    })
}

/// The tags an event's `tag` may carry: one tag, or several joined (Brevo does not
/// document how a mail with several tags is reported), split on anything that cannot
/// be part of an idempotency key.
pub fn tag_parts(tag: &str) -> impl Iterator<Item = &str> {
    tag.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|p| !p.is_empty())
}

/// The days to read events for, from `since` to the day after `now` (Brevo's dates
/// are UTC; a day ahead covers a clock or zone a little ahead of Brevo's), never more
/// than [`MAX_SPAN_DAYS`] apart: the most recent days are kept.
pub fn window(since: NaiveDate, now: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
    let last = (now + chrono::Duration::days(1)).date_naive();
    let earliest = last - chrono::Duration::days(MAX_SPAN_DAYS - 1);
    (since.max(earliest).min(last), last)
}

/// Why a read stopped.
fn unavailable(what: &str, why: impl std::fmt::Display) -> Failure {
    Failure::Unavailable(format!(
        "reading Brevo's {what}: {why}; the next `acaso-mail events` resumes where this one stopped"
    ))
}

impl Brevo {
    /// One GET of a read endpoint; the body of a 2xx answer.
    fn read(&self, what: &str, path_and_query: &str) -> Result<String, Failure> {
        let url = format!("{}{path_and_query}", self.base);
        let mut resp = self
            .get(&url)
            .map_err(|e| unavailable(what, format!("cannot reach Brevo: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| unavailable(what, format!("the answer was cut: {e}")))?;
        match status {
            200..=299 => Ok(body),
            401 | 403 => Err(Failure::Credentials(format!("{status} on {what}"))),
            _ => {
                let start: String = body.chars().take(200).collect();
                Err(unavailable(
                    what,
                    format!("Brevo answered {status} {start}"),
                ))
            }
        }
    }

    /// `GET /smtp/statistics/events` for the days `days`, oldest first, `limit` rows
    /// from `offset`.
    pub fn events(
        &self,
        days: (NaiveDate, NaiveDate),
        limit: u32,
        offset: u64,
    ) -> Result<EventsPage, Failure> {
        let limit = limit.clamp(1, MAX_EVENTS_PAGE);
        let q = format!(
            "/smtp/statistics/events?startDate={}&endDate={}&limit={limit}&offset={offset}&sort=asc",
            days.0, days.1
        );
        let body = self.read("delivery events", &q)?;
        events_page(&body).map_err(|e| unavailable("delivery events", e))
    }

    /// `GET /smtp/blockedContacts`, oldest first, `limit` contacts from `offset`.
    pub fn blocked(&self, limit: u32, offset: u64) -> Result<BlockedPage, Failure> {
        let limit = limit.clamp(1, MAX_BLOCKED_PAGE);
        let q = format!("/smtp/blockedContacts?limit={limit}&offset={offset}&sort=asc");
        let body = self.read("blocked contacts", &q)?;
        blocked_page(&body).map_err(|e| unavailable("blocked contacts", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_events_as_brevo_writes_them() {
        // As seen from Brevo (sendinblue/APIv3-python-library#87): an offset date with
        // milliseconds, an empty tag, and a row without its event.
        let body = r#"{"events": [
            {"email": "a@example.org", "date": "2023-03-27T13:14:56.164-03:00", "subject": "s",
             "messageId": "<1@relay>", "event": "hardBounces", "reason": "550 no such user",
             "tag": "", "ip": "::", "from": "x@example.org", "templateId": 48},
            {"email": "a@example.org", "date": "2023-03-27T13:14:56.164-03:00",
             "messageId": "<1@relay>", "tag": "", "templateId": 48}]}"#;
        let page = events_page(body).expect("page");
        assert_eq!(page.rows, 2);
        assert_eq!(page.events.len(), 1);
        let e = &page.events[0];
        assert_eq!(e.event, "hardBounces");
        assert_eq!(e.tag, None);
        assert_eq!(e.template_id, Some(48));
        assert_eq!(e.date.to_rfc3339(), "2023-03-27T16:14:56.164+00:00");
        assert_eq!(events_page("{}").expect("empty"), EventsPage::default());
        assert!(events_page("[]").is_err());
        assert!(events_page(r#"{"events": 3}"#).is_err());
        assert!(events_page("<html>").is_err());
    }

    #[test]
    fn reads_blocked_contacts_and_the_empty_answer() {
        let body = r#"{"count": 2, "contacts": [
            {"email": "b@example.org", "senderEmail": "s@example.org",
             "reason": {"code": "hardBounce", "message": "Hard bounce"}, "blockedAt": "2026-12-01T10:00:00Z"},
            {"email": "c@example.org", "senderEmail": "s@example.org", "reason": {"message": "?"}, "blockedAt": "x"}]}"#;
        let page = blocked_page(body).expect("page");
        assert_eq!(page.count, Some(2));
        assert_eq!(page.rows, 2);
        assert_eq!(page.contacts.len(), 1);
        assert_eq!(page.contacts[0].code, "hardBounce");
        assert!(page.contacts[0].blocked_at.is_some());
        assert_eq!(blocked_page("{}").expect("empty"), BlockedPage::default());
        assert_eq!(
            blocked_page(r#"{"count": 0}"#).expect("none").count,
            Some(0)
        );
    }

    #[test]
    fn tags_and_windows() {
        let k = "3eefdc0e-676f-4704-8b04-609aa04686c2";
        let joined = format!(r#"["acaso-mail","{k}"]"#);
        assert!(tag_parts(&joined).any(|p| p == k));
        assert!(tag_parts(&format!("acaso-mail, {k}")).any(|p| p == k));
        let now = DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
            .expect("t")
            .to_utc();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("d");
        assert_eq!(
            window(d("2026-12-01"), now),
            (d("2026-12-01"), d("2026-12-04"))
        );
        let (first, last) = window(d("2026-01-01"), now);
        assert_eq!((last - first).num_days(), MAX_SPAN_DAYS - 1);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever Brevo answers, the pages are read or refused, never a panic, and
            /// no more events come out than rows went in.
            #[test]
            fn any_answer_is_read_or_refused(body in ".{0,200}") {
                if let Ok(p) = events_page(&body) { prop_assert!(p.events.len() <= p.rows); }
                if let Ok(p) = blocked_page(&body) { prop_assert!(p.contacts.len() <= p.rows); }
                let _ = parse_date(&body);
            }

            /// Rows of any shape inside a well-formed answer are kept or skipped.
            #[test]
            fn any_row_is_kept_or_skipped(
                email in prop_oneof![Just(Value::Null), "[a-z@.]{0,12}".prop_map(Value::from), any::<i64>().prop_map(Value::from)],
                date in prop_oneof![Just("2026-12-03T10:00:00Z".to_string()), ".{0,25}"],
                event in prop_oneof![Just(Value::Null), "[a-zA-Z]{0,12}".prop_map(Value::from)],
                template in any::<i64>(),
            ) {
                let row = serde_json::json!({"email": email, "date": date, "messageId": "<m>",
                    "event": event, "templateId": template});
                let body = serde_json::json!({"events": [row.clone(), row]}).to_string();
                let p = events_page(&body).map_err(TestCaseError::fail)?;
                prop_assert_eq!(p.rows, 2);
                prop_assert!(p.events.is_empty() || p.events.len() == 2);
            }
        }
    }
}
