//! acaso-mail: delivers Acaso's transactional emails from a RabbitMQ priority queue
//! through Brevo, most urgent first, never over the daily budget, never twice.
//!
//! `main` parses the command line and calls [`run`]; each subcommand lives in
//! [`cmd`], the outside world behind [`amqp`] and [`brevo`].

pub mod amqp;
pub mod brevo;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod error;
pub mod mail;
pub mod metrics;
pub mod output;
pub mod private;
pub mod progress;
pub mod secrets;
pub mod signal;
pub mod state;
pub mod urgency;
pub mod wire;

use std::time::Duration;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::cmd::drain::{self, Budget};
use crate::config::Config;
use crate::error::{EXIT_OK, Failure};
use crate::signal::Cancel;

/// Runs a parsed command line; returns the exit code. Errors are returned, not printed.
pub fn run(cli: Cli) -> Result<u8> {
    let cfg = Config::from_args(&cli.global, |k| std::env::var(k).ok())?;
    // The runtime is built only once the configuration is known to be valid.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(dispatch(cli, cfg))
}

/// The name a subcommand pushes its metrics under, if it pushes any.
fn pushes_as(command: &Command) -> Option<&'static str> {
    match command {
        Command::Publish(_) => Some("publish"),
        Command::DrainHourly(a) if !a.drain.dry_run => Some("drain-hourly"),
        Command::DrainEod(a) if !a.dry_run => Some("drain-eod"),
        Command::Reprioritize(a) if !a.dry_run => Some("reprioritize"),
        Command::Stats => Some("stats"),
        _ => None,
    }
}

async fn dispatch(cli: Cli, cfg: Config) -> Result<u8> {
    let pushing = cfg.pushgateway.clone().zip(pushes_as(&cli.command));
    let start = std::time::Instant::now();
    let mut gauges = metrics::RunGauges::default();
    let result = run_command(cli, &cfg, &mut gauges).await;
    if let Some((base, sub)) = pushing {
        gauges.success = result.is_ok();
        gauges.duration = start.elapsed();
        if let Err(e) = push_metrics(&cfg, &base, sub, &gauges) {
            // The mail run's outcome stands; a monitoring hiccup only warns.
            eprintln!("acaso-mail: warning: metrics not pushed: {e:#}");
        }
    }
    result
}

fn push_metrics(cfg: &Config, base: &str, sub: &str, gauges: &metrics::RunGauges) -> Result<()> {
    let now = chrono::Utc::now().timestamp() as f64;
    let store = state::Store::open(&cfg.state_dir).ok();
    if let (Some(store), true) = (&store, gauges.success) {
        metrics::record_success(store, sub, now)?;
    }
    let body = metrics::render(store.as_ref(), sub, gauges, now)?;
    metrics::push(cfg, base, sub, body)
}

