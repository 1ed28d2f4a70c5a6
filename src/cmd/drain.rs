//! `drain-hourly` and `drain-eod`: one drain with two budgets. This command gathers what
//! the drain needs (the lock, the journal, the credits, the queue), runs the drain
//! state machine, and reports what it did; the machine itself lives in `crate::drain`.

use crate::brevo::{self, Brevo};
use crate::census::Census;
use crate::cmd::brevo_day;
use crate::cmd::staging::finish_interrupted;
use crate::config::Config;
use crate::day::Today;
use crate::drain::{Action, Budget, Drain, Io, Options, Pace, Plan, Rules, Summary, plan};
use crate::error::Failure;
use crate::mailbox::{Rabbit, Which};
use crate::metrics::{self, RunGauges};
use crate::output::{self, Report};
use crate::signal::Cancel;
use crate::state::{self, Store};
use anyhow::Result;

/// How long sent and attempted mails are remembered: they matter only while a
/// redelivery is possible (minutes, an hour or two with retries); a month is a wide
/// margin, and keeps the file small.
const JOURNAL_KEEP: chrono::Duration = chrono::Duration::days(30);

/// What to drain, and how.
#[derive(Debug, Clone, Copy)]
pub struct Args {
    /// The budget.
    pub budget: Budget,
    /// Concurrency and attempts.
    pub options: Options,
    /// Park mail to suppressed addresses (see `crate::drain::Rules::suppress`).
    pub suppress: bool,
}

/// The run's rules: its caps from the credits and Brevo's day, and "now".
fn rules(
    cfg: &Config,
    budget: Budget,
    account: &brevo::Account,
    pace: Pace,
    suppress: bool,
) -> Rules {
    let now = cfg.now();
    let credits = if account.unlimited() {
        u32::MAX
    } else {
        account.sendable()
    };
    Rules {
        tz: cfg.tz,
        now,
        fixed: cfg.fixed_now.is_some(),
        caps: budget.caps(credits, pace),
        suppress,
    }
}

/// Runs a drain.
pub async fn run(cfg: &Config, args: Args, cancel: &Cancel) -> Result<Report> {
    let key = cfg.require_api_key()?.clone();
    let store = Store::locked(cfg.state(), cfg.lock_wait)?;
    let mut mailbox = Rabbit::open(cfg).await?;
    // Mails an interrupted reprioritize left out of the queue's order go back first.
    finish_interrupted(&mut mailbox, &store, cfg.tz, cfg.now_not_ahead(), cancel).await?;
    // The run's "now" is when Brevo answered: a reset that reading shows is behind it.
    let (account, now, today) =
        brevo_day::read_and_learn(cfg, &store, args.budget.subcommand()).await?;
    store.prune(now - JOURNAL_KEEP)?;
    let position = today.position.as_ref();
    let pace = Pace::of(position, now, cfg.tz);
    let rules = rules(cfg, args.budget, &account, pace, args.suppress);
    let bar = output::progress(
        cfg,
        u64::from(rules.caps.soft.min(mailbox.info().ready)),
        "drain",
    );
    let sender = Brevo::new(&cfg.brevo_url, key, cfg.timeout);
    let io = Io {
        mailbox: &mut mailbox,
        sender,
        store: &store,
        cancel,
        progress: &bar,
    };
    let drain = Drain::new(io, rules, args.options, account.credits);
    let mut s = drain.run().await?;
    s.remaining = mailbox.ready().await.unwrap_or(0);
    let mut gauges = RunGauges {
        queue_ready: Some(s.remaining),
        credits: Some((s.credits - f64::from(s.sent)).max(0.0)),
        next_reset: position.map(|p| p.next.by.timestamp() as f64),
        ..RunGauges::default()
    };
    if cfg.pushgateway.is_some() {
        // Queue depths only when metrics are pushed: the bands cost a read of the queue.
        // A broker that is gone fails these at once; they are left out then.
        if let (Ok(depth), Ok(head)) = (
            mailbox.depth().await,
            mailbox.browse(Which::Main, s.remaining.min(cfg.scan)).await,
        ) {
            let scale = mailbox.info().scale();
            let census = Census::of(&head, s.remaining, scale, now, cfg.tz);
            gauges.bands = Some(census.exact_counts());
            gauges.retrying = Some(depth.retrying);
            gauges.parked = Some(depth.parked);
        }
    }
    // "Today" is Brevo's day once its reset is known (named by its local date).
    for (kind, n) in s.tallies() {
        store.add_tally(&cfg.queue, today.name, kind, n)?;
    }
    // Metric totals are kept whether or not a Pushgateway is configured yet.
    metrics::record_drain(&store, args.budget.subcommand(), &totals(&s))?;
    mailbox.close().await;
    let failure = s
        .failure()
        .or_else(|| cancel.received().map(Failure::Interrupted));
    let fatal = s.fatal.is_some();
    let mut report = Report::json(&s)?.line(s.line());
    if matches!(args.budget, Budget::EndOfDay) && pace.early_in_day {
        report = report.line(brevo_day::early_eod_note(cfg.tz, &today.learned.reset, now));
    }
    if fatal {
        report = report.answer();
    }
    report.gauges = gauges;
    report.failure = failure;
    Ok(report)
}

