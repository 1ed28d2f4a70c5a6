//! SIGINT/SIGTERM as a flag that long-running commands poll between messages, so that
//! what is in flight is finished or returned before the run stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::Signal;

/// A shared "stop taking new work" flag, set by the first SIGINT or SIGTERM.
#[derive(Clone, Default)]
pub struct Cancel(Arc<AtomicU8>);

impl Cancel {
    /// A flag that nothing will set (tests, one-shot commands).
    pub fn never() -> Self {
        Cancel::default()
    }

    /// Installs handlers for SIGINT and SIGTERM; must run inside the tokio runtime.
    pub fn install() -> std::io::Result<Self> {
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
            crate::output::stderr::notice(
                "signal received: taking no new mail, finishing what is in flight",
            );
        });
        Ok(cancel)
    }

    /// The signal received, if any.
    pub fn received(&self) -> Option<Signal> {
        match self.0.load(Ordering::SeqCst) {
            2 => Some(Signal::Int),
            15 => Some(Signal::Term),
            _ => None,
        }
    }
}
