//! The command line, as clap derive types. Nothing here does I/O; [`crate::config`]
//! turns these into a validated `Config`.

use std::path::PathBuf;

use clap::{Args, Parser, ValueEnum, ValueHint};

mod commands;
#[cfg(test)]
mod docs_tests;
mod help;
mod refusal;
pub use commands::{
    Command, DeadLettersAction, DeadLettersArgs, DoctorArgs, DrainArgs, DrainHourlyArgs, PeekArgs,
    PublishArgs, ReprioritizeArgs, Selection,
};
use refusal::whole;
pub use refusal::{all_args, explain};

use crate::config::{ColorWhen, Settings};
use crate::error::EXIT_CODES_HELP;
use crate::secrets::SecuritySettings;

/// Every variable acaso-mail reads, as the end of `--help` and the man page list them.
pub const ENVIRONMENT_HELP: &str = "Environment (a flag wins over its variable):
  QUEUE_SERVICE_URL, RABBITMQ_URL      --amqp-url (QUEUE_SERVICE_URL_FILE, RABBITMQ_URL_FILE:
                                       from a file)
  ACASO_MAIL_QUEUE                     --queue
  SENDINBLUE_URL, BREVO_URL            --brevo-url
  SENDINBLUE_API_KEY, BREVO_API_KEY    --api-key (SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE: from a file)
  SENDINBLUE_MAILS_PER_HOUR            drain-hourly --limit
  ACASO_MAIL_RESERVE                   drain-hourly --reserve
  ACASO_MAIL_CONCURRENCY               --concurrency of the drains
  ACASO_MAIL_MAX_ATTEMPTS              --max-attempts of the drains
  PUSHGATEWAY_URL                      --pushgateway
  PUSHGATEWAY_USER                     --pushgateway-user
  PUSHGATEWAY_PASSWORD                 the Pushgateway password (PUSHGATEWAY_PASSWORD_FILE: from a file)
  PUSHGATEWAY_CA_FILE                  --pushgateway-ca-file
  ACASO_MAIL_AMQP_CA_FILE              --amqp-ca-file
  ACASO_MAIL_TZ                        --tz
  ACASO_MAIL_NOW                       --now
  ACASO_MAIL_STATE_DIR                 --state-dir (else $XDG_STATE_HOME/acaso-mail, else
                                       $HOME/.local/state/acaso-mail)
  ACASO_MAIL_STATE_URL, DATABASE_URL   --state-url (ACASO_MAIL_STATE_URL_FILE,
                                       DATABASE_URL_FILE: from a file)
  ACASO_MAIL_STATE_PASSWORD            the PostgreSQL password (ACASO_MAIL_STATE_PASSWORD_FILE:
                                       from a file)
  ACASO_MAIL_STATE_CA_FILE             --state-ca-file
  ACASO_MAIL_TIMEOUT                   --timeout
  ACASO_MAIL_LOCK_WAIT                 --lock-wait
  ACASO_MAIL_SCAN                      --scan
  ACASO_MAIL_CREDITS_RESET             --credits-reset
  ACASO_MAIL_EVENTS_EXCHANGE           events --exchange
  ACASO_MAIL_EVENTS_MAX                events --max-events
  CREDENTIALS_DIRECTORY                (set by systemd) the credentials sendinblue-api-key,
                                       queue-service-url, pushgateway-password, state-url,
                                       state-password
  NO_COLOR, TERM=dumb                  no colour with --color auto";

/// The end of `--help` and of the man page: the variables, then the exit codes.
pub fn after_help() -> String {
    format!("{ENVIRONMENT_HELP}\n\n{EXIT_CODES_HELP}")
}

/// Delivers Acaso's transactional emails from a RabbitMQ priority queue through Brevo,
/// most urgent first, never over the daily budget.
///
/// Each subcommand does one bounded piece of work and exits: schedule drain-hourly every
/// hour, drain-eod at the end of the day and reprioritize after midnight (cron or systemd).
#[derive(Debug, Parser)]
#[command(
    name = "acaso-mail",
    version,
    after_long_help = after_help(),
    max_term_width = 100,
    // `acaso-mail help X` is `acaso-mail X --help`; without it the man pages would point
    // to an acaso-mail-help(1) that cannot exist.
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The plain settings [`crate::config::Config`] is built from: the global options,
    /// and drain-hourly's `--limit` (which a variable may set instead).
    pub fn settings(&self) -> Settings {
        let mut settings = self.global.settings();
        if let Command::DrainHourly(a) = &self.command {
            settings.hourly_limit = Some(a.limit);
        }
        settings
    }
}

