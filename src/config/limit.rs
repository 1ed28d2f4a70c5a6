//! drain-hourly's limit, which `--limit` or `SENDINBLUE_MAILS_PER_HOUR` sets.

use crate::error::Failure;

/// The hourly drain's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// At most this many mails per run.
    Count(u32),
    /// Spread the credits left, less the reserve, over the hourly runs left before
    /// Brevo's credits reset.
    Auto,
    /// Everything the credits allow (a paid plan).
    Unlimited,
}

impl std::str::FromStr for Limit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Limit::Auto),
            "unlimited" => Ok(Limit::Unlimited),
            n => n.parse::<u32>().map(Limit::Count).map_err(|_| {
                format!("{n:?} is not a limit: expected a whole number of mails, \"auto\" or \"unlimited\"")
            }),
        }
    }
}

/// The hourly limit: `--limit`, else `SENDINBLUE_MAILS_PER_HOUR`, else 12. A wrong value
/// in the variable is reported as the variable's (clap would name `--limit`).
pub fn hourly_limit(
    flag: Option<Limit>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Limit, Failure> {
    if let Some(limit) = flag {
        return Ok(limit);
    }
    match env("SENDINBLUE_MAILS_PER_HOUR").filter(|v| !v.trim().is_empty()) {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|why| Failure::Usage(format!("invalid SENDINBLUE_MAILS_PER_HOUR: {why}"))),
        None => Ok(Limit::Count(12)),
    }
}
