//! The errors that end a run with a specific exit code, and the table of those codes.
//!
//! Everything else travels as `anyhow::Error` with context; `main` maps a [`Failure`]
//! found anywhere in the chain to its code, and any other error to [`EXIT_FAILURE`].

use std::fmt;

/// The run did its job.
pub const EXIT_OK: u8 = 0;
/// An unexpected failure (a bug, or a local problem such as an unwritable state dir).
pub const EXIT_FAILURE: u8 = 1;
/// A bad flag, argument or environment value; nothing was done.
pub const EXIT_USAGE: u8 = 2;
/// Invalid input (a publish file with a bad line); nothing from it was published.
pub const EXIT_INPUT: u8 = 3;
/// RabbitMQ or Brevo could not be reached or stopped answering; mails stay queued.
pub const EXIT_UNAVAILABLE: u8 = 4;
/// Brevo refused the API key or the account (401, 403, or a code such as
/// `account_under_validation`); nothing was sent or acked.
pub const EXIT_CREDENTIALS: u8 = 5;
/// Another run holds the state-directory lock; this one did nothing.
pub const EXIT_LOCKED: u8 = 6;
/// Interrupted by SIGINT (128 + 2).
pub const EXIT_SIGINT: u8 = 130;
/// Interrupted by SIGTERM (128 + 15).
pub const EXIT_SIGTERM: u8 = 143;

/// The exit-code table, as printed at the end of `--help` and in the man page.
pub const EXIT_CODES_HELP: &str = "\
Exit status:
  0    the run did its job (per-mail problems are counted in the summary)
  1    unexpected failure (bug, unwritable state directory)
  2    usage error: bad flag, argument or environment value; a queue that does not exist
       (only publish creates one)
  3    invalid input: a publish file with a bad line (nothing was published)
  4    RabbitMQ, Brevo or the state's PostgreSQL unreachable or failing; unsent mails
       stay queued
  5    Brevo refused the API key or the account (401 or 403, or an account refusal);
       nothing was sent or parked
  6    another acaso-mail run holds the lock (in the state directory, or PostgreSQL)
  130  interrupted by SIGINT; in-flight mails finished or returned to the queue
  143  interrupted by SIGTERM; same as 130
doctor exits with the code of its first failed check's area (1 when none fits)";

/// A failure that maps to a documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A check of `doctor` failed: the exit code its area has elsewhere (4 for a
    /// service that cannot be reached, 5 for refused credentials, 1 when no more
    /// specific code names it, such as a skewed clock).
    #[error("{summary}")]
    Check {
        /// The exit code.
        code: u8,
        /// Which checks failed.
        summary: String,
    },
    /// A configuration value is wrong (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Input to publish is invalid (exit 3).
    #[error("{0}")]
    Input(String),
    /// A service is unreachable or failing (exit 4).
    #[error("{0}")]
    Unavailable(String),
    /// Brevo refused the API key (exit 5).
    #[error(
        "Brevo refused the API key or its account ({0}); check SENDINBLUE_API_KEY / --api-key and the account in Brevo"
    )]
    Credentials(String),
    /// The state-directory lock is held by another run (exit 6).
    #[error("{0}")]
    Locked(String),
    /// The run was interrupted by a signal (exit 130 or 143).
    #[error("interrupted by {0}")]
    Interrupted(Signal),
}

/// The signals acaso-mail stops on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C.
    Int,
    /// `kill`, systemd stop.
    Term,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
        })
    }
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Check { code, .. } => *code,
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Input(_) => EXIT_INPUT,
            Failure::Unavailable(_) => EXIT_UNAVAILABLE,
            Failure::Credentials(_) => EXIT_CREDENTIALS,
            Failure::Locked(_) => EXIT_LOCKED,
            Failure::Interrupted(Signal::Int) => EXIT_SIGINT,
            Failure::Interrupted(Signal::Term) => EXIT_SIGTERM,
        }
    }
}

/// The exit code for any error: the first [`Failure`] in its chain decides.
pub fn exit_code_of(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|e| e.downcast_ref::<Failure>())
        .map_or(EXIT_FAILURE, Failure::exit_code)
}

/// A secret (API key, AMQP password): its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_format() {
        let s = Secret::new("xkeysib-very-secret");
        assert_eq!(format!("{s} {s:?} {:?}", Some(&s)), "*** *** Some(***)");
        assert_eq!(s.expose(), "xkeysib-very-secret");
    }

    #[test]
    fn exit_code_found_through_context() {
        let err = anyhow::Error::new(Failure::Locked("held".into())).context("draining");
        assert_eq!(exit_code_of(&err), EXIT_LOCKED);
        assert_eq!(exit_code_of(&anyhow::anyhow!("other")), EXIT_FAILURE);
        let int = anyhow::Error::new(Failure::Interrupted(Signal::Term));
        assert_eq!(exit_code_of(&int), 143);
    }
}
