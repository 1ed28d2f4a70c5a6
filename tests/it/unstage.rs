//! A `reprioritize` killed mid-run leaves mails in its staging queue, out of the drains'
//! reach. The next run that holds the run lock (a drain, `stats`) puts them back first:
//! the most urgent mail is not stranded for a day, and `stats` counts every mail.

use std::time::Duration;

use crate::it::publish::NOW;
use crate::support::proxy::Method::{BasicAck, BasicPublish};
use crate::support::*;

const URGENT: usize = 10;
const LATER: usize = 990;
const CREDITS: u64 = 40;

/// 10 mails due today and 990 due in 5 to 9 days, published (urgent last, so that they
/// are not the first out), with credits for 40.
fn world(name: &str) -> World {
    let w = World::new(name, CREDITS as f64);
    let later: Vec<_> = (0..LATER)
        .map(|i| {
            let day = 2 + i % 5;
            job(
                &format!("later{i}@example.org"),
                3,
                &format!("2026-12-0{day}T10:00:00-03:00"),
            )
        })
        .collect();
    w.publish(&later, NOW);
    let urgent: Vec<_> = (0..URGENT)
        .map(|i| {
            job(
                &format!("urgent{i}@example.org"),
                3,
                "2026-11-27T20:00:00-03:00",
            )
        })
        .collect();
    w.publish(&urgent, NOW);
    w
}

#[test]
fn a_killed_reprioritize_strands_no_urgent_mail() {
    // Held (then killed with SIGKILL) at known points: early and late on the way out
    // (4 batches of 250), on the way back (a mail's copy), and at an ack.
    for (method, nth) in [
        (BasicPublish, 2),
        (BasicPublish, 4),
        (BasicPublish, 300),
        (BasicAck, 2),
    ] {
        let w = world(&format!("unstage-{nth}"));
        let proxy = proxy::Proxy::hold_at(method, nth);
        let child = spawn(w.std_cmd().env("QUEUE_SERVICE_URL", proxy.url()).args([
            "--now",
            NOW,
            "-q",
            "reprioritize",
        ]));
        proxy.wait_triggered(Duration::from_secs(120));
        child.kill_mid_run();
        drop(proxy);
        let total = (URGENT + LATER) as u32;
        let mut staged = 0;
        assert!(
            wait_for(Duration::from_secs(30), || {
                staged = census::staged_mails(&w.amqp, &w.queue);
                w.ready(&w.queue) + staged >= total
            }),
            "mails missing after a kill at {method:?} #{nth}"
        );
        let at = format!("kill at {method:?} #{nth} ({staged} staged)");
        let s = w.json(NOW, &["stats"]);
        assert_eq!(s["reprioritizing"], 0, "{at}: {s}");
        assert_eq!(s["bands_complete"], true, "{at}: {s}");
        let queued = s["queue"]["ready"].as_u64().unwrap_or(0);
        assert!(queued >= u64::from(total), "{at}: {s}");
        assert!(
            s["forecast"]["due_today"].as_u64() >= Some(URGENT as u64),
            "{at}: stats lost today's mail: {s}"
        );
        let d = w.json(NOW, &["drain-eod"]);
        assert_eq!(
            d["sent"].as_u64(),
            Some(CREDITS),
            "{at}: credits unspent: {d}"
        );
        let sent = recipients(&w.fake);
        for i in 0..URGENT {
            let urgent = format!("urgent{i}@example.org");
            assert!(sent.contains(&urgent), "{at}: {urgent} not sent: {d}");
        }
        let distinct: std::collections::HashSet<_> = sent.iter().collect();
        assert_eq!(distinct.len(), sent.len(), "{at}: a mail sent twice");
    }
}
