//! `credits`: the emails that can still be sent today, from one `GET /account`.

use anyhow::{Context, Result};
use serde::Serialize;

use crate::brevo::{Account, Brevo};
use crate::config::Config;

/// What `credits` reports.
#[derive(Debug, Serialize)]
pub struct Credits {
    /// Remaining credits as Brevo reports them.
    pub credits: f64,
    /// The plan type they belong to.
    pub plan: String,
    /// Whether the plan has no daily limit.
    pub unlimited: bool,
}

/// Reads the account's email plan.
pub async fn account(cfg: &Config) -> Result<Account> {
    let brevo = Brevo::new(&cfg.brevo_url, cfg.require_api_key()?.clone(), cfg.timeout);
    Ok(tokio::task::spawn_blocking(move || brevo.account())
        .await
        .context("reading credits")??)
}

/// Runs `credits`.
pub async fn run(cfg: &Config) -> Result<Credits> {
    let a = account(cfg).await?;
    Ok(Credits {
        credits: a.credits,
        unlimited: a.unlimited(),
        plan: a.plan,
    })
}
