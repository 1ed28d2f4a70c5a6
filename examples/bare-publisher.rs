//! The practical limit for `acaso-mail publish`: a minimal lapin publisher with
//! pipelined publisher confirms (window 1000), persistent messages, to a queue with
//! `x-max-priority` 9. Used by `bench/run` as the baseline in the same run.
//!
//! `cargo run --release --example bare-publisher -- QUEUE COUNT [--with-properties]`
//!
//! `--with-properties` adds what every acaso-mail message carries (a message_id and a
//! timestamp), for a like-for-like comparison.

use std::collections::VecDeque;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let queue = args.next().ok_or("usage: bare-publisher QUEUE COUNT")?;
    let count: usize = args
        .next()
        .ok_or("usage: bare-publisher QUEUE COUNT")?
        .parse()?;
    let with_properties = args.next().as_deref() == Some("--with-properties");
    let url = std::env::var("QUEUE_SERVICE_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let mut qargs = FieldTable::default();
    qargs.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(9));
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        qargs,
    )
    .await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    // A body of the size the Acaso producer writes.
    let body = br#"{"mail_params": {"mentor_name": "Maria Barros", "mentoring_datetime": "2026-11-28 14:06:34.887287-03:00", "mentored_name": "Enzo da Concei\u00e7\u00e3o", "mentor_id": null, "mentored_id": "e2f3fc03-fb30-43dc-b358-632bfc01a4fb"}, "recipient": {"name": "Maria Barros", "email": "someone@example.org"}, "template": 16}"#;
    let mut pending = VecDeque::new();
    for i in 0..count {
        if pending.len() >= 1000 {
            let c: lapin::PublisherConfirm = pending.pop_front().ok_or("empty")?;
            c.await?;
        }
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_priority((i % 10) as u8);
        if with_properties {
            props = props
                .with_message_id(format!("{i:08x}-5e1f-4a7b-8c2d-0123456789ab").into())
                .with_timestamp(1_795_000_000);
        }
        pending.push_back(
            ch.basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await?,
        );
    }
    for c in pending {
        c.await?;
    }
    conn.close(200, "done".into()).await?;
    Ok(())
}
