//! The Brevo (ex-Sendinblue) API v3 adapter: reading the account's credits and sending
//! one templated mail, with every answer classified into what the drain must do.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use sha2::Digest;

pub mod account;
pub mod events;
mod log;
mod probe;

pub use log::{LogAnswer, LogQuery};
pub use probe::{parse_http_date, sandboxed};

use crate::error::{Failure, Secret};

/// What sends one mail to Brevo: the HTTP client, or a scripted stand-in in unit tests.
/// Sends run on the blocking pool, so a sender is cheap to clone and `Send`.
pub trait Sender: Clone + Send + Sync + 'static {
    /// `POST /smtp/email` with a prepared JSON body, and what became of it.
    fn send(&self, request: &Value) -> SendOutcome;
    /// Whether Brevo's transactional log holds a mail (`GET /smtp/emails`).
    fn find_in_log(&self, query: &LogQuery) -> LogAnswer;
}

impl Sender for Brevo {
    fn send(&self, request: &Value) -> SendOutcome {
        Brevo::send(self, request)
    }
    fn find_in_log(&self, query: &LogQuery) -> LogAnswer {
        Brevo::find_in_log(self, query)
    }
}

/// The Brevo idempotency key of a mail's identity: stable across runs, so a retried
/// send is refused as a repeat while Brevo remembers the key. It has the UUID v4 layout
/// Brevo asks for, its bits taken from a digest of the identity.
pub fn idempotency_key(identity: &str) -> String {
    let d = sha2::Sha256::digest(identity.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

/// A blocking Brevo client (calls run on tokio's blocking pool).
#[derive(Clone)]
pub struct Brevo {
    agent: ureq::Agent,
    base: String,
    key: Secret,
}

/// The email plan of the account.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// The plan type (`free`, `payAsYouGo`, `subscription`, ...).
    pub plan: String,
    /// Remaining email credits (Brevo sends a float).
    pub credits: f64,
    /// `sendLimit` for a counted plan; anything else means no daily limit.
    pub credits_type: String,
    /// `relay.enabled`: whether Brevo lets the account send transactional mail
    /// (`false`: every send will be refused); `None` when the answer does not say.
    pub relay_enabled: Option<bool>,
}

impl Account {
    /// `relay.enabled` in words, for people.
    pub fn relay_words(&self) -> &'static str {
        match self.relay_enabled {
            Some(true) => "enabled",
            Some(false) => "DISABLED (Brevo will refuse every send)",
            None => "not said by Brevo",
        }
    }
}

impl Account {
    /// Whether the plan has no daily sending limit (a paid plan not counted in credits).
    pub fn unlimited(&self) -> bool {
        !self.credits_type.eq_ignore_ascii_case("sendLimit")
    }

    /// Mails that may still be sent: the whole credits, rounded down.
    pub fn sendable(&self) -> u32 {
        if self.credits.is_finite() && self.credits > 0.0 {
            // Saturating float-to-int conversion: huge credits become u32::MAX.
            self.credits.floor() as u32
        } else {
            0
        }
    }
}

/// What became of one send.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// Brevo accepted (queued) it.
    Sent {
        /// Brevo's message id.
        message_id: String,
    },
    /// Brevo refused the idempotency key as a repeat: an earlier attempt was accepted.
    Duplicate,
    /// This mail can never be sent as it is (400 and the like).
    Permanent {
        /// HTTP status.
        status: u16,
        /// Brevo's error code, as sent.
        code: String,
        /// Brevo's error message.
        message: String,
    },
    /// The daily credits are used up: stop sending, keep the rest queued.
    NoCredits,
    /// The key or account is refused (401, 403, or an account-level code such as
    /// `account_under_validation`): nothing will succeed this run.
    Refused {
        /// HTTP status.
        status: u16,
        /// Brevo's code (when it sent one) and message.
        message: String,
    },
    /// An answer about the endpoint, not the mail (404, 405, ...: a wrong URL or a
    /// proxy): no send can succeed this run, and the mail is not to blame.
    Unavailable {
        /// HTTP status.
        status: u16,
        /// Brevo's code (when it sent one) and message, or the start of the body.
        message: String,
    },
    /// Brevo asks us to slow down (429): wait, then go on.
    RateLimited {
        /// How long Brevo asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// Try again later (network trouble, timeout, 408, 5xx).
    Transient {
        /// What happened, for logs and headers.
        reason: String,
        /// Whether Brevo may have accepted it all the same: the request went out and
        /// no answer proved a refusal (a timeout, a connection broken mid-exchange, a
        /// 408 or a 5xx). Only a request that never left is unambiguous.
        ambiguous: bool,
        /// How long Brevo asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct AccountBody {
    #[serde(default)]
    plan: Vec<PlanEntry>,
    /// Read leniently: an odd `relay` must not hide the credits.
    #[serde(default)]
    relay: Option<Value>,
}

#[derive(Deserialize)]
struct PlanEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, rename = "creditsType")]
    credits_type: Option<String>,
    #[serde(default)]
    credits: Option<f64>,
}

