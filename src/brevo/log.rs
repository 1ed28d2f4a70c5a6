//! Brevo's transactional log (`GET /smtp/emails`): how acaso-mail finds out whether a
//! send whose answer nobody saw went out. Every send is tagged with its idempotency key;
//! the log is searched by recipient and template, and the tag picks the mail out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::Brevo;

/// One mail looked for in Brevo's transactional log: its recipient and template narrow
/// the search, its tag (the idempotency key, sent with every attempt) finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// The first recipient.
    pub email: String,
    /// The template.
    pub template_id: u32,
    /// The tag the mail was sent with.
    pub tag: String,
    /// The first and last day to search (the log takes at most a month).
    pub days: (chrono::NaiveDate, chrono::NaiveDate),
}

impl LogQuery {
    /// The days to search for a mail first attempted at `since`, asked at `now`: from
    /// the day before `since` to the day after `now`, but never more than
    /// 27 days apart (Brevo refuses dates over a month apart); the most recent
    /// days are kept, as the log keeps only the last 30 days.
    pub fn days(since: DateTime<Utc>, now: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
        let last = (now + chrono::Duration::days(1)).date_naive();
        let first = (since - chrono::Duration::days(1)).date_naive();
        let earliest = last - chrono::Duration::days(MAX_SPAN_DAYS);
        (first.max(earliest).min(last), last)
    }
}

/// The most days a look-up spans: "at most one month apart", for any month.
pub const MAX_SPAN_DAYS: i64 = 27;

/// What Brevo's log says of a mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogAnswer {
    /// Brevo sent it.
    Found,
    /// Not in the log.
    Absent,
    /// The log cannot tell, and asking again will not help (it lists mail this version
    /// cannot tell apart, or answers what it should not).
    Unreachable(String),
    /// The log did not answer this time (429, 5xx, network): ask again later.
    Later {
        /// What happened.
        why: String,
        /// How long Brevo asked to wait, if it said.
        retry_after: Option<Duration>,
    },
}

/// Brevo documents `GET /smtp/emails` at 2 requests a second.
const MIN_GAP: Duration = Duration::from_millis(500);
/// The longest a look-up waits for Brevo's rate limit to reset; longer: ask later.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// When the next log call may go out (all look-ups of the process share Brevo's limit).
static NEXT_CALL: Mutex<Option<Instant>> = Mutex::new(None);

/// Waits for the next call's turn; `Err` with the wait when it is too long.
fn pace() -> Result<(), Duration> {
    let next = *NEXT_CALL.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    if let Some(at) = next
        && at > now
    {
        if at - now > MAX_WAIT {
            return Err(at - now);
        }
        std::thread::sleep(at - now);
    }
    Ok(())
}

/// A call ended (answered or not): the next one goes at least [`MIN_GAP`] later, so
/// that Brevo sees the calls that far apart whatever the network did to this one.
fn called() {
    let until = Instant::now() + MIN_GAP;
    let mut next = NEXT_CALL.lock().unwrap_or_else(|p| p.into_inner());
    *next = Some(next.map_or(until, |n| n.max(until)));
}

/// Brevo's rate-limit headers: with none remaining, no call before the reset.
fn note_rate_limit(resp: &ureq::http::Response<ureq::Body>) {
    let header = |n: &str| -> Option<f64> {
        let v = resp
            .headers()
            .get(n)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()?;
        (v.is_finite() && v >= 0.0).then_some(v)
    };
    if header("x-sib-ratelimit-remaining").is_some_and(|r| r < 1.0)
        && let Some(reset) = header("x-sib-ratelimit-reset")
    {
        let until = Instant::now() + Duration::from_secs_f64(reset.min(86_400.0));
        let mut next = NEXT_CALL.lock().unwrap_or_else(|p| p.into_inner());
        *next = Some(next.map_or(until, |n| n.max(until)));
    }
}

/// A query-string value, percent-encoded.
fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Entries asked for per page, and pages read at most (Brevo allows 100 log calls an
/// hour; a recipient with more mail of one template than this cannot be told apart).
const PAGE: usize = 100;
const MAX_PAGES: usize = 3;

/// What one page of `GET /smtp/emails` says about a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// A mail with the tag is listed.
    Found,
    /// It is not on this page; `total` mails match the query in all.
    NotHere {
        /// Mails matching the query, over every page.
        total: usize,
        /// Mails on this page.
        listed: usize,
    },
    /// A matching mail carries only the `acaso-mail` tag: sent by a version that did not
    /// tag sends with their key, so this one cannot be told apart.
    Untagged,
}

/// Reads one page of a `GET /smtp/emails` answer for `tag`.
pub fn log_page(body: &str, tag: &str) -> Result<Page, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("unexpected log answer: {e}"))?;
    let total = v
        .get("count")
        .and_then(Value::as_u64)
        .and_then(|c| usize::try_from(c).ok());
    let emails = match (
        v.get("transactionalEmails").and_then(Value::as_array),
        total,
    ) {
        (Some(list), _) => list.as_slice(),
        // No match may come as `{}`, with neither field.
        (None, Some(0) | None) if v.as_object().is_some_and(|o| !o.contains_key("count")) => &[],
        (None, Some(0)) => &[],
        (None, _) => return Err("the log answer lists no transactionalEmails".into()),
    };
    let tags = |e: &Value| -> Vec<String> {
        e.get("tags")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    if emails.iter().any(|e| tags(e).iter().any(|t| t == tag)) {
        return Ok(Page::Found);
    }
    if emails.iter().any(|e| tags(e) == ["acaso-mail"]) {
        return Ok(Page::Untagged);
    }
    Ok(Page::NotHere {
        total: total.unwrap_or(emails.len()),
        listed: emails.len(),
    })
}

