//! acaso-mail: delivers Acaso's transactional emails from a RabbitMQ priority queue
//! through Brevo, most urgent first, never over the daily budget, never twice.
//!
//! `main` parses the command line and calls [`run`]. The layers point one way:
//! [`cmd`] (one module per subcommand) uses the domain ([`drain`], [`mail`],
//! [`urgency`], [`census`], [`mock`]) and the adapters ([`mailbox`] for RabbitMQ,
//! [`brevo`], [`state`], [`metrics`], [`output`]); all of them read a validated
//! [`config::Config`], which [`cli`] builds from plain values.

pub mod brevo;
pub mod census;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod day;
pub mod delivery;
pub mod drain;
pub mod envelope;
pub mod error;
pub mod gauges;
pub mod mail;
pub mod mailbox;
pub mod metrics;
pub mod mock;
pub mod output;
pub mod park;
pub mod secrets;
pub mod signal;
pub mod state;
pub mod state_url;
pub mod taken;
pub mod urgency;
pub mod warn;
pub mod wire;

use anyhow::Result;

use crate::cli::{Cli, Command, DeadLettersAction};
use crate::cmd::dead_letters::{Action, Selection};
use crate::config::Config;
use crate::drain::{Budget, Options};
use crate::error::{EXIT_OK, Failure};
use crate::output::Report;
use crate::signal::Cancel;

/// Runs a parsed command line; returns the exit code. Errors are returned, not printed.
pub fn run(cli: Cli) -> Result<u8> {
    let cfg = Config::new(&cli.settings(), |k: &str| std::env::var(k).ok())?;
    // The runtime is built only once the configuration is known to be valid.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(dispatch(cli.command, cfg))
}

/// The name a subcommand pushes its metrics under, if it pushes any.
fn pushes_as(command: &Command) -> Option<&'static str> {
    match command {
        Command::Publish(_) => Some("publish"),
        Command::DrainHourly(a) if !a.drain.dry_run => Some("drain-hourly"),
        Command::DrainEod(a) if !a.dry_run => Some("drain-eod"),
        Command::Reprioritize(a) if !a.dry_run => Some("reprioritize"),
        Command::Stats => Some("stats"),
        Command::Events(_) => Some("events"),
        _ => None,
    }
}

async fn dispatch(command: Command, cfg: Config) -> Result<u8> {
    let pushing = cfg.pushgateway.clone().zip(pushes_as(&command));
    let start = std::time::Instant::now();
    let cancel = Cancel::install(match command {
        Command::Publish(_) => Cancel::PUBLISHING,
        _ => Cancel::TAKING,
    })?;
    let result = run_command(command, &cfg, &cancel).await;
    if mailbox::quarantine::unreadable_seen() {
        // lapin met a message it cannot read and closed the connection: park it now,
        // so that the next run gets past it (this one ends as it is).
        let note = match mailbox::quarantine::screen_queue(&cfg, 256).await {
            Ok(n) => format!(
                "parked {n} message(s) whose AMQP headers cannot be read (reason malformed); the next run goes past them"
            ),
            Err(e) => {
                format!("warning: a message whose headers cannot be read blocks the queue: {e:#}")
            }
        };
        crate::warn::notice(&note);
    }
    let shown = result.as_ref().ok().map(|r| output::emit(&cfg, r));
    if let Some((base, sub)) = pushing {
        let mut gauges = match &result {
            Ok(r) => r.gauges.clone(),
            Err(_) => metrics::RunGauges::default(),
        };
        gauges.success = matches!(&result, Ok(r) if r.failure.is_none());
        gauges.duration = start.elapsed();
        if let Err(e) = metrics::push_run(&cfg, &base, sub, &gauges) {
            // The mail run's outcome stands; a monitoring hiccup only warns.
            crate::warn::notice(&format!("warning: metrics not pushed: {e:#}"));
        }
    }
    if let Some(Err(e)) = shown {
        return Err(e);
    }
    match result?.failure {
        Some(f) => Err(f.into()),
        None => Ok(EXIT_OK),
    }
}

async fn run_command(command: Command, cfg: &Config, cancel: &Cancel) -> Result<Report> {
    match command {
        Command::Publish(a) => {
            let source = match (&a.file, a.count) {
                (Some(f), _) => cmd::publish::Source::File(f),
                (None, Some(count)) => cmd::publish::Source::Mock { count, to: &a.to },
                (None, None) => {
                    return Err(Failure::Usage("publish needs -n N or --file PATH".into()).into());
                }
            };
            cmd::publish::run(cfg, source, cancel).await
        }
        Command::DrainHourly(a) => {
            let budget = Budget::Hourly {
                limit: cfg.hourly_limit,
                urgent_beyond_limit: !a.strict_limit,
                reserve: a.reserve,
            };
            drain(cfg, budget, &a.drain, cancel).await
        }
        Command::DrainEod(a) => drain(cfg, Budget::EndOfDay, &a, cancel).await,
        Command::Credits => cmd::credits::run(cfg).await,
        Command::Peek(a) => cmd::peek::run(cfg, a.count).await,
        Command::Reprioritize(a) if a.dry_run => cmd::reprioritize::dry_run(cfg).await,
        Command::Reprioritize(_) => cmd::reprioritize::run(cfg, cancel).await,
        Command::DeadLetters(a) => {
            let sel = |s: cli::Selection| Selection {
                all: s.all,
                indexes: s.index,
                reason: s.reason,
            };
            let action = match a.action {
                None => Action::List(100),
                Some(DeadLettersAction::List { count }) => Action::List(count),
                Some(DeadLettersAction::Replay(s)) => Action::Replay(sel(s)),
                Some(DeadLettersAction::Purge(s)) => Action::Purge(sel(s)),
                Some(DeadLettersAction::Recheck) => Action::Recheck,
            };
            cmd::dead_letters::run(cfg, action).await
        }
        Command::Stats => cmd::stats::run(cfg, cancel).await,
        Command::Events(a) => {
            let args = cmd::events::Args {
                exchange: a.exchange,
                page_size: a.page_size,
                max_events: a.max_events,
            };
            cmd::events::run(cfg, &args, cancel).await
        }
        Command::Doctor(a) => {
            let probe = match (a.idempotency_probe, a.to) {
                (true, Some(to)) => Some(cmd::doctor::Probe {
                    to,
                    template: a.template,
                }),
                _ => None,
            };
            let args = cmd::doctor::Args {
                templates: a.templates,
                probe,
            };
            cmd::doctor::run(cfg, args).await
        }
    }
}

async fn drain(
    cfg: &Config,
    budget: Budget,
    a: &cli::DrainArgs,
    cancel: &Cancel,
) -> Result<Report> {
    if a.dry_run {
        return cmd::drain::dry_run(cfg, budget, !a.no_suppress).await;
    }
    let options = Options {
        concurrency: usize::from(a.concurrency),
        max_attempts: a.max_attempts,
    };
    let args = cmd::drain::Args {
        budget,
        options,
        suppress: !a.no_suppress,
    };
    cmd::drain::run(cfg, args, cancel).await
}
