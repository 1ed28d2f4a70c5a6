//! `--idempotency-probe --to ADDRESS`: one real mail sent twice with the same key.
//! It passes only when Brevo refuses the second (`duplicate_parameter`); the result
//! and its date are kept in the state, where `stats` and the drain read it.

use serde_json::{Value, json};

use super::Check;
use super::brevo::client;
use crate::brevo::{Brevo, SendOutcome, idempotency_key};
use crate::config::Config;
use crate::error::{EXIT_CREDENTIALS, EXIT_FAILURE, EXIT_UNAVAILABLE, EXIT_USAGE};
use crate::mail;
use crate::state::Store;

/// What the probe sends.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The operator's own address.
    pub to: String,
    /// The template, else that of the first queued mail.
    pub template: Option<u32>,
}

const NAME: &str = "idempotency-probe";

/// Runs the probe when the key and (for a template from the queue) the broker passed.
pub async fn run(cfg: &Config, p: &Probe, key_ok: bool, broker_ok: bool) -> Check {
    if !mail::is_plausible_email(&p.to) {
        return Check::fail(
            NAME,
            EXIT_USAGE,
            format!("--to {} is not an email address", p.to),
            "give your own address: --to you@example.org",
        );
    }
    if !key_ok {
        return Check::fail(
            NAME,
            EXIT_FAILURE,
            "not run: the Brevo key check failed",
            "fix brevo.key first",
        );
    }
    let (template, params) = match p.template {
        Some(t) => (t, None),
        None if !broker_ok => {
            return Check::fail(
                NAME,
                EXIT_FAILURE,
                "not run: no template given and the queue cannot be read",
                "give one with --template ID, or fix the broker first",
            );
        }
        None => match first_queued(cfg).await {
            Ok(Some(tp)) => tp,
            Ok(None) => {
                return Check::fail(
                    NAME,
                    EXIT_USAGE,
                    "not run: no template given and no readable mail is queued",
                    "give a template with --template ID",
                );
            }
            Err(e) => {
                return Check::fail(
                    NAME,
                    crate::error::exit_code_of(&e),
                    format!("not run: the queue could not be read: {e:#}"),
                    "give a template with --template ID",
                );
            }
        },
    };
    let brevo = match client(cfg) {
        Ok(b) => b,
        Err(c) => return *c,
    };
    crate::warn::notice(&format!(
        "the idempotency probe sends one real mail (template {template}) to {}, twice with the same key: it costs one credit (two if Brevo accepts the repeat)",
        p.to
    ));
    let key = idempotency_key(&format!("doctor-probe:{:032x}", rand::random::<u128>()));
    let request = request(template, params, &p.to, &key);
    let sends = tokio::task::spawn_blocking(move || send_twice(&brevo, &request)).await;
    let (first, second) = match sends {
        Ok(s) => s,
        Err(e) => return Check::fail(NAME, EXIT_FAILURE, format!("{e}"), "run it again"),
    };
    let verdict = judge(&first, second.as_ref(), &p.to);
    if let Some(passed) = verdict.recorded {
        let kept = Store::open(&cfg.state_dir)
            .and_then(|s| s.record_probe(cfg.now(), passed, &verdict.check.detail));
        if let Err(e) = kept {
            let mut c = verdict.check;
            c.detail
                .push_str(&format!(" (NOT recorded in the state: {e:#})"));
            return c;
        }
    }
    verdict.check
}

/// The first readable queued mail's template and params, read without consuming.
async fn first_queued(cfg: &Config) -> anyhow::Result<Option<(u32, Option<Value>)>> {
    Ok(super::brevo::read_head(cfg)
        .await?
        .iter()
        .find_map(|b| mail::parse(&b.body, cfg.tz).ok())
        .map(|m| {
            let params = (!m.params.is_empty()).then_some(Value::Object(m.params));
            (m.template_id, params)
        }))
}