impl Brevo {
    /// `GET /smtp/emails`: whether the log lists the mail, reading up to three pages.
    /// Brevo allows 100 such calls an hour: only for the few mails whose outcome is
    /// unknown.
    pub fn find_in_log(&self, q: &LogQuery) -> LogAnswer {
        let mut seen = 0usize;
        for page in 0..MAX_PAGES {
            let url = format!(
                "{}/smtp/emails?email={}&templateId={}&startDate={}&endDate={}&limit={PAGE}&offset={}&sort=desc",
                self.base,
                query_value(&q.email),
                q.template_id,
                q.days.0,
                q.days.1,
                page * PAGE
            );
            if let Err(wait) = pace() {
                return LogAnswer::Later {
                    why: "Brevo's rate limit for its log is spent".into(),
                    retry_after: Some(wait),
                };
            }
            let resp = self.get(&url);
            called();
            let mut resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    return LogAnswer::Later {
                        why: format!("cannot reach Brevo's log: {e}"),
                        retry_after: None,
                    };
                }
            };
            note_rate_limit(&resp);
            let status = resp.status().as_u16();
            let retry_after = super::header_secs(&resp, "retry-after").or_else(|| {
                (status == 429)
                    .then(|| super::header_secs(&resp, "x-sib-ratelimit-reset"))
                    .flatten()
            });
            let body = match resp.body_mut().read_to_string() {
                Ok(b) => b,
                Err(e) => {
                    return LogAnswer::Later {
                        why: format!("Brevo's log answer was cut: {e}"),
                        retry_after: None,
                    };
                }
            };
            if status == 429 || status == 408 || status >= 500 {
                return LogAnswer::Later {
                    why: format!("Brevo's log answered {status}"),
                    retry_after,
                };
            }
            if !(200..300).contains(&status) {
                return LogAnswer::Unreachable(format!("Brevo's log answered {status}"));
            }
            match log_page(&body, &q.tag) {
                Ok(Page::Found) => return LogAnswer::Found,
                Ok(Page::Untagged) => {
                    return LogAnswer::Unreachable(
                        "the log lists mail to this recipient sent without a key tag (by an older acaso-mail)".into(),
                    );
                }
                Ok(Page::NotHere { total, listed }) => {
                    seen += listed;
                    if seen >= total || listed == 0 {
                        return LogAnswer::Absent;
                    }
                }
                Err(e) => return LogAnswer::Unreachable(e),
            }
        }
        LogAnswer::Unreachable(format!(
            "more than {} mails of this template to this recipient in the log",
            PAGE * MAX_PAGES
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_searched_by_tag_and_queries_are_encoded() {
        let body = r#"{"count": 2, "transactionalEmails": [
            {"email": "a+b@example.org", "templateId": 9, "messageId": "<1@x>", "tags": ["acaso-mail", "k-1"]},
            {"email": "a+b@example.org", "templateId": 9, "messageId": "<2@x>"}]}"#;
        assert_eq!(log_page(body, "k-1"), Ok(Page::Found));
        assert_eq!(
            log_page(body, "k-2"),
            Ok(Page::NotHere {
                total: 2,
                listed: 2
            })
        );
        assert_eq!(
            log_page(r#"{"count": 0}"#, "k-1"),
            Ok(Page::NotHere {
                total: 0,
                listed: 0
            })
        );
        // A page that says there is mail but lists none is no proof of absence.
        assert!(log_page(r#"{"count": 3}"#, "k-1").is_err());
        assert!(log_page("<html>", "k-1").is_err());
        let old =
            r#"{"count": 1, "transactionalEmails": [{"email": "a@b.c", "tags": ["acaso-mail"]}]}"#;
        assert_eq!(log_page(old, "k-1"), Ok(Page::Untagged));
        assert_eq!(query_value("a+b@example.org"), "a%2Bb%40example.org");
        // No match, as Brevo may say it: an empty object.
        assert_eq!(
            log_page("{}", "k-1"),
            Ok(Page::NotHere {
                total: 0,
                listed: 0
            })
        );
    }

    #[test]
    fn the_days_searched_stay_within_a_month() {
        let t = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("date")
                .with_timezone(&Utc)
        };
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("day");
        let now = t("2026-12-03T12:00:00Z");
        assert_eq!(
            LogQuery::days(t("2026-12-03T10:00:00Z"), now),
            (d("2026-12-02"), d("2026-12-04"))
        );
        // A doubt two months old: the most recent 27 days.
        let (first, last) = LogQuery::days(t("2026-10-01T10:00:00Z"), now);
        assert_eq!((last - first).num_days(), MAX_SPAN_DAYS);
        assert_eq!(last, d("2026-12-04"));
    }
}
