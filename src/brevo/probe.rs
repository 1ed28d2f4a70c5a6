//! What `doctor` asks Brevo beyond a run's needs: the account with the answer's `Date`
//! header (to notice a skewed local clock), and sends in Brevo's sandbox.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Account, Brevo, parse_account};
use crate::error::Failure;

/// Brevo's sandbox header: the request is validated and answered 201, nothing is sent.
pub const SANDBOX_HEADER: &str = "X-Sib-Sandbox";

/// A send request turned into a sandbox one: `X-Sib-Sandbox: drop`, and no idempotency
/// key (Brevo might remember a sandboxed key and refuse the real send as a repeat).
pub fn sandboxed(request: &Value) -> Value {
    let mut r = request.clone();
    if let Some(o) = r.as_object_mut() {
        o.remove("tags");
        o.insert(
            "headers".into(),
            serde_json::json!({ SANDBOX_HEADER: "drop" }),
        );
    }
    r
}

/// An HTTP `Date` header (`Sun, 06 Nov 1994 08:49:37 GMT`), if it is one.
pub fn parse_http_date(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(text.trim())
        .ok()
        .map(|d| d.to_utc())
}

impl Brevo {
    /// `GET /account`, with the time Brevo's `Date` header gives, if it sent one.
    pub fn account_dated(&self) -> Result<(Account, Option<DateTime<Utc>>), Failure> {
        let url = format!("{}/account", self.base);
        let mut resp = self
            .get(&url)
            .map_err(|e| {
                Failure::Unavailable(format!(
                    "cannot reach Brevo at {url}: {e}; check that URL (--brevo-url / SENDINBLUE_URL, https://api.brevo.com/v3 unless a stand-in), this host's network, DNS and proxy, and https://status.brevo.com"
                ))
            })?;
        let status = resp.status().as_u16();
        let date = resp
            .headers()
            .get("date")
            .and_then(|d| d.to_str().ok())
            .and_then(parse_http_date);
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        match status {
            200..=299 => parse_account(&body)
                .map(|a| (a, date))
                .map_err(Failure::Unavailable),
            401 | 403 => Err(Failure::Credentials(format!("{status} from {url}"))),
            _ => Err(Failure::Unavailable(format!(
                "Brevo answered {status} to GET {url}: {}",
                body.chars().take(200).collect::<String>()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_http_dates_and_relay() {
        let d = parse_http_date("Thu, 03 Dec 2026 08:41:26 GMT").expect("a date");
        assert_eq!(d.to_rfc3339(), "2026-12-03T08:41:26+00:00");
        assert_eq!(parse_http_date("yesterday"), None);
        let a = parse_account(
            r#"{"plan":[{"type":"free","credits":3}],"relay":{"enabled":false,"data":{}}}"#,
        )
        .expect("parse");
        assert_eq!(a.relay_enabled, Some(false));
        let a = parse_account(r#"{"plan":[{"type":"free","credits":3}]}"#).expect("parse");
        assert_eq!(a.relay_enabled, None);
    }

    #[test]
    fn a_sandboxed_request_carries_no_key() {
        let r =
            serde_json::json!({"templateId": 3, "headers": {"idempotencyKey": "k"}, "tags": ["k"]});
        let s = sandboxed(&r);
        assert_eq!(s["headers"], serde_json::json!({"X-Sib-Sandbox": "drop"}));
        assert_eq!(s["templateId"], 3);
        assert!(s.get("tags").is_none());
    }

    proptest! {
        #[test]
        fn any_date_header_parses_without_panic(s in ".{0,64}") {
            let _ = parse_http_date(&s);
        }
    }
}
