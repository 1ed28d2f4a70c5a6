//! The subcommands and their arguments, as clap derive types.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueHint};

use super::refusal::whole;
use crate::park::ParkReason;

/// `--reason`: one of the park reasons' codes (clap lists them in help and completions).
fn reason() -> impl clap::builder::TypedValueParser<Value = ParkReason> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(ParkReason::CODES)
        .try_map(|code| code.parse::<ParkReason>())
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish mail jobs: N realistic mock jobs, or the lines of a JSON Lines file
    Publish(PublishArgs),
    /// Send up to --limit of the most urgent mails, never more than the credits left
    DrainHourly(DrainHourlyArgs),
    /// Send as many of the most urgent mails as the remaining credits allow
    DrainEod(DrainArgs),
    /// Print how many emails can still be sent today
    Credits,
    /// Show the next mails in the order a drain would take them, consuming nothing
    Peek(PeekArgs),
    /// Queue depths, urgency breakdown, credits
    Stats,
    /// Re-publish every queued mail with today's urgency (run daily, after midnight)
    Reprioritize(ReprioritizeArgs),
    /// List parked mails with their reasons; replay them to the queue, or purge them
    DeadLetters(DeadLettersArgs),
    /// Check every dependency of the configured deployment and print a checklist;
    /// changes nothing and sends nothing unless asked
    Doctor(DoctorArgs),
    /// Read Brevo's delivery events and blocked contacts since the last read, record
    /// them, and publish each outcome to the app's exchange
    Events(EventsArgs),
}

/// An exchange name RabbitMQ lets a client declare: 1 to 255 bytes, not `amq.`.
fn exchange_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 255 || s.starts_with("amq.") {
        return Err("expected an exchange name of 1 to 255 bytes, not starting with \"amq.\" (RabbitMQ's own)".into());
    }
    Ok(s.to_string())
}

/// `events` arguments.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The exchange delivery outcomes are published to
    ///
    /// The durable topic exchange delivery outcomes are published to (routing key: Brevo's
    /// event name).
    #[arg(long, env = "ACASO_MAIL_EVENTS_EXCHANGE", value_name = "NAME",
          default_value = crate::mailbox::outcomes::DEFAULT_EXCHANGE, value_parser = exchange_name)]
    pub exchange: String,

    /// Events asked of Brevo per page (at most 5000)
    #[arg(long, default_value_t = 2500, value_name = "N",
          value_parser = whole::<u32>(1, 5000, "a number of events"))]
    pub page_size: u32,

    /// Events read at most this run; the next run goes on from there
    #[arg(long, env = "ACASO_MAIL_EVENTS_MAX", default_value_t = 50_000, value_name = "N",
          value_parser = whole::<u32>(1, 10_000_000, "a number of events"))]
    pub max_events: u32,
}

/// `doctor` arguments.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Also try each queued template in Brevo's sandbox (nothing sent)
    ///
    /// Each template id found among the first --scan queued mails is sent once with
    /// that mail's params and `X-Sib-Sandbox: drop`: Brevo validates it and sends nothing.
    #[arg(long)]
    pub templates: bool,

    /// Prove Brevo refuses a repeated key: ONE REAL MAIL to --to (one credit)
    ///
    /// Sends one real mail to --to twice with the same idempotency key, passes only if
    /// Brevo refuses the second, and records the result in the state (`stats` shows it).
    #[arg(long, requires = "to")]
    pub idempotency_probe: bool,

    /// The probe's recipient: your own address
    #[arg(long, value_name = "EMAIL", requires = "idempotency_probe")]
    pub to: Option<String>,

    /// The probe's template [default: that of the first queued mail]
    #[arg(long, value_name = "ID", requires = "idempotency_probe")]
    pub template: Option<u32>,
}

/// `reprioritize` arguments.
#[derive(Debug, Args)]
pub struct ReprioritizeArgs {
    /// Show what would move (old and new priority) and touch nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `dead-letters` arguments.
#[derive(Debug, Args)]
#[command(disable_help_subcommand = true)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    pub action: Option<DeadLettersAction>,
}

/// What to do with parked mails.
#[derive(Debug, Subcommand)]
pub enum DeadLettersAction {
    /// List them (the default)
    List {
        /// At most this many
        #[arg(short = 'n', long = "count", default_value_t = 100, value_name = "N",
              value_parser = whole::<u32>(1, 100_000, "a number of mails"))]
        count: u32,
    },
    /// Put the selected ones back in the main queue, body and properties unchanged
    Replay(Selection),
    /// Delete the selected ones for good
    Purge(Selection),
    /// Ask Brevo's log about the mails parked as uncertain_send: those Brevo sent are
    /// removed (and journaled as sent), those it never got are replayed
    Recheck,
}

