//! `events`: Brevo's delivery events read, counted, pushed and published to the app's
//! exchange; the addresses it reports dead or blocked suppressed in later drains.

use lapin::options::{ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;

use crate::support::*;

/// The tests' "now": mails sent at 12:00 (-03:00), events read an hour later.
const SENT: &str = "2026-11-27T12:00:00-03:00";
const READ: &str = "2026-11-27T13:00:00-03:00";
const LATER: &str = "2026-11-27T14:00:00-03:00";
const DEADLINE: &str = "2026-11-29T10:00:00-03:00";

fn unix(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .expect("an instant")
        .timestamp()
}

/// The app's side: a durable topic exchange of `kind` and a queue bound to it for
/// every event (`#`). Returns the queue's name.
fn app_queue(w: &World, exchange: &str, kind: ExchangeKind) -> String {
    let queue = format!("{}.outcomes", w.queue);
    let (ex, q) = (exchange.to_string(), queue.clone());
    block_on("binding the app's queue", async move {
        let conn = Connection::connect(AMQP, ConnectionProperties::default())
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        ch.exchange_declare(ex.as_str().into(), kind, durable, FieldTable::default())
            .await
            .expect("exchange.declare");
        let qd = lapin::options::QueueDeclareOptions::default();
        ch.queue_declare(q.as_str().into(), qd, FieldTable::default())
            .await
            .expect("queue.declare");
        ch.queue_bind(
            q.as_str().into(),
            ex.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue.bind");
        let _ = conn.close(200, "ok".into()).await;
    });
    queue
}

fn delete_exchange(exchange: &str) {
    let ex = exchange.to_string();
    block_on("deleting the exchange", async move {
        let conn = Connection::connect(AMQP, ConnectionProperties::default())
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        let _ = ch
            .exchange_delete(ex.as_str().into(), ExchangeDeleteOptions::default())
            .await;
        let _ = conn.close(200, "ok".into()).await;
    });
}

/// Publishes a mail to each of `to` and drains them all at `SENT`; the fake's clock too.
fn send(w: &World, to: &[&str], deadline: &str) {
    w.fake.set_now(unix(SENT));
    let jobs: Vec<Value> = to.iter().map(|t| job(t, 9, deadline)).collect();
    w.publish(&jobs, SENT);
    let s = w.json(SENT, &["drain-eod"]);
    assert_eq!(s["sent"].as_u64(), Some(to.len() as u64), "{s}");
}

/// The outcomes the app's queue received, each checked against the published schema.
fn outcomes(w: &World, queue: &str) -> Vec<Value> {
    let schema: Value =
        serde_json::from_str(include_str!("../../schemas/delivery-outcome.schema.json"))
            .expect("the schema is JSON");
    w.take_all(queue)
        .into_iter()
        .map(|(_, body)| {
            let v: Value = serde_json::from_slice(&body).expect("an outcome is JSON");
            let bad = schema::violations(&schema, &v);
            assert!(bad.is_empty(), "{v} breaks the outcome schema: {bad:?}");
            v
        })
        .collect()
}

fn events_of(outcomes: &[Value]) -> Vec<String> {
    let mut e: Vec<String> = outcomes
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o["recipient"].as_str().unwrap_or(""),
                o["event"].as_str().unwrap_or("")
            )
        })
        .collect();
    e.sort();
    e
}