/// Plan types that carry email credits, in the order they are preferred.
const EMAIL_PLANS: [&str; 4] = ["subscription", "payAsYouGo", "reseller", "free"];

/// The email plan out of a `GET /account` body: selected by type, never `plan[0]`.
pub fn parse_account(body: &str) -> Result<Account, String> {
    let a: AccountBody =
        serde_json::from_str(body).map_err(|e| format!("unexpected /account answer: {e}"))?;
    let entry = EMAIL_PLANS
        .iter()
        .find_map(|t| a.plan.iter().find(|p| p.kind.eq_ignore_ascii_case(t)))
        .or_else(|| a.plan.iter().find(|p| !p.kind.eq_ignore_ascii_case("sms")))
        .ok_or("the /account answer lists no email plan")?;
    Ok(Account {
        plan: entry.kind.clone(),
        credits: entry.credits.unwrap_or(0.0),
        credits_type: entry
            .credits_type
            .clone()
            .unwrap_or_else(|| "sendLimit".into()),
        relay_enabled: a.relay.and_then(|r| r.get("enabled")?.as_bool()),
    })
}

fn header_secs(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<Duration> {
    let v = resp
        .headers()
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()?;
    (v.is_finite() && v >= 0.0).then(|| Duration::from_secs_f64(v.min(86_400.0)))
}

/// Brevo's error codes about the account or the key, not the mail: a send refused with
/// one would be refused for every mail. Which status carries each is not documented
/// (users report 400 and 402 for `account_under_validation`).
const ACCOUNT_CODES: [&str; 3] = [
    "account_under_validation",
    "unauthorized",
    "permission_denied",
];
/// Error codes about the request's method or format, which every send shares.
const ENDPOINT_CODES: [&str; 2] = ["method_not_allowed", "not_acceptable"];

/// Classifies a non-2xx answer of `POST /smtp/email`. Only a 400 (or 422) about the
/// mail itself parks it; Brevo's definition documents no other refusal of a send, so
/// any other 4xx points at the account, the endpoint or a proxy.
pub fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> SendOutcome {
    let parsed: Option<ErrorBody> = serde_json::from_str(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|b| b.code.clone())
        .unwrap_or_default();
    let message = parsed
        .and_then(|b| b.message)
        .unwrap_or_else(|| body.chars().take(200).collect());
    let code_is = |c: &str| code.eq_ignore_ascii_case(c);
    let said = if code.is_empty() {
        message.clone()
    } else {
        format!("{code}: {message}")
    };
    match status {
        400..=499 if ACCOUNT_CODES.iter().any(|c| code_is(c)) => SendOutcome::Refused {
            status,
            message: said,
        },
        402 => SendOutcome::NoCredits,
        _ if code_is("not_enough_credits") => SendOutcome::NoCredits,
        // duplicate_request is listed beside it in Brevo's codes, undocumented: a repeat
        // either way, settled by the journal and Brevo's log rather than parked.
        _ if (code_is("duplicate_parameter") || code_is("duplicate_request")) && status < 500 => {
            SendOutcome::Duplicate
        }
        401 | 403 => SendOutcome::Refused {
            status,
            message: said,
        },
        429 => SendOutcome::RateLimited { retry_after },
        // Neither proves a refusal: Brevo (or a proxy in front of it) may have queued
        // the mail before answering. Maybe sent: looked up before any resend.
        408 | 500..=599 => SendOutcome::Transient {
            reason: format!("{status} {message}").trim().to_string(),
            ambiguous: true,
            retry_after,
        },
        400 | 422 if !ENDPOINT_CODES.iter().any(|c| code_is(c)) => SendOutcome::Permanent {
            status,
            code,
            message,
        },
        _ => SendOutcome::Unavailable {
            status,
            message: said,
        },
    }
}

impl Brevo {
    /// A client for `base` (e.g. `https://api.brevo.com/v3`) with `key`.
    pub fn new(base: &str, key: Secret, timeout: Duration) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout))
            .user_agent(concat!("acaso-mail/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections_per_host(64)
            .build();
        Brevo {
            agent: ureq::Agent::new_with_config(config),
            base: base.to_string(),
            key,
        }
    }

    /// A GET of `url` with the key, asking for JSON.
    fn get(&self, url: &str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        self.agent
            .get(url)
            .header("api-key", self.key.expose())
            .header("accept", "application/json")
            .call()
    }

    /// `GET /account`: the email plan and its credits. Call it once per run (Brevo
    /// allows 100 such calls an hour).
    pub fn account(&self) -> Result<Account, Failure> {
        self.account_dated().map(|(a, _)| a)
    }

    /// `POST /smtp/email` with a prepared JSON body.
    pub fn send(&self, request: &Value) -> SendOutcome {
        let url = format!("{}/smtp/email", self.base);
        let body = request.to_string();
        let result = self
            .agent
            .post(&url)
            .header("api-key", self.key.expose())
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .send(body.as_bytes());
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                // Refused or unresolvable: the request never reached Brevo. Anything
                // else (timeout, reset) may have reached it.
                let never_sent = match &e {
                    ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
                    ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
                    _ => false,
                };
                let ambiguous = !never_sent;
                return SendOutcome::Transient {
                    reason: format!("network: {e}"),
                    ambiguous,
                    retry_after: None,
                };
            }
        };
        let status = resp.status().as_u16();
        // Retry-After when Brevo sends it; on 429, else the rate-limit window's reset.
        let retry_after = header_secs(&resp, "retry-after").or_else(|| {
            (status == 429)
                .then(|| header_secs(&resp, "x-sib-ratelimit-reset"))
                .flatten()
        });
        let text = match resp.body_mut().read_to_string() {
            Ok(t) => t,
            Err(e) if (200..300).contains(&status) => {
                // Accepted, but the answer was cut: it was sent. Record it as such.
                return SendOutcome::Sent {
                    message_id: format!("(unreadable answer: {e})"),
                };
            }
            Err(_) => String::new(),
        };
        if (200..300).contains(&status) {
            let id = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| {
                    v.get("messageId")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_default();
            return SendOutcome::Sent { message_id: id };
        }
        classify(status, &text, retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_key_is_a_stable_uuid_v4_shape() {
        let k = idempotency_key("id:m-1");
        assert_eq!(k, idempotency_key("id:m-1"));
        assert_ne!(k, idempotency_key("id:m-2"));
        let u = uuid::Uuid::parse_str(&k).expect("a UUID");
        assert_eq!(u.get_version_num(), 4);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
        // The same key the hand-written derivation gave, so mails in flight across an
        // upgrade keep their key.
        assert_eq!(k, "3eefdc0e-676f-4704-8b04-609aa04686c2");
    }

    #[test]
    fn selects_the_email_plan_by_type() {
        let body = r#"{"email":"x","plan":[{"type":"sms","creditsType":"sendLimit","credits":999.536},
            {"type":"free","creditsType":"sendLimit","credits":281,"startDate":1700000000,"extra":true}],"new":1,
            "relay":{"enabled":false,"data":{"userName":"x","relay":"smtp-relay.sendinblue.com","port":587}}}"#;
        let a = parse_account(body).expect("parse");
        assert_eq!(a.plan, "free");
        assert_eq!(a.relay_enabled, Some(false));
        assert_eq!(a.sendable(), 281);
        let frac = r#"{"plan":[{"type":"payAsYouGo","creditsType":"sendLimit","credits":12.75}]}"#;
        assert_eq!(parse_account(frac).expect("parse").sendable(), 12);
        assert_eq!(parse_account(frac).expect("parse").relay_enabled, None);
        let relay = |r: &str| {
            let b = format!(r#"{{"plan":[{{"type":"free","credits":1}}],"relay":{r}}}"#);
            parse_account(&b).expect("parse").relay_enabled
        };
        assert_eq!(relay(r#"{"enabled":true,"data":{"port":587}}"#), Some(true));
        assert_eq!(relay(r#"{"enabled":false}"#), Some(false));
        assert_eq!(relay("{}"), None);
        assert_eq!(relay(r#"{"enabled":"yes"}"#), None);
        assert_eq!(relay("null"), None);
        assert!(parse_account(r#"{"plan":[{"type":"sms","credits":5}]}"#).is_err());
        assert!(parse_account("not json").is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever Brevo answers to a send, it is classified, never a panic; an
            /// answer that stops the run is never one that parks the mail.
            #[test]
            fn any_answer_is_classified(status in 300u16..600, body in ".{0,80}", code in "[a-zA-Z_]{0,30}") {
                let json = format!(r#"{{"code":"{code}","message":"m"}}"#);
                for b in [body.as_str(), json.as_str()] {
                    match classify(status, b, None) {
                        SendOutcome::Permanent { status, .. } => prop_assert!(status == 400 || status == 422),
                        SendOutcome::Sent { .. } => prop_assert!(false, "a refusal read as sent"),
                        _ => {}
                    }
                }
            }

            /// Any `relay` Brevo sends, the credits are still read; only a boolean
            /// `enabled` says anything.
            #[test]
            fn any_relay_leaves_the_credits_readable(enabled in prop_oneof![
                Just("true".to_string()), Just("false".to_string()), Just("null".to_string()),
                "[1-9][0-9]{0,2}", "\"[a-z]{0,5}\"", Just("{}".to_string()), Just("[1]".to_string())]) {
                let body = format!(r#"{{"plan":[{{"type":"free","credits":3}}],"relay":{{"enabled":{enabled}}}}}"#);
                let a = parse_account(&body).map_err(TestCaseError::fail)?;
                prop_assert_eq!(a.sendable(), 3);
                let want = match enabled.as_str() { "true" => Some(true), "false" => Some(false), _ => None };
                prop_assert_eq!(a.relay_enabled, want);
            }
        }
    }

    #[test]
    fn classifies_every_documented_answer() {
        let e = |code: &str| format!(r#"{{"code":"{code}","message":"m"}}"#);
        assert_eq!(
            classify(402, &e("not_enough_credits"), None),
            SendOutcome::NoCredits
        );
        assert_eq!(
            classify(400, &e("NOT_ENOUGH_CREDITS"), None),
            SendOutcome::NoCredits
        );
        assert_eq!(
            classify(400, &e("duplicate_parameter"), None),
            SendOutcome::Duplicate
        );
        assert!(matches!(
            classify(400, &e("INVALID_PARAMETER"), None),
            SendOutcome::Permanent { status: 400, .. }
        ));
        assert!(
            matches!(classify(400, &e("brand_new_code"), None), SendOutcome::Permanent { ref code, .. } if code == "brand_new_code")
        );
        assert!(matches!(
            classify(401, &e("unauthorized"), None),
            SendOutcome::Refused { status: 401, .. }
        ));
        assert!(matches!(
            classify(403, &e("permission_denied"), None),
            SendOutcome::Refused { status: 403, .. }
        ));
        // Account-level codes stop the run whatever status carries them.
        for status in [400, 402, 403] {
            for code in [
                "account_under_validation",
                "UNAUTHORIZED",
                "permission_denied",
            ] {
                let got = classify(status, &e(code), None);
                assert!(
                    matches!(got, SendOutcome::Refused { status: s, ref message } if s == status && message.contains(code)),
                    "{status} {code}: {got:?}"
                );
            }
        }
        // Answers about the endpoint, not the mail: nothing parked.
        for (status, body) in [
            (404, r#"{"code":"not_found","message":"Invalid route"}"#),
            (404, "<html>Not Found</html>"),
            (405, &e("method_not_allowed")),
            (400, &e("method_not_allowed")),
            (406, &e("not_acceptable")),
            (410, ""),
        ] {
            let got = classify(status, body, None);
            assert!(
                matches!(got, SendOutcome::Unavailable { status: s, .. } if s == status),
                "{status} {body}: {got:?}"
            );
        }
        assert!(
            matches!(classify(404, r#"{"code":"not_found","message":"Invalid route"}"#, None), SendOutcome::Unavailable { ref message, .. } if message == "not_found: Invalid route")
        );
        // Codes about the mail itself park it.
        for code in [
            "invalid_parameter",
            "missing_parameter",
            "out_of_range",
            "bad_request",
        ] {
            assert!(
                matches!(classify(400, &e(code), None), SendOutcome::Permanent { ref code, .. } if !code.is_empty()),
                "{code}"
            );
        }
        assert!(matches!(
            classify(422, &e("unprocessable_entity"), None),
            SendOutcome::Permanent { status: 422, .. }
        ));
        let wait = Some(Duration::from_secs(7));
        assert!(
            matches!(classify(429, "", wait), SendOutcome::RateLimited { retry_after: Some(d) } if d.as_secs() == 7)
        );
        // A 5xx or a 408 proves no refusal: maybe sent.
        for status in [408, 500, 502, 503, 504] {
            assert!(matches!(
                classify(status, "<html>bad gateway</html>", None),
                SendOutcome::Transient {
                    ambiguous: true,
                    ..
                }
            ));
        }
    }
}
