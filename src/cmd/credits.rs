//! `credits`: the emails that can still be sent today, from one `GET /account`.

use anyhow::Result;
use schemars::JsonSchema;
use serde::Serialize;

use crate::config::Config;
use crate::output::Report;
use crate::state::Store;

/// What `credits` reports.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "acaso-mail credits --json")]
pub struct Credits {
    /// Remaining credits as Brevo reports them.
    pub credits: f64,
    /// The plan type they belong to.
    pub plan: String,
    /// Whether the plan has no daily limit.
    pub unlimited: bool,
    /// Brevo's `relay.enabled`: whether the account may send transactional mail
    /// (`false`: every send will be refused); null when Brevo's answer does not say.
    pub relay_enabled: Option<bool>,
}

/// Runs `credits`.
pub async fn run(cfg: &Config) -> Result<Report> {
    let (a, read) = crate::brevo::account::read_account(cfg).await?;
    // Every reading teaches when the credits reset; one that cannot be kept costs only that.
    if let Err(e) = Store::open(cfg.state())
        .and_then(|store| crate::cmd::brevo_day::learn(&store, cfg, read, &a, "credits"))
    {
        crate::warn::notice(&format!(
            "warning: the credits read could not be recorded: {e:#}"
        ));
    }
    let c = Credits {
        credits: a.credits,
        unlimited: a.unlimited(),
        relay_enabled: a.relay_enabled,
        plan: a.plan.clone(),
    };
    let text = if c.unlimited {
        format!("no daily limit ({} plan)", c.plan)
    } else {
        c.credits.to_string()
    };
    // The answer stays alone on stdout (`$(acaso-mail credits)` in scripts); a relay
    // Brevo has turned off is said on stderr, where `--json` does not hide it either.
    if a.relay_enabled == Some(false) {
        crate::warn::warning(&format!(
            "transactional sending (relay): {}",
            a.relay_words()
        ));
    }
    Ok(Report::json(&c)?.line(text).answer())
}