/// Options every subcommand takes.
// The doc comments are the --help text, where a bare URL reads best.
#[allow(rustdoc::bare_urls, rustdoc::broken_intra_doc_links)]
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// RabbitMQ URL (amqp:// or amqps://); its password is never printed
    /// [default: amqp://guest:guest@127.0.0.1:5672/%2f]
    #[arg(
        long,
        global = true,
        env = "QUEUE_SERVICE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub amqp_url: Option<String>,

    /// The mail queue; retry and parking queues are named after it [default: acaso.mail]
    #[arg(long, global = true, env = "ACASO_MAIL_QUEUE", value_name = "NAME")]
    pub queue: Option<String>,

    /// Brevo API base URL [env: SENDINBLUE_URL, BREVO_URL] [default: https://api.brevo.com/v3]
    #[arg(long, global = true, value_name = "URL")]
    pub brevo_url: Option<String>,

    /// Brevo API key [env: SENDINBLUE_API_KEY, BREVO_API_KEY]; required by commands that call Brevo
    #[arg(long, global = true, value_name = "KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Pushgateway URL to push run metrics to (no push when unset)
    #[arg(long, global = true, env = "PUSHGATEWAY_URL", value_name = "URL")]
    pub pushgateway: Option<String>,

    /// Time zone that defines "today" and renders dates [default: America/Recife]
    #[arg(long, global = true, env = "ACASO_MAIL_TZ", value_name = "ZONE")]
    pub tz: Option<String>,

    /// An RFC 3339 instant used as "now" for urgency, expiry and "today" [default: the clock]
    #[arg(long, global = true, env = "ACASO_MAIL_NOW", value_name = "INSTANT")]
    pub now: Option<String>,

    /// Where the sent-mail journal and the run lock live [default: $XDG_STATE_HOME/acaso-mail]
    #[arg(long, global = true, env = "ACASO_MAIL_STATE_DIR", value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub state_dir: Option<PathBuf>,

    /// Keep the state (journal, tallies, run lock) in PostgreSQL, shared by every host:
    /// postgres://USER@HOST/DB[?sslmode=verify-full] [env: ACASO_MAIL_STATE_URL, DATABASE_URL]
    /// [default: SQLite in --state-dir]
    // The variables are read by `state_url`, with their *_FILE twins and credential.
    #[arg(long, global = true, value_name = "URL")]
    pub state_url: Option<String>,

    /// File holding the PostgreSQL password, when the state URL has none
    /// [env: ACASO_MAIL_STATE_PASSWORD_FILE]
    #[arg(long, global = true, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub state_password_file: Option<PathBuf>,

    /// PEM file of the CA(s) that signed PostgreSQL's certificate (sslmode=verify-full)
    #[arg(long, global = true, env = "ACASO_MAIL_STATE_CA_FILE", value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub state_ca_file: Option<PathBuf>,

    /// Print exactly one JSON document on stdout, nothing else
    #[arg(long, global = true)]
    pub json: bool,

    /// When to colour tables
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,

    /// No summary on success (errors still go to stderr): for cron
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Seconds to wait for another run's lock before giving up (exit 6)
    #[arg(long, global = true, env = "ACASO_MAIL_LOCK_WAIT", default_value_t = 30, value_name = "SECONDS",
          value_parser = whole::<u64>(0, 86_400, "a number of seconds"))]
    pub lock_wait: u64,

    /// Seconds to wait for RabbitMQ or Brevo to connect or answer
    #[arg(long, global = true, env = "ACASO_MAIL_TIMEOUT", default_value_t = 10, value_name = "SECONDS",
          value_parser = whole::<u64>(1, 600, "a number of seconds"))]
    pub timeout: u64,

    /// At most this many mails read from the head of the queue to count urgency bands
    /// (stats, the pushed band gauges, dry runs); the bands beyond are reported as partial
    #[arg(long, global = true, env = "ACASO_MAIL_SCAN", default_value_t = crate::config::DEFAULT_SCAN, value_name = "N",
          value_parser = whole::<u32>(1, 65_535, "a number of mails"))]
    pub scan: u32,

    /// When Brevo's daily credits reset: HH:MM in --tz, or followed by a zone ("00:00 UTC"),
    /// overriding the reset acaso-mail observed [env: ACASO_MAIL_CREDITS_RESET]
    /// [default: the observed reset, else local midnight]
    // The variable is read by `config`, so that a wrong value in it is named as such.
    #[arg(long, global = true, value_name = "HH:MM [ZONE]")]
    pub credits_reset: Option<String>,

    // Security hook (issue 16): secret files, CA files, Pushgateway auth.
    #[command(flatten)]
    pub security: SecurityArgs,
}

impl GlobalArgs {
    /// The plain settings [`crate::config::Config`] is built from.
    pub fn settings(&self) -> Settings {
        Settings {
            amqp_url: self.amqp_url.clone(),
            queue: self.queue.clone(),
            brevo_url: self.brevo_url.clone(),
            api_key: self.api_key.clone(),
            pushgateway: self.pushgateway.clone(),
            tz: self.tz.clone(),
            now: self.now.clone(),
            state_dir: self.state_dir.clone(),
            state: crate::state_url::StateSettings {
                url: self.state_url.clone(),
                password_file: self.state_password_file.clone(),
                ca_file: self.state_ca_file.clone(),
            },
            json: self.json,
            color: match self.color {
                ColorChoice::Auto => ColorWhen::Auto,
                ColorChoice::Always => ColorWhen::Always,
                ColorChoice::Never => ColorWhen::Never,
            },
            quiet: self.quiet,
            lock_wait: self.lock_wait,
            timeout: self.timeout,
            scan: self.scan,
            credits_reset: self.credits_reset.clone(),
            security: self.security.settings(),
            hourly_limit: None,
        }
    }
}