async fn run_command(cli: Cli, cfg: &Config, gauges: &mut metrics::RunGauges) -> Result<u8> {
    let quiet = cli.global.quiet;
    let lock_wait = Duration::from_secs(cli.global.lock_wait);
    let cancel = Cancel::install()?;
    match cli.command {
        Command::Publish(a) => {
            let source = match (&a.file, a.count) {
                (Some(f), _) => cmd::publish::Source::File(f),
                (None, Some(count)) => cmd::publish::Source::Mock { count, to: &a.to },
                (None, None) => {
                    return Err(Failure::Usage("publish needs -n N or --file PATH".into()).into());
                }
            };
            let s = cmd::publish::run(cfg, source, &cancel).await?;
            if cfg.json {
                output::json(&serde_json::json!({"published": s.published, "queue": s.queue}))?;
            } else if !quiet {
                output::line(&format!("published {} mail(s) to {}", s.published, s.queue))?;
            }
        }
        Command::DrainHourly(a) => {
            let budget = Budget::Hourly {
                limit: a.limit,
                urgent_beyond_limit: !a.strict_limit,
            };
            let sub = DrainRun {
                budget,
                args: &a.drain,
                reserve: a.reserve,
            };
            return drain(cfg, sub, lock_wait, quiet, &cancel, gauges).await;
        }
        Command::DrainEod(a) => {
            let sub = DrainRun {
                budget: Budget::EndOfDay,
                args: &a,
                reserve: 0,
            };
            return drain(cfg, sub, lock_wait, quiet, &cancel, gauges).await;
        }
        Command::Credits => {
            let c = cmd::credits::run(cfg).await?;
            if cfg.json {
                output::json(&c)?;
            } else if c.unlimited {
                output::line(&format!("no daily limit ({} plan)", c.plan))?;
            } else {
                output::line(&format!("{}", c.credits))?;
            }
        }
        Command::Peek(a) => {
            let p = cmd::peek::run(cfg, a.count, lock_wait).await?;
            if cfg.json {
                output::json(&p)?;
            } else {
                output::line(&cmd::peek::table(&p, cfg))?;
            }
        }
        Command::Reprioritize(a) if a.dry_run => {
            let p = cmd::reprioritize::plan(cfg, lock_wait).await?;
            if cfg.json {
                output::json(&p)?;
            } else {
                output::line(&cmd::reprioritize::render_plan(&p, cfg))?;
            }
        }
        Command::Reprioritize(_) => {
            let s = cmd::reprioritize::run(cfg, lock_wait, &cancel).await?;
            if cfg.json {
                output::json(&s)?;
            } else if !quiet {
                output::line(&format!(
                    "re-published {} mail(s), {} with a new priority; parked {} expired and {} unreadable",
                    s.requeued, s.changed, s.expired, s.parked
                ))?;
            }
        }
        Command::DeadLetters(a) => {
            use cli::DeadLettersAction as A;
            use cmd::dead_letters::{Action, Selection};
            let sel = |s: cli::Selection| Selection {
                all: s.all,
                indexes: s.index,
                reason: s.reason,
            };
            let action = match a.action {
                None => Action::List(100),
                Some(A::List { count }) => Action::List(count),
                Some(A::Replay(s)) => Action::Replay(sel(s)),
                Some(A::Purge(s)) => Action::Purge(sel(s)),
            };
            let listing = matches!(action, Action::List(_));
            let r = cmd::dead_letters::run(cfg, action, lock_wait).await?;
            if cfg.json {
                output::json(&r)?;
            } else if listing || !quiet {
                output::line(&cmd::dead_letters::render(&r, cfg, listing))?;
            }
        }
        Command::Stats => {
            let s = cmd::stats::run(cfg, lock_wait).await?;
            gauges.queue_ready = Some(s.queue.ready);
            gauges.bands = Some(s.bands.clone());
            gauges.retrying = Some(s.retrying);
            gauges.parked = Some(s.parked);
            gauges.credits = s.credits;
            if cfg.json {
                output::json(&s)?;
            } else {
                output::line(&cmd::stats::render(&s, cfg))?;
            }
        }
    }
    Ok(EXIT_OK)
}

/// Which drain, with what.
struct DrainRun<'a> {
    budget: Budget,
    args: &'a cli::DrainArgs,
    reserve: u32,
}

async fn drain(
    cfg: &Config,
    run: DrainRun<'_>,
    lock_wait: Duration,
    quiet: bool,
    cancel: &Cancel,
    gauges: &mut metrics::RunGauges,
) -> Result<u8> {
    let DrainRun {
        budget,
        args: a,
        reserve,
    } = run;
    let opts = drain::Options {
        budget,
        concurrency: usize::from(a.concurrency),
        max_attempts: a.max_attempts,
        lock_wait,
        reserve,
    };
    if a.dry_run {
        let p = drain::plan(cfg, &opts).await?;
        if cfg.json {
            output::json(&p)?;
        } else {
            output::line(&drain::render_plan(&p, cfg))?;
        }
        return Ok(EXIT_OK);
    }
    let s = drain::run(cfg, &opts, cancel).await?;
    {
        gauges.queue_ready = Some(s.remaining);
        gauges.credits = Some((s.credits - f64::from(s.sent)).max(0.0));
        if let Some(d) = &s.depth {
            gauges.bands = Some(d.bands.clone());
            gauges.retrying = Some(d.retrying);
            gauges.parked = Some(d.parked);
        }
    }
    if cfg.json {
        output::json(&s)?;
    } else if !quiet || s.fatal.is_some() {
        let mut text = format!(
            "sent {} of a budget of {} ({} credits); {} failed, {} expired, {} parked, {} to retry, {} already sent; {} still queued",
            s.sent,
            s.budget,
            s.credits,
            s.failed,
            s.expired,
            s.parked,
            s.retried,
            s.already_sent,
            s.remaining
        );
        if let Some(why) = &s.stopped {
            text.push_str(&format!("; stopped: {why}"));
        }
        output::line(&text)?;
    }
    if let Some(f) = s.failure() {
        return Err(f.into());
    }
    if let Some(sig) = cancel.received() {
        return Err(Failure::Interrupted(sig).into());
    }
    Ok(EXIT_OK)
}
