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

/// Whether a `GET /smtp/emails` answer lists a mail with `tag`.
pub fn log_lists(body: &str, tag: &str) -> Result<bool, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("unexpected log answer: {e}"))?;
    let emails = v
        .get("transactionalEmails")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    Ok(emails.iter().any(|e| {
        e.get("tags")
            .and_then(Value::as_array)
            .is_some_and(|t| t.iter().any(|x| x.as_str() == Some(tag)))
    }))
}

impl Brevo {
    /// `GET /smtp/emails`: whether the log lists the mail. Brevo allows 100 such calls
    /// an hour: only for the few mails whose outcome is unknown.
    pub fn find_in_log(&self, q: &LogQuery) -> LogAnswer {
        let url = format!(
            "{}/smtp/emails?email={}&templateId={}&startDate={}&endDate={}&limit=100&sort=desc",
            self.base,
            query_value(&q.email),
            q.template_id,
            q.days.0,
            q.days.1
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
        match log_lists(&body, &q.tag) {
            Ok(true) => LogAnswer::Found,
            Ok(false) => LogAnswer::Absent,
            Err(e) => LogAnswer::Unreachable(e),
        }
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
        assert_eq!(log_lists(body, "k-1"), Ok(true));
        assert_eq!(log_lists(body, "k-2"), Ok(false));
        assert_eq!(log_lists(r#"{"count": 0}"#, "k-1"), Ok(false));
        assert!(log_lists("<html>", "k-1").is_err());
        assert_eq!(query_value("a+b@example.org"), "a%2Bb%40example.org");
    }
}