/// The command-line options for secrets in files and for TLS and auth on the wires,
/// flattened into the global options. [`SecurityArgs::settings`] gives the plain
/// [`SecuritySettings`] the configuration is built from.
#[derive(Debug, Default, Args)]
pub struct SecurityArgs {
    /// File holding the Brevo API key [env: SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE]
    #[arg(long, global = true, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub api_key_file: Option<PathBuf>,

    /// File holding the RabbitMQ URL, password included [env: QUEUE_SERVICE_URL_FILE]
    #[arg(long, global = true, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub amqp_url_file: Option<PathBuf>,

    /// PEM file of the CA(s) that signed RabbitMQ's certificate, for amqps:// with a private CA
    #[arg(long, global = true, value_name = "PATH", value_hint = ValueHint::FilePath)]
    #[arg(env = "ACASO_MAIL_AMQP_CA_FILE")]
    pub amqp_ca_file: Option<PathBuf>,

    /// User for the Pushgateway's basic auth (password: PUSHGATEWAY_PASSWORD or a file)
    #[arg(long, global = true, env = "PUSHGATEWAY_USER", value_name = "USER")]
    pub pushgateway_user: Option<String>,

    /// File holding the Pushgateway password [env: PUSHGATEWAY_PASSWORD_FILE]
    #[arg(long, global = true, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub pushgateway_password_file: Option<PathBuf>,

    /// PEM file of the CA(s) that signed the Pushgateway's certificate (https://)
    #[arg(long, global = true, env = "PUSHGATEWAY_CA_FILE", value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub pushgateway_ca_file: Option<PathBuf>,
}

impl SecurityArgs {
    /// The plain settings.
    pub fn settings(&self) -> SecuritySettings {
        SecuritySettings {
            api_key_file: self.api_key_file.clone(),
            amqp_url_file: self.amqp_url_file.clone(),
            amqp_ca_file: self.amqp_ca_file.clone(),
            pushgateway_user: self.pushgateway_user.clone(),
            pushgateway_password_file: self.pushgateway_password_file.clone(),
            pushgateway_ca_file: self.pushgateway_ca_file.clone(),
        }
    }
}

/// The command line as `main` parses it and the completions and man pages describe it:
/// the clap definition with every variable's value hidden in --help (an unset one would
/// read `NAME=`, as if set but empty; a set one may be a secret).
pub fn command() -> clap::Command {
    help::shape(<Cli as clap::CommandFactory>::command())
}

/// Parses the process's arguments with [`command`] (for `-h`, its one-line-per-option form).
pub fn parse() -> Result<Cli, clap::Error> {
    // args_os: an argument that is not UTF-8 is clap's to refuse, not a panic here.
    let short = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "-h");
    let cmd = if short {
        help::short(command())
    } else {
        command()
    };
    let matches = cmd.try_get_matches()?;
    <Cli as clap::FromArgMatches>::from_arg_matches(&matches)
}

/// When to use colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
        // As parsed: shaped, and in its -h form (clap checks each only when it builds).
        command().debug_assert();
        help::short(command()).debug_assert();
    }

    #[test]
    fn parses_the_contract_examples() {
        let cli = Cli::try_parse_from(["acaso-mail", "publish", "-n", "5"]).expect("parse");
        assert!(matches!(
            cli.command,
            Command::Publish(PublishArgs { count: Some(5), .. })
        ));
        let cli = Cli::try_parse_from(["acaso-mail", "--json", "drain-hourly", "--limit", "3"])
            .expect("parse");
        assert!(cli.global.json);
        assert!(matches!(
            cli.command,
            Command::DrainHourly(DrainHourlyArgs {
                limit: Some(crate::drain::Limit::Count(3)),
                ..
            })
        ));
        let cli =
            Cli::try_parse_from(["acaso-mail", "peek", "-n", "2", "--queue", "q"]).expect("parse");
        assert_eq!(cli.global.queue.as_deref(), Some("q"));
    }

    #[test]
    fn refuses_bad_values() {
        for args in [
            &["acaso-mail", "drain-hourly", "--limit", "abc"][..],
            &["acaso-mail", "publish", "-n", "10000001"],
            &["acaso-mail", "publish", "-n", "-3"],
            &["acaso-mail", "publish"],
            &["acaso-mail", "publish", "-n", "2", "--file", "x"],
            &["acaso-mail", "peek", "--color", "sometimes"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
        // `publish -n 0`: only the queues (a new deploy's set-up).
        assert!(Cli::try_parse_from(["acaso-mail", "publish", "-n", "0"]).is_ok());
    }
}
