//! `doctor`: checks every dependency of the configured deployment, each bounded by
//! `--timeout`, and prints a checklist: what was checked, the result, and for a
//! failure the one thing to do. It changes nothing (no queue is declared that does not
//! exist, the state is read read-only) and sends no mail, unless asked: `--templates`
//! sends each queued template once in Brevo's sandbox, `--idempotency-probe` sends one
//! real mail twice with the same key.
//!
//! The exit code is that of the first failed check's area elsewhere: 2 for a queue that
//! does not exist, 4 for a service that cannot be reached, 5 for refused credentials,
//! 6 for a held lock, 1 for the rest.

use anyhow::Result;
use schemars::JsonSchema;
use serde::Serialize;

use crate::config::Config;
use crate::error::{EXIT_FAILURE, EXIT_OK, Failure};
use crate::output::Report;

mod brevo;
mod local;
mod probe;
mod queue;

pub use probe::Probe;

/// One check.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Check {
    /// What was checked (`broker`, `queue`, `brevo.key`, `clock`, ...).
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// For a failure, the one thing to do (null when it passed).
    pub hint: Option<String>,
    /// The exit code this failure gives (0 when it passed).
    #[serde(skip)]
    pub code: u8,
}

impl Check {
    /// A check that passed.
    pub fn pass(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            hint: None,
            code: EXIT_OK,
        }
    }

    /// A check that failed, with the exit code of its area and what to do.
    pub fn fail(name: &str, code: u8, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: false,
            detail: detail.into(),
            hint: Some(hint.into()),
            code: if code == EXIT_OK { EXIT_FAILURE } else { code },
        }
    }
}

/// What `doctor` reports.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "acaso-mail doctor --json")]
pub struct Doctor {
    /// Every check, in the order they were made.
    pub checks: Vec<Check>,
}

/// What `doctor` is asked to do beyond the checks.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// Send each template found among the first `--scan` queued mails in the sandbox.
    pub templates: bool,
    /// Prove that Brevo refuses a repeated idempotency key (one real mail).
    pub probe: Option<Probe>,
}

/// Runs `doctor`.
pub async fn run(cfg: &Config, args: Args) -> Result<Report> {
    // The broker, Brevo and the Pushgateway are asked at once: on a healthy setup the
    // whole run costs about one round trip of the slowest.
    let brevo_cfg = cfg.clone();
    let brevo = tokio::task::spawn_blocking(move || brevo::account_checks(&brevo_cfg));
    let gateway_cfg = cfg.clone();
    let gateway = tokio::task::spawn_blocking(move || local::pushgateway(&gateway_cfg));
    let mut checks = queue::checks(cfg).await;
    let (brevo_checks, key_ok) = brevo
        .await
        .map_err(|e| anyhow::anyhow!("checking Brevo: {e}"))?;
    checks.extend(brevo_checks);
    checks.extend(local::state(cfg));
    checks.extend(
        gateway
            .await
            .map_err(|e| anyhow::anyhow!("checking the Pushgateway: {e}"))?,
    );
    let broker_ok = checks.iter().all(|c| c.ok || !c.name.starts_with("broker"));
    if args.templates {
        checks.extend(brevo::templates(cfg, key_ok && broker_ok).await);
    }
    if let Some(p) = &args.probe {
        checks.push(probe::run(cfg, p, key_ok, broker_ok).await);
    }
    let doctor = Doctor { checks };
    let mut report = render(&doctor, Report::json(&doctor)?.answer());
    report.failure = failure(&doctor.checks);
    Ok(report)
}

/// The failure to exit with: the first failed check's code, naming every failed one.
fn failure(checks: &[Check]) -> Option<Failure> {
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    let first = failed.first()?;
    let names: Vec<&str> = failed.iter().map(|c| c.name.as_str()).collect();
    Some(Failure::Check {
        code: first.code,
        summary: format!(
            "{} of {} checks failed: {}",
            failed.len(),
            checks.len(),
            names.join(", ")
        ),
    })
}

/// The checklist for people.
fn render(d: &Doctor, report: Report) -> Report {
    let mut out = String::new();
    for c in &d.checks {
        let mark = if c.ok { "ok  " } else { "FAIL" };
        out.push_str(&format!("{mark} {}: {}\n", c.name, c.detail));
        if let Some(h) = &c.hint {
            out.push_str(&format!("     -> {h}\n"));
        }
    }
    let failed = d.checks.iter().filter(|c| !c.ok).count();
    out.push_str(&if failed == 0 {
        format!("all {} checks passed", d.checks.len())
    } else {
        format!("{failed} of {} checks failed", d.checks.len())
    });
    report.line(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failed_check_gives_the_exit_code() {
        assert!(failure(&[Check::pass("a", "fine")]).is_none());
        let checks = [
            Check::pass("broker", "fine"),
            Check::fail("brevo.key", 5, "401", "check the key"),
            Check::fail("clock", 0, "off", "sync it"),
        ];
        let f = failure(&checks).expect("a failure");
        assert_eq!(f.exit_code(), 5);
        assert_eq!(f.to_string(), "2 of 3 checks failed: brevo.key, clock");
        assert_eq!(checks[2].code, EXIT_FAILURE, "a failure never exits 0");
        let text = render(
            &Doctor {
                checks: checks.to_vec(),
            },
            Report::json(&1).expect("json"),
        )
        .text(false);
        assert!(
            text.contains("FAIL brevo.key: 401\n     -> check the key"),
            "{text}"
        );
        assert!(text.ends_with("2 of 3 checks failed"), "{text}");
    }
}
