//! Deletes a main queue and its retry, parking and staging queues: how `scripts/demo` leaves no
//! queue behind. Only for queues a script made for itself.
//!
//! `cargo run --example delete-queues -- QUEUE` (`QUEUE_SERVICE_URL` as for acaso-mail)

use lapin::options::QueueDeleteOptions;
use lapin::{Connection, ConnectionProperties};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let queue = std::env::args()
        .nth(1)
        .ok_or("usage: delete-queues QUEUE")?;
    let url = std::env::var("QUEUE_SERVICE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let conn = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await??;
    let mut names = vec![
        queue.clone(),
        format!("{queue}.dead"),
        format!("{queue}.reprioritize"),
    ];
    names.extend([60, 300, 1800, 3600].map(|d| format!("{queue}.retry.{d}s")));
    for name in names {
        // A queue that does not exist closes the channel: one channel per queue.
        let ch = conn.create_channel().await?;
        let _ = ch
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "bye".into()).await;
    Ok(())
}