#[test]
fn bounces_complaints_and_blocks_are_pushed_published_and_suppressed() {
    let w = World::new("events", 300.0);
    let pg = Pushgateway::start();
    let exchange = format!("{}.events", w.queue);
    let app = app_queue(&w, &exchange, ExchangeKind::Topic);
    let to = [
        "ok@example.org",
        "bounced@example.org",
        "spam@example.org",
        "blocked@example.org",
    ];
    send(&w, &to, DEADLINE);
    {
        let mut s = w.fake.state();
        let t = unix(SENT) + 60;
        for (i, _) in to.iter().enumerate() {
            s.report(i, "requests", None, t);
        }
        s.report_to("ok@example.org", "delivered", None, t + 5);
        s.report_to(
            "bounced@example.org",
            "hardBounces",
            Some("550 5.1.1 no such user"),
            t + 6,
        );
        s.report_to("spam@example.org", "delivered", None, t + 7);
        s.report_to("spam@example.org", "spam", None, t + 600);
        s.block("blocked@example.org", "adminBlocked", t + 700);
    }
    w.fake.set_now(unix(READ));
    let run = |args: &[&str]| {
        let out = w
            .cmd()
            .env("PUSHGATEWAY_URL", &pg.url)
            .args(["--now", READ, "--json", "events", "--exchange", &exchange])
            .args(args)
            .output()
            .expect("run");
        json_of(&out, 0)
    };
    let first = run(&[]);
    assert_eq!(
        counts(
            &first,
            &[
                "read",
                "new",
                "matched",
                "blocked",
                "newly_suppressed",
                "published"
            ]
        ),
        [Some(8), Some(8), Some(8), Some(1), Some(3), Some(8)],
        "{first}"
    );
    assert_eq!(
        first["by_event"]["hardBounces"].as_u64(),
        Some(1),
        "{first}"
    );
    assert_eq!(first["complete"], true);
    let got = outcomes(&w, &app);
    assert_eq!(got.len(), 8);
    let bounce = got
        .iter()
        .find(|o| o["event"] == "hardBounces")
        .expect("the bounce");
    assert_eq!(bounce["recipient"], "bounced@example.org");
    assert_eq!(bounce["template_id"], 9);
    assert_eq!(bounce["reason"], "550 5.1.1 no such user");
    assert_eq!(bounce["suppressed"], true);
    assert!(
        bounce["identity"]
            .as_str()
            .is_some_and(|i| i.starts_with("id:")),
        "{bounce}"
    );
    println!("one published outcome: {bounce}");
    // The counts, pushed, with every known label set from 0.
    let sub = "subcommand=\"events\"";
    let n = |event: &str, template: &str| {
        pg.value(
            "acaso_mail_delivery_events_total",
            &[
                sub,
                &format!("event=\"{event}\""),
                &format!("template=\"{template}\""),
            ],
        )
    };
    assert_eq!(n("hardBounces", "9"), Some(1.0));
    assert_eq!(n("requests", "9"), Some(4.0));
    assert_eq!(n("spam", "9"), Some(1.0));
    assert_eq!(n("clicks", "7"), Some(0.0));
    assert_eq!(pg.value("acaso_mail_last_run_success", &[sub]), Some(1.0));

    // A second run reads nothing twice: nothing new counted, pushed or published.
    let second = run(&[]);
    assert_eq!(
        counts(&second, &["read", "new", "published"]),
        [Some(0), Some(0), Some(0)],
        "{second}"
    );
    assert!(outcomes(&w, &app).is_empty());
    assert_eq!(n("hardBounces", "9"), Some(1.0));

    // A later drain parks the bounced, complaining and blocked recipients' new mails as
    // suppressed, without a send, and sends the other.
    let before = w.fake.accepted().len();
    let again = "2026-11-29T11:00:00-03:00";
    let jobs: Vec<Value> = to.iter().map(|t| job(t, 9, again)).collect();
    w.publish(&jobs, LATER);
    let drained = w.json(LATER, &["drain-eod"]);
    assert_eq!(
        counts(&drained, &["sent", "parked"]),
        [Some(1), Some(3)],
        "{drained}"
    );
    assert_eq!(recipients(&w.fake)[before..], ["ok@example.org"]);
    let parked = w.json(LATER, &["dead-letters"]);
    let parked = parked["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(parked.len(), 3);
    for m in &parked {
        assert_eq!(m["reason"], "suppressed", "{m}");
        let detail = m["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("(source: Brevo "), "{detail}");
    }
    let stats = w.json(LATER, &["stats"]);
    assert_eq!(
        stats["delivery"]["events"]["hardBounces"].as_u64(),
        Some(1),
        "{stats}"
    );
    assert_eq!(stats["delivery"]["suppressed"].as_u64(), Some(3), "{stats}");
    let text = w
        .cmd()
        .args(["--now", LATER, "stats"])
        .output()
        .expect("stats");
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(text.contains("delivery today: delivered 2, hardBounces 1, requests 4, spam 1; 3 address(es) suppressed"), "{text}");
    println!("stats after a day with bounces:\n{text}");

    // --no-suppress sends to a suppressed address all the same.
    let once_more = job("spam@example.org", 9, "2026-11-30T10:00:00-03:00");
    w.publish(&[once_more], LATER);
    let forced = w.json(LATER, &["drain-eod", "--no-suppress"]);
    assert_eq!(
        counts(&forced, &["sent", "parked"]),
        [Some(1), Some(0)],
        "{forced}"
    );
    // Replaying the suppressed mails (the addresses fixed) lifts their suppression: the
    // next drain sends them.
    let replayed = w.json(LATER, &["dead-letters", "replay", "--reason", "suppressed"]);
    assert_eq!(replayed["replayed"].as_u64(), Some(3), "{replayed}");
    let drained = w.json(LATER, &["drain-eod"]);
    assert_eq!(
        counts(&drained, &["sent", "parked"]),
        [Some(3), Some(0)],
        "{drained}"
    );
    delete_queue(&app);
    delete_exchange(&exchange);
}

#[test]
fn a_brevo_failure_mid_read_is_resumed_where_it_stopped() {
    let w = World::new("events-resume", 300.0);
    let exchange = format!("{}.events", w.queue);
    let app = app_queue(&w, &exchange, ExchangeKind::Topic);
    let to = ["a@example.org", "b@example.org", "c@example.org"];
    send(&w, &to, DEADLINE);
    {
        let mut s = w.fake.state();
        for i in 0..3 {
            s.report(i, "requests", None, unix(SENT) + 60);
            s.report(i, "delivered", None, unix(SENT) + 70);
        }
        // The first page passes, the second fails.
        s.delivery.events_script.extend([200, 503]);
    }
    w.fake.set_now(unix(READ));
    let run = || {
        w.cmd()
            .args([
                "--now",
                READ,
                "--json",
                "events",
                "--exchange",
                &exchange,
                "--page-size",
                "2",
            ])
            .output()
            .expect("run")
    };
    let s = json_of(&run(), 4);
    assert_eq!(
        counts(&s, &["read", "new", "published"]),
        [Some(2), Some(2), Some(2)],
        "{s}"
    );
    assert_eq!(s["complete"], false);
    let s = json_of(&run(), 0);
    assert_eq!(
        counts(&s, &["read", "new", "published"]),
        [Some(4), Some(4), Some(4)],
        "{s}"
    );
    let queries = w.fake.state().delivery.events_queries.clone();
    let offsets: Vec<&str> = queries
        .iter()
        .filter_map(|q| q.split('&').find(|p| p.starts_with("offset=")))
        .collect();
    assert_eq!(
        offsets,
        ["offset=0", "offset=2", "offset=2", "offset=4", "offset=6"]
    );
    let got = outcomes(&w, &app);
    assert_eq!(got.len(), 6, "each event published once");
    assert_eq!(
        events_of(&got)
            .iter()
            .filter(|e| e.ends_with(" delivered"))
            .count(),
        3
    );
    delete_queue(&app);
    delete_exchange(&exchange);
}

#[test]
fn publishing_that_fails_exits_4_and_keeps_what_was_read() {
    let w = World::new("events-publish", 300.0);
    let exchange = format!("{}.events", w.queue);
    // The exchange exists as another kind: declaring it as a topic exchange is refused.
    let app = app_queue(&w, &exchange, ExchangeKind::Fanout);
    send(&w, &["a@example.org"], DEADLINE);
    w.fake
        .state()
        .report(0, "hardBounces", Some("550"), unix(SENT) + 60);
    w.fake.set_now(unix(READ));
    let run = || {
        w.cmd()
            .args(["--now", READ, "--json", "events", "--exchange", &exchange])
            .output()
            .expect("run")
    };
    let failed = run();
    assert_eq!(failed.status.code(), Some(4));
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("wait in the journal for the next run"),
        "{err}"
    );
    delete_queue(&app);
    delete_exchange(&exchange);
    let app = app_queue(&w, &exchange, ExchangeKind::Topic);
    let s = json_of(&run(), 0);
    // Nothing read again: the outcome waited in the journal.
    assert_eq!(
        counts(&s, &["read", "new", "published"]),
        [Some(0), Some(0), Some(1)],
        "{s}"
    );
    let got = outcomes(&w, &app);
    assert_eq!(events_of(&got), ["a@example.org hardBounces"]);
    // The bounced address was suppressed by the first run all the same.
    let stats = w.json(READ, &["stats"]);
    assert_eq!(stats["delivery"]["suppressed"].as_u64(), Some(1), "{stats}");
    delete_queue(&app);
    delete_exchange(&exchange);
}
