//! SIGINT/SIGTERM as a flag that long-running commands poll between messages, so that
//! what is in flight is finished or returned before the run stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::Signal;

/// The signal this process received, for code that waits without a [`Cancel`] at hand
/// (the run lock): signals are the process's, not a command's.
static RECEIVED: AtomicU8 = AtomicU8::new(0);

/// The signal this process received since [`Cancel::install`], if any.
pub fn received() -> Option<Signal> {
    decode(RECEIVED.load(Ordering::SeqCst))
}

fn decode(n: u8) -> Option<Signal> {
    match n {
        2 => Some(Signal::Int),
        15 => Some(Signal::Term),
        _ => None,
    }
}

/// A shared "stop taking new work" flag, set by the first SIGINT or SIGTERM.
#[derive(Clone, Default)]
pub struct Cancel(Arc<AtomicU8>);

impl Cancel {
    /// A flag that nothing will set (tests, one-shot commands).
    pub fn never() -> Self {
        Cancel::default()
    }

    /// Installs handlers for SIGINT and SIGTERM; must run inside the tokio runtime.
    /// `stopping` says what the command does on a signal ([`Cancel::TAKING`], [`Cancel::PUBLISHING`]).
    pub fn install(stopping: &'static str) -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let cancel = Cancel::default();
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let flag = cancel.0.clone();
        tokio::spawn(async move {
            let which = tokio::select! {
                _ = int.recv() => 2,
                _ = term.recv() => 15,
            };
            flag.store(which, Ordering::SeqCst);
            RECEIVED.store(which, Ordering::SeqCst);
            crate::warn::notice(&format!("signal received: {stopping}"));
        });
        Ok(cancel)
    }

    /// What a command that takes mail from the queue does on a signal.
    pub const TAKING: &'static str = "taking no new mail, finishing what is in flight";
    /// What `publish` does on a signal.
    pub const PUBLISHING: &'static str =
        "publishing no more, waiting for RabbitMQ to confirm what was published";

    /// The signal received, if any.
    pub fn received(&self) -> Option<Signal> {
        decode(self.0.load(Ordering::SeqCst))
    }
}
