//! The run lock that keeps runs from overlapping: a file lock in the state directory,
//! or, with the state in PostgreSQL, a session-level advisory lock there, so that runs
//! on different hosts exclude each other too. Either is freed by the system when its
//! holder dies (kill -9 included).

use std::fs::{File, OpenOptions};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::Place;
use super::pg::{self, Pg};
use crate::error::Failure;

/// The run lock, held for the life of the value.
pub struct RunLock {
    _held: Held,
}

enum Held {
    File(#[allow(dead_code)] File),
    Pg(#[allow(dead_code)] Pg),
}

/// Takes the run lock, waiting up to `wait` for a run in progress to finish.
pub fn lock<'a>(place: impl Into<Place<'a>>, wait: Duration) -> Result<RunLock> {
    let place = place.into();
    if let Some(url) = place.url {
        let held = pg::lock(url, wait, place.timeout)?;
        return Ok(RunLock {
            _held: Held::Pg(held),
        });
    }
    let dir = place.dir;
    // Security hook: 0700 directory, 0600 lock file (state/private.rs).
    super::private::state_dir(dir)
        .with_context(|| format!("creating state directory {}", dir.display()))?;
    let path = dir.join("run.lock");
    super::private::state_file(&path)
        .with_context(|| format!("creating lock file {}", path.display()))?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => {
                return Ok(RunLock {
                    _held: Held::File(file),
                });
            }
            // A signal ends the wait at once: the run has done nothing yet.
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < wait => {
                if let Some(sig) = crate::signal::received() {
                    return Err(Failure::Interrupted(sig).into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Failure::Locked(format!(
                    "another acaso-mail run holds {} (waited {}s); it will finish on its own, or raise --lock-wait",
                    path.display(),
                    wait.as_secs()
                ))
                .into());
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
}

/// Whether a run holds the PostgreSQL run lock now (doctor's check; takes nothing).
/// `None` when the state is not in PostgreSQL.
pub fn lock_state(place: Place<'_>) -> Option<Result<bool>> {
    let url = place.url?;
    Some(Pg::connect(url, place.timeout).and_then(|pg| pg::lock_held(&pg)))
}
