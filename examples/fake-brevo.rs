//! A stand-in for Brevo on your machine: the same fake the test suite uses, so that
//! acaso-mail can be tried end to end without a Brevo account. Nothing is mailed.
//!
//! `cargo run --example fake-brevo -- [--port 8025] [--credits 300] [--key xkeysib-local] [--latency-ms 0] [--host 127.0.0.1] [--reset-utc HH:MM]`
//!
//! `--host 0.0.0.0` lets other containers reach it (the compose stack's `brevo` service).
//! `--reset-utc 00:00` puts the credits back to `--credits` every day at that time (UTC).
//! `--events requests,delivered` reports those delivery events for every mail it accepts
//! (`acaso-mail events` reads them).

#[path = "../tests/support/fake_brevo.rs"]
mod fake_brevo;
// The fake checks requests against Brevo's schemas with the test suite's checker.
#[allow(dead_code)]
#[path = "../tests/support/schema.rs"]
mod schema;

use std::time::Duration;

fn main() {
    let mut port = 8025u16;
    let mut credits = 300.0f64;
    let mut key = String::from("xkeysib-local");
    let mut latency_ms = 0u64;
    let mut host = String::from("127.0.0.1");
    let mut reset_utc: Option<i64> = None;
    let mut events: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        let bad = |what: &str| -> ! {
            eprintln!("fake-brevo: {flag} needs {what}");
            std::process::exit(2)
        };
        match flag.as_str() {
            "--port" => {
                port = value
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| bad("a port number"))
            }
            "--credits" => {
                credits = value
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| bad("a number"))
            }
            "--key" => key = value.unwrap_or_else(|| bad("a key")),
            "--host" => host = value.unwrap_or_else(|| bad("an address such as 0.0.0.0")),
            "--reset-utc" => {
                reset_utc = Some(
                    value
                        .as_deref()
                        .and_then(|v| v.split_once(':'))
                        .and_then(|(h, m)| Some((h.parse::<i64>().ok()?, m.parse::<i64>().ok()?)))
                        .filter(|(h, m)| (0..24).contains(h) && (0..60).contains(m))
                        .map(|(h, m)| h * 3600 + m * 60)
                        .unwrap_or_else(|| bad("a time of day HH:MM (UTC)")),
                )
            }
            "--events" => {
                events = value
                    .map(|v| v.split(',').map(str::to_string).collect())
                    .unwrap_or_else(|| bad("event names, comma-separated (requests,delivered)"))
            }
            "--latency-ms" => {
                latency_ms = value
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| bad("milliseconds"))
            }
            _ => {
                eprintln!(
                    "usage: fake-brevo [--port 8025] [--credits 300] [--key xkeysib-local] [--latency-ms 0] [--host 127.0.0.1] [--reset-utc HH:MM] [--events requests,delivered]"
                );
                std::process::exit(2)
            }
        }
    }
    let fake = match fake_brevo::FakeBrevo::listen(&host, port, &key, credits) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fake-brevo: cannot listen on {host}:{port}: {e}");
            std::process::exit(1)
        }
    };
    fake.state().latency = Duration::from_millis(latency_ms);
    fake.state().delivery.on_accept = events;
    if let Some(tod) = reset_utc {
        fake.reset_daily_at(tod);
    }
    println!(
        "fake Brevo listening: SENDINBLUE_URL={} SENDINBLUE_API_KEY={key} ({credits} credits)",
        fake.url
    );
    // Each accepted mail is printed by the server before it answers 201.
    fake.state().print_accepted = true;
    loop {
        std::thread::park();
    }
}
