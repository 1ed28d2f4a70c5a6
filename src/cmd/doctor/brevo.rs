//! Brevo: the key, the plan and its credits, the sending account (`relay.enabled`),
//! the local clock against Brevo's `Date` header, and (`--templates`) each queued
//! template sent once in Brevo's sandbox.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::Check;
use crate::brevo::{Brevo, SendOutcome, sandboxed};
use crate::config::Config;
use crate::error::{EXIT_CREDENTIALS, EXIT_FAILURE, EXIT_UNAVAILABLE, EXIT_USAGE, Failure};
use crate::mail;
use crate::mailbox::{Rabbit, Which};

/// A skew of the local clock beyond this breaks the day's arithmetic.
pub const MAX_SKEW_SECS: i64 = 60;

/// A Brevo client for the configured key, or the failed check that says there is none.
pub fn client(cfg: &Config) -> Result<Brevo, Box<Check>> {
    match cfg.require_api_key() {
        Ok(key) => Ok(Brevo::new(&cfg.brevo_url, key.clone(), cfg.timeout)),
        Err(e) => Err(Box::new(Check::fail(
            "brevo.key",
            EXIT_USAGE,
            "no Brevo API key is configured",
            e.to_string(),
        ))),
    }
}

/// The checks that one `GET /account` answers (blocking: run it off the runtime), and
/// whether the key was accepted.
pub fn account_checks(cfg: &Config) -> (Vec<Check>, bool) {
    let brevo = match client(cfg) {
        Ok(b) => b,
        Err(c) => return (vec![*c], false),
    };
    let asked = Utc::now();
    let answer = brevo.account_dated();
    let answered = Utc::now();
    let (account, date) = match answer {
        Ok(a) => a,
        Err(Failure::Credentials(why)) => {
            return (
                vec![Check::fail(
                    "brevo.key",
                    EXIT_CREDENTIALS,
                    format!("Brevo refused the API key: {why}"),
                    "set the key of Brevo's SMTP & API page in SENDINBLUE_API_KEY / --api-key (or its file)",
                )],
                false,
            );
        }
        Err(e) => {
            return (
                vec![Check::fail(
                    "brevo.key",
                    EXIT_UNAVAILABLE,
                    format!("Brevo could not be asked: {e}"),
                    "check SENDINBLUE_URL / --brevo-url and this host's route to it (curl -sI URL/account)",
                )],
                false,
            );
        }
    };
    let mut out = vec![Check::pass(
        "brevo.key",
        format!("{}: the API key is accepted", cfg.brevo_url),
    )];
    out.push(Check::pass(
        "brevo.plan",
        if account.unlimited() {
            format!("{} plan, no daily limit", account.plan)
        } else {
            format!("{} plan, {} credit(s) left", account.plan, account.credits)
        },
    ));
    out.push(match account.relay_enabled {
        Some(true) => Check::pass("brevo.relay", "the account may send transactional mail (relay.enabled)"),
        None => Check::pass("brevo.relay", "Brevo's answer does not say whether the account may send (no relay.enabled)"),
        Some(false) => Check::fail(
            "brevo.relay",
            EXIT_CREDENTIALS,
            "relay.enabled is false: Brevo refuses this account's transactional mail",
            "activate transactional email (SMTP & API) for the account in Brevo, or ask Brevo's support",
        ),
    });
    out.push(clock(date, asked, answered));
    (out, true)
}

/// The local clock against Brevo's `Date` header, taken as read halfway through the
/// request.
fn clock(date: Option<DateTime<Utc>>, asked: DateTime<Utc>, answered: DateTime<Utc>) -> Check {
    let Some(date) = date else {
        return Check::pass("clock", "Brevo's answer had no Date header: not compared");
    };
    let mid = asked + (answered - asked) / 2;
    let skew = (mid - date).num_seconds();
    let detail = format!(
        "this host's clock is {} Brevo's by {}s (Date: {})",
        if skew >= 0 { "ahead of" } else { "behind" },
        skew.abs(),
        date.to_rfc3339()
    );
    if skew.abs() > MAX_SKEW_SECS {
        Check::fail(
            "clock",
            EXIT_FAILURE,
            format!(
                "{detail}: over {MAX_SKEW_SECS}s, the day's arithmetic (deadlines, Brevo's reset) is off"
            ),
            "synchronise the clock (timedatectl set-ntp true; chronyc tracking)",
        )
    } else {
        Check::pass("clock", detail)
    }
}

