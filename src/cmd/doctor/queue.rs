//! The broker and the queue: reachable, AMQP, login and vhost; the main queue (exists,
//! durable, a priority queue), its retry, parking and staging queues, and what an
//! interrupted `reprioritize` left staged. Nothing is declared that does not exist.

use super::Check;
use crate::config::Config;
use crate::error::{EXIT_FAILURE, EXIT_UNAVAILABLE, EXIT_USAGE};
use crate::mailbox::{self, Inspector};

const RUNNING: &str = "start RabbitMQ, or fix the host and port of QUEUE_SERVICE_URL / --amqp-url (rabbitmq-diagnostics ping)";

/// The broker and queue checks, in order; those that depend on a failed one are left out.
pub async fn checks(cfg: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    let url = &cfg.amqp_display;
    let target = match mailbox::target(cfg.amqp_url.expose()) {
        Ok(t) => t,
        Err(e) => {
            out.push(Check::fail(
                "broker",
                EXIT_USAGE,
                format!("the RabbitMQ URL {url} cannot be read: {e}"),
                "fix QUEUE_SERVICE_URL / --amqp-url (amqp://USER:PASSWORD@HOST:PORT/VHOST)",
            ));
            return out;
        }
    };
    if let Err(e) = mailbox::reachable(&target, cfg.timeout).await {
        out.push(Check::fail(
            "broker",
            EXIT_UNAVAILABLE,
            format!(
                "nothing answers at {}:{} ({url}): {e}",
                target.host, target.port
            ),
            RUNNING,
        ));
        return out;
    }
    let inspector = match Inspector::connect(cfg).await {
        Ok(i) => i,
        Err(e) => {
            let text = format!("{e:#}");
            let hint = mailbox::hint_for(&text);
            out.push(Check::fail(
                "broker",
                EXIT_UNAVAILABLE,
                format!(
                    "{}:{} accepts connections, but the AMQP connection failed: {text}",
                    target.host, target.port
                ),
                if hint.starts_with("is it running") {
                    "make sure the URL points to RabbitMQ's AMQP port (5672, 5671 for amqps://)"
                } else {
                    hint
                },
            ));
            return out;
        }
    };
    out.push(Check::pass(
        "broker",
        format!(
            "{url}: reachable, speaks AMQP 0-9-1, logged in as {}, vhost {} open",
            target.user, target.vhost
        ),
    ));
    queues(&inspector, cfg, &mut out).await;
    inspector.close().await;
    out
}

/// The queue checks on a connected broker.
async fn queues(i: &Inspector, cfg: &Config, out: &mut Vec<Check>) {
    let name = cfg.queue.as_str();
    let lost = |e: anyhow::Error| {
        Check::fail(
            "queue",
            EXIT_UNAVAILABLE,
            format!("RabbitMQ stopped answering while looking at {name}: {e:#}"),
            "run doctor again; if it persists, look at RabbitMQ's log",
        )
    };
    let info = match i.main().await {
        Ok(Some(info)) => info,
        Ok(None) => {
            out.push(Check::fail(
                "queue",
                EXIT_USAGE,
                format!("queue {name} does not exist on {}", cfg.amqp_display),
                "check --queue / ACASO_MAIL_QUEUE against the producer's queue name (rabbitmqctl list_queues name); doctor creates nothing; only publish creates it (`acaso-mail publish -n 0` is the deploy's set-up)",
            ));
            return;
        }
        Err(e) => return out.push(lost(e)),
    };
    let summary = format!(
        "{name}: {} ready, {}, x-max-priority {}",
        info.ready,
        match info.durable {
            Some(false) => "NOT durable",
            _ => "durable",
        },
        info.max_priority
    );
    out.push(if info.max_priority == 0 {
        Check::fail(
            "queue",
            EXIT_FAILURE,
            format!("{summary}: not a priority queue, mails go out in arrival order"),
            "move to a priority queue (docs/sending-policy.md, \"Urgency and priorities\")",
        )
    } else if info.durable == Some(false) {
        Check::fail(
            "queue",
            EXIT_FAILURE,
            format!("{summary}: a broker restart loses every queued mail"),
            "move to a durable queue (docs/sending-policy.md, \"Urgency and priorities\")",
        )
    } else {
        Check::pass("queue", summary)
    });
    match i.missing_side_queues().await {
        Ok(missing) if missing.is_empty() => out.push(Check::pass(
            "queue.side",
            format!(
                "the retry queues, {} and {} exist",
                i.topology().parking(),
                i.topology().staging()
            ),
        )),
        Ok(missing) => out.push(Check::fail(
            "queue.side",
            EXIT_FAILURE,
            format!("missing: {}", missing.join(", ")),
            "run `acaso-mail publish -n 0` once: it declares them and publishes nothing",
        )),
        Err(e) => return out.push(lost(e)),
    }
    match i.staged().await {
        Ok(0) => out.push(Check::pass(
            "queue.reprioritize",
            "no interrupted reprioritize: nothing staged",
        )),
        Ok(n) => out.push(Check::fail(
            "queue.reprioritize",
            EXIT_FAILURE,
            format!(
                "{n} batch(es) of mails wait in {}, left by an interrupted reprioritize, out of the drains' reach",
                i.topology().staging()
            ),
            "run `acaso-mail reprioritize`: it puts them back first",
        )),
        Err(e) => out.push(lost(e)),
    }
}