/// A dry run: reads the credits and the head of the queue (handing every mail back in
/// place) and shows what a drain would send or set aside, in order.
pub async fn dry_run(cfg: &Config, budget: Budget, suppress: bool) -> Result<Report> {
    cfg.require_api_key()?;
    let _lock = state::lock(cfg.state(), cfg.lock_wait)?;
    let account = brevo::account::account(cfg).await?;
    let journal = if cfg.state_url.is_some() || cfg.state_dir.join(state::DB_FILE).exists() {
        Some(Store::open(cfg.state())?)
    } else {
        None
    };
    // A dry run records nothing: it goes by what earlier runs saw.
    let now = cfg.now();
    let today = Today::at(brevo_day::known(journal.as_ref(), cfg)?, now, cfg.tz);
    let rules = rules(
        cfg,
        budget,
        &account,
        Pace::of(today.position.as_ref(), now, cfg.tz),
        suppress,
    );
    let mailbox = Rabbit::open(cfg).await?;
    let head = mailbox
        .browse(Which::Main, mailbox.info().ready.min(cfg.scan))
        .await?;
    mailbox.close().await;
    plan_report(&plan(&rules, journal.as_ref(), account.credits, head)?)
}

/// The dry run's plan as a report: a line and a table for people, the plan for scripts.
fn plan_report(plan: &Plan) -> Result<Report> {
    let sends = plan
        .mails
        .iter()
        .filter(|m| m.action == Action::Send)
        .count();
    let rows = plan.mails.iter().enumerate().map(|(i, m)| {
        vec![
            (i + 1).to_string(),
            m.action.word().to_string(),
            m.urgency.clone(),
            m.priority.to_string(),
            m.who.template_cell(),
            m.who.to_cell(),
            m.reason.clone().unwrap_or_default(),
        ]
    });
    let headers = [
        "#",
        "action",
        "urgency",
        "priority",
        "template",
        "recipient",
        "reason",
    ];
    let beyond = u32::try_from(sends)
        .unwrap_or(u32::MAX)
        .saturating_sub(plan.budget);
    let why = if beyond > 0 {
        format!(
            " ({beyond} beyond the budget: mail due today goes out beyond --limit while credits last; --strict-limit stops at the limit)"
        )
    } else {
        String::new()
    };
    Ok(Report::json(plan)?
        .line(format!(
            "dry run: would send {sends} of a budget of {}{why} ({} credits); nothing was sent or moved",
            plan.budget, plan.credits
        ))
        .table(&headers, rows)
        .answer())
}

/// The counts metrics keep across runs, from what the drain did.
fn totals(s: &Summary) -> metrics::Totals {
    metrics::Totals {
        sent: s.sent,
        failed: s.failed,
        retried: s.retried,
        expired: s.expired,
        already_sent: s.already_sent,
        rate_limited: s.rate_limited,
        sent_by_template: s.sent_by_template.clone(),
        sent_by_priority: s.sent_by_priority.clone(),
        parked_by_reason: s.parked_by_reason.clone(),
    }
}
