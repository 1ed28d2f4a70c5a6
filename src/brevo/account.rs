//! Reading the account: its email plan (the credits left), and when it was read, which
//! places the reading in Brevo's day.

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::{Account, Brevo};
use crate::config::Config;

/// When the credits were read: the request went out at `asked` and Brevo answered at
/// `at` (by the clock, or `--now` when given); Brevo read them in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAt {
    /// Just before the request.
    pub asked: DateTime<Utc>,
    /// Just after the answer.
    pub at: DateTime<Utc>,
    /// The wall clock just after the answer, whatever `--now` says: the credit history is
    /// pruned from the earlier of this and `at`.
    pub wall: DateTime<Utc>,
}

/// Reads the account's email plan with the configured key (one `GET /account`).
pub async fn account(cfg: &Config) -> Result<Account> {
    let brevo = Brevo::new(&cfg.brevo_url, cfg.require_api_key()?.clone(), cfg.timeout);
    Ok(tokio::task::spawn_blocking(move || brevo.account())
        .await
        .map_err(|e| anyhow::anyhow!("reading credits: {e}"))??)
}

/// Reads the account (`GET /account`), and when.
pub async fn read_account(cfg: &Config) -> Result<(Account, ReadAt)> {
    let asked = cfg.now();
    let account = account(cfg).await?;
    let at = cfg.now().max(asked);
    let wall = Utc::now();
    Ok((account, ReadAt { asked, at, wall }))
}
