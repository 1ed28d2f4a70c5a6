//! What one run tells Prometheus besides the counters kept across runs: plain values a
//! command puts in its report, and the metrics push reads.

use std::collections::BTreeMap;
use std::time::Duration;

/// What one run tells Prometheus besides the stored counters.
#[derive(Debug, Default, Clone)]
pub struct RunGauges {
    /// The run did its job.
    pub success: bool,
    /// How long it took.
    pub duration: Duration,
    /// Ready messages in the main queue afterwards.
    pub queue_ready: Option<u32>,
    /// Ready messages per urgency band afterwards: only the bands counted exactly.
    pub bands: Option<BTreeMap<String, u32>>,
    /// Messages in the retry queues.
    pub retrying: Option<u32>,
    /// Messages in the parking queue.
    pub parked: Option<u32>,
    /// Brevo credits left after the run.
    pub credits: Option<f64>,
    /// When Brevo's credits are next expected to reset (Unix time: by then at the latest).
    pub next_reset: Option<f64>,
}