/// Which parked mails.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).multiple(true).args(["all", "index", "reason"]))]
pub struct Selection {
    /// All of them
    #[arg(long)]
    pub all: bool,
    /// These positions, as `dead-letters list` numbers them (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "N,...",
          value_parser = whole::<u32>(1, u64::from(u32::MAX), "a position in dead-letters list"))]
    pub index: Vec<u32>,
    /// Those parked for this reason
    #[arg(long, value_name = "REASON",
          value_parser = reason())]
    pub reason: Option<ParkReason>,
}

/// `publish` arguments.
#[derive(Debug, Args)]
// The usage line clap would build lists every option set by a variable as if required.
#[command(override_usage = "acaso-mail publish [OPTIONS] <-n N | --file PATH>")]
#[command(group = clap::ArgGroup::new("source").required(true).args(["count", "file"]))]
pub struct PublishArgs {
    /// Publish N mock jobs like the Acaso producer's; 0 only creates the queues
    ///
    /// Templates 7, 9, 10, 11 and 16, mentoring 0-10 days ahead. `-n 0` publishes nothing
    /// and declares the queues: the deploy's set-up.
    #[arg(short = 'n', long = "count", value_name = "N",
          value_parser = whole::<u32>(0, 10_000_000, "a number of mails"))]
    pub count: Option<u32>,

    /// Publish the JSON Lines of PATH (- for stdin); all or nothing
    ///
    /// Each line a job in the legacy or the generic format; one bad line and nothing is
    /// published.
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub file: Option<PathBuf>,

    /// Recipient address of the mock jobs
    #[arg(
        long,
        value_name = "EMAIL",
        requires = "count",
        default_value = "mentor@example.org"
    )]
    pub to: String,
}

/// Options shared by both drains.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Sends in flight to Brevo at once
    ///
    /// How many sends may be in flight to Brevo at once (dispatched in urgency order).
    #[arg(long, env = "ACASO_MAIL_CONCURRENCY", default_value_t = 32, value_name = "N",
          value_parser = whole::<u16>(1, 256, "a number of sends"))]
    pub concurrency: u16,

    /// Failed attempts (network, 5xx, 429) before a mail is parked
    #[arg(long, env = "ACASO_MAIL_MAX_ATTEMPTS", default_value_t = 5, value_name = "N",
          value_parser = whole::<u32>(1, 100, "a number of attempts"))]
    pub max_attempts: u32,

    /// Show what would be sent or set aside, in order, and touch nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Send to addresses Brevo reported dead or blocked, too
    ///
    /// Send to addresses Brevo reported hard-bounced, invalid, blocked or complaining of
    /// spam (by default their mails are parked as `suppressed`, costing no credit).
    #[arg(long)]
    pub no_suppress: bool,
}

/// `drain-hourly` arguments.
#[derive(Debug, Args)]
pub struct DrainHourlyArgs {
    /// At most N mails this run, or auto, or unlimited [default: 12]
    ///
    /// At most N mails this run; "auto" spreads the credits over the hourly runs left before
    /// Brevo's credits reset, keeping --reserve back; "unlimited" sends all the credits allow (paid plans)
    /// [env: SENDINBLUE_MAILS_PER_HOUR] [default: 12]
    // The variable is read by `lib.rs`, so that a wrong value in it is reported as the
    // variable's, not as a --limit the user never typed.
    #[arg(long, value_name = "N|auto|unlimited")]
    pub limit: Option<crate::drain::Limit>,

    /// Credits --limit auto keeps back for urgent mail
    ///
    /// Credits --limit auto keeps back for urgent mail that may still arrive today.
    #[arg(
        long,
        env = "ACASO_MAIL_RESERVE",
        default_value_t = 30,
        value_name = "N",
        value_parser = whole::<u32>(0, u64::from(u32::MAX), "a number of credits")
    )]
    pub reserve: u32,

    /// Stop at --limit even for mails due today
    ///
    /// Stop at --limit even for mails due today (by default those go out while credits last).
    #[arg(long)]
    pub strict_limit: bool,

    #[command(flatten)]
    pub drain: DrainArgs,
}

/// `peek` arguments.
#[derive(Debug, Args)]
pub struct PeekArgs {
    /// How many mails to show
    #[arg(short = 'n', long = "count", default_value_t = 10, value_name = "N",
          value_parser = whole::<u32>(1, 100_000, "a number of mails"))]
    pub count: u32,
}