/// `--templates`: each template id among the first `--scan` queued mails, sent once in
/// Brevo's sandbox with the params of the first mail that uses it.
pub async fn templates(cfg: &Config, can: bool) -> Vec<Check> {
    if !can {
        return vec![Check::fail(
            "templates",
            EXIT_FAILURE,
            "not checked: the broker or the Brevo key failed above",
            "fix the checks above first",
        )];
    }
    let firsts = match first_of_each_template(cfg).await {
        Ok(f) => f,
        Err(e) => {
            return vec![Check::fail(
                "templates",
                crate::error::exit_code_of(&e),
                format!("the queued mails could not be read: {e:#}"),
                "run doctor again once the run holding the queue is done",
            )];
        }
    };
    if firsts.is_empty() {
        return vec![Check::pass(
            "templates",
            "no readable mail queued: no template to try",
        )];
    }
    let brevo = match client(cfg) {
        Ok(b) => b,
        Err(c) => return vec![*c],
    };
    let mut out = Vec::new();
    for (template, request) in firsts {
        let b = brevo.clone();
        let sent = tokio::task::spawn_blocking(move || b.send(&sandboxed(&request))).await;
        let name = format!("template.{template}");
        out.push(match sent {
            Ok(SendOutcome::Sent { .. }) => Check::pass(
                &name,
                format!("template {template}: Brevo's sandbox accepted it with a queued mail's params (nothing sent)"),
            ),
            Ok(SendOutcome::Permanent { status, code, message }) => Check::fail(
                &name,
                EXIT_FAILURE,
                format!("template {template}: Brevo refused it: {status} {code}: {message}"),
                "fix the template in Brevo (exists, active, its parameters) or the producer's params: until then its mails are parked as brevo_rejected",
            ),
            Ok(SendOutcome::Refused { status, message }) => Check::fail(
                &name,
                EXIT_CREDENTIALS,
                format!("template {template}: Brevo refused the key: {status} {message}"),
                "check the API key's permissions in Brevo",
            ),
            Ok(other) => Check::fail(
                &name,
                EXIT_UNAVAILABLE,
                format!("template {template}: no verdict from the sandbox: {other:?}"),
                "run doctor --templates again later",
            ),
            Err(e) => Check::fail(&name, EXIT_FAILURE, format!("template {template}: {e}"), "run doctor --templates again"),
        });
    }
    out
}

/// The first `--scan` queued mails, read without consuming anything, under the run lock
/// when a state exists (a mail held by this read is hidden from a drain); without a
/// state no run can be going, and nothing is created.
pub async fn read_head(cfg: &Config) -> anyhow::Result<Vec<crate::mailbox::Envelope>> {
    let _lock = if cfg.state_url.is_some() || cfg.state_dir.is_dir() {
        Some(crate::state::lock(cfg.state(), cfg.lock_wait)?)
    } else {
        None
    };
    let mailbox = Rabbit::open_existing(cfg).await?;
    let browsed = mailbox.browse(Which::Main, cfg.scan).await;
    mailbox.close().await;
    browsed
}

/// The send request of the first readable mail of each template among the first
/// `--scan` queued ones.
async fn first_of_each_template(cfg: &Config) -> anyhow::Result<BTreeMap<u32, serde_json::Value>> {
    let mut firsts = BTreeMap::new();
    for b in read_head(cfg).await? {
        if let Ok(m) = mail::parse(&b.body, cfg.tz) {
            firsts
                .entry(m.template_id)
                .or_insert_with(|| m.brevo_request("doctor-sandbox"));
        }
    }
    Ok(firsts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skew_over_a_minute_fails_either_way() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).expect("t").to_utc();
        let (a, b) = (t("2026-12-03T10:00:00Z"), t("2026-12-03T10:00:02Z"));
        assert!(clock(Some(t("2026-12-03T10:00:01Z")), a, b).ok);
        assert!(clock(Some(t("2026-12-03T10:01:01Z")), a, b).ok);
        let late = clock(Some(t("2026-12-03T10:01:02Z")), a, b);
        assert!(
            !late.ok && late.detail.contains("behind Brevo's by 61s"),
            "{}",
            late.detail
        );
        let early = clock(Some(t("2026-12-03T09:58:00Z")), a, b);
        assert!(
            !early.ok && early.detail.contains("ahead of"),
            "{}",
            early.detail
        );
        assert!(clock(None, a, b).ok);
    }
}