/// The probe's send request: the template, its params, the operator's address, the key.
fn request(template: u32, params: Option<Value>, to: &str, key: &str) -> Value {
    let mut r = json!({
        "templateId": template,
        "to": [{"email": to}],
        "headers": mail::key_headers(key),
        "tags": ["acaso-mail-doctor", key],
    });
    if let (Some(p), Some(o)) = (params.filter(|p| !p.is_null()), r.as_object_mut()) {
        o.insert("params".into(), p);
    }
    r
}

/// The two sends; the second only when the first was accepted.
fn send_twice(brevo: &Brevo, request: &Value) -> (SendOutcome, Option<SendOutcome>) {
    let first = brevo.send(request);
    if !matches!(first, SendOutcome::Sent { .. }) {
        return (first, None);
    }
    (first, Some(brevo.send(request)))
}

struct Verdict {
    check: Check,
    /// Whether the probe passed, when it came to a conclusion worth keeping.
    recorded: Option<bool>,
}

fn judge(first: &SendOutcome, second: Option<&SendOutcome>, to: &str) -> Verdict {
    let inconclusive = |code: u8, what: String| Verdict {
        check: Check::fail(
            NAME,
            code,
            format!("no conclusion: {what}"),
            "run the probe again later",
        ),
        recorded: None,
    };
    match (first, second) {
        (SendOutcome::Sent { .. }, Some(SendOutcome::Duplicate)) => Verdict {
            check: Check::pass(
                NAME,
                format!(
                    "Brevo refused the repeated key (duplicate_parameter): one mail sent to {to}; the drain relies on the key"
                ),
            ),
            recorded: Some(true),
        },
        (SendOutcome::Sent { .. }, Some(SendOutcome::Sent { .. })) => Verdict {
            check: Check::fail(
                NAME,
                EXIT_FAILURE,
                format!(
                    "Brevo accepted the repeated key: two mails sent to {to}; from now on the drain settles every unseen answer through Brevo's log before any resend"
                ),
                "ask Brevo's support why idempotencyKey is not honoured; run the probe again once they answer",
            ),
            recorded: Some(false),
        },
        (SendOutcome::Refused { status, message }, _) => Verdict {
            check: Check::fail(
                NAME,
                EXIT_CREDENTIALS,
                format!("Brevo refused the key: {status} {message}"),
                "check the API key's permissions in Brevo",
            ),
            recorded: None,
        },
        (
            SendOutcome::Permanent {
                status,
                code,
                message,
            },
            _,
        ) => {
            let mut v = inconclusive(
                EXIT_FAILURE,
                format!("the first send was refused: {status} {code}: {message}"),
            );
            v.check.hint =
                Some("give a template that exists and needs no parameters: --template ID".into());
            v
        }
        (SendOutcome::Sent { .. }, Some(other)) => inconclusive(
            EXIT_UNAVAILABLE,
            format!("the repeat got neither a refusal nor an acceptance: {other:?}"),
        ),
        (other, _) => inconclusive(
            EXIT_UNAVAILABLE,
            format!("the first send was not accepted: {other:?}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refused_repeat_passes() {
        let sent = SendOutcome::Sent {
            message_id: "m".into(),
        };
        let pass = judge(&sent, Some(&SendOutcome::Duplicate), "me@example.org");
        assert_eq!((pass.check.ok, pass.recorded), (true, Some(true)));
        let twice = judge(&sent, Some(&sent), "me@example.org");
        assert_eq!((twice.check.ok, twice.recorded), (false, Some(false)));
        let lost = SendOutcome::Transient {
            reason: "500".into(),
            ambiguous: false,
            retry_after: None,
        };
        let maybe = judge(&sent, Some(&lost), "me@example.org");
        assert_eq!(
            (maybe.check.ok, maybe.recorded, maybe.check.code),
            (false, None, 4)
        );
        let no = judge(&lost, None, "me@example.org");
        assert_eq!((no.check.ok, no.recorded), (false, None));
    }

    #[test]
    fn the_request_carries_the_key_and_params_only_when_given() {
        let r = request(7, Some(json!({"A": 1})), "me@example.org", "k");
        assert_eq!(r["headers"]["idempotencyKey"], "k");
        assert_eq!(r["params"]["A"], 1);
        assert!(
            request(7, None, "me@example.org", "k")
                .get("params")
                .is_none()
        );
    }
}
