//! Brevo's transactional log (`GET /smtp/emails`): how acaso-mail finds out whether a
//! send whose answer nobody saw went out. Every send is tagged with its idempotency key;
//! the log is searched by recipient and template, and the tag picks the mail out.

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

/// What Brevo's log says of a mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogAnswer {
    /// Brevo sent it.
    Found,
    /// Not in the log.
    Absent,
    /// The log could not be read.
    Unreachable(String),
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
            let resp = self
                .agent
                .get(&url)
                .header("api-key", self.key.expose())
                .header("accept", "application/json")
                .call();
            let mut resp = match resp {
                Ok(r) => r,
                Err(e) => return LogAnswer::Unreachable(format!("cannot reach Brevo's log: {e}")),
            };
            let status = resp.status().as_u16();
            let body = resp.body_mut().read_to_string().unwrap_or_default();
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
    }
}
