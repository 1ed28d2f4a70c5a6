//! The practical limit for `acaso-mail reprioritize`: a bare lapin consume-and-republish
//! loop. It moves COUNT messages from FROM to TO (declared durable, `x-max-priority` 9),
//! with the same safety as reprioritize (persistent copies, publisher confirms, each
//! original acked only once its copy is confirmed) and the same settings (prefetch
//! 2000, 1000 confirms in flight, acks every 250), but no parsing and one pass.
//! Used by `bench/run`'s scale table.
//!
//! `cargo run --release --example bare-mover -- FROM TO COUNT`

use std::collections::VecDeque;

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [from, to, count] = args.as_slice() else {
        return Err("usage: bare-mover FROM TO COUNT".into());
    };
    let count: u64 = count.parse()?;
    let url = std::env::var("QUEUE_SERVICE_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let pubch = conn.create_channel().await?;
    let mut qargs = FieldTable::default();
    qargs.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(9));
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    pubch
        .queue_declare(to.as_str().into(), durable, qargs)
        .await?;
    pubch
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(2000, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            from.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut pending: VecDeque<lapin::PublisherConfirm> = VecDeque::new();
    let mut marks: VecDeque<(u64, u64)> = VecDeque::new();
    let (mut confirmed, mut published, mut moved, mut last) = (0u64, 0u64, 0u64, 0u64);
    while moved < count {
        let Some(d) = consumer.next().await else {
            break;
        };
        let d = d?;
        if pending.len() >= 1000 {
            pending.pop_front().ok_or("empty")?.await?;
            confirmed += 1;
        }
        pending.push_back(
            pubch
                .basic_publish(
                    "".into(),
                    to.as_str().into(),
                    BasicPublishOptions::default(),
                    &d.data,
                    d.properties.clone().with_delivery_mode(2),
                )
                .await?,
        );
        published += 1;
        moved += 1;
        last = d.delivery_tag;
        if moved % 250 == 0 {
            marks.push_back((published, d.delivery_tag));
        }
        let mut through = None;
        while marks.front().is_some_and(|(n, _)| *n <= confirmed) {
            through = marks.pop_front().map(|(_, t)| t);
        }
        if let Some(t) = through {
            ch.basic_ack(t, BasicAckOptions { multiple: true }).await?;
        }
    }
    for c in pending {
        c.await?;
    }
    if moved > 0 {
        ch.basic_ack(last, BasicAckOptions { multiple: true })
            .await?;
    }
    conn.close(200, "done".into()).await?;
    Ok(())
}
