//! This host: the state directory (exists, private, writable, the lock free), Brevo's
//! credits reset as learned or configured, the schedule the state has seen, and the
//! Pushgateway (a test group pushed and deleted). The state is only read.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};

use super::Check;
use crate::config::Config;
use crate::day;
use crate::error::{EXIT_CREDENTIALS, EXIT_FAILURE, EXIT_LOCKED, EXIT_UNAVAILABLE};
use crate::metrics::{GatewayCheck, check_pushgateway};
use crate::state::Store;

/// How long each scheduled subcommand may go unseen before the schedule is suspect.
const STALE: [(&str, i64); 3] = [
    ("drain-hourly", 3 * 3600),
    ("drain-eod", 26 * 3600),
    ("reprioritize", 26 * 3600),
];

/// The Pushgateway check, when one is configured (blocking).
pub fn pushgateway(cfg: &Config) -> Vec<Check> {
    let Some(base) = &cfg.pushgateway else {
        return vec![Check::pass(
            "pushgateway",
            "not configured (PUSHGATEWAY_URL unset): no metrics are pushed",
        )];
    };
    vec![match check_pushgateway(cfg, base) {
        GatewayCheck::Ok => Check::pass(
            "pushgateway",
            format!("{base}: a test group was pushed and deleted"),
        ),
        GatewayCheck::Unreachable(e) => Check::fail(
            "pushgateway",
            EXIT_UNAVAILABLE,
            format!("{base} cannot be reached: {e}"),
            "start the Pushgateway, or fix PUSHGATEWAY_URL / --pushgateway",
        ),
        GatewayCheck::Refused(e) => Check::fail(
            "pushgateway",
            EXIT_CREDENTIALS,
            format!("{base} refused the credentials: {e}"),
            "check PUSHGATEWAY_USER and the password (PUSHGATEWAY_PASSWORD or its file) against the Pushgateway's web config",
        ),
        GatewayCheck::Failed(e) => Check::fail(
            "pushgateway",
            EXIT_UNAVAILABLE,
            format!("{base} did not take the push: {e}"),
            "make sure PUSHGATEWAY_URL is the Pushgateway's base URL (http://HOST:9091)",
        ),
    }]
}

/// The state directory, the lock, the credits reset and the schedule.
pub fn state(cfg: &Config) -> Vec<Check> {
    let dir = &cfg.state_dir;
    let mut out = match crate::state::lock_state(cfg.state()) {
        Some(held) => vec![shared_lock(cfg, held)],
        None => vec![state_dir(dir)],
    };
    if !out[0].ok {
        return out;
    }
    if cfg.state_url.is_none() {
        out.push(lock(dir));
    }
    let store = match Store::open_read_only(cfg.state()) {
        Ok(s) => s,
        Err(e) => {
            out.push(Check::fail(
                "state",
                EXIT_FAILURE,
                format!(
                    "the state ({}) cannot be read: {e:#}",
                    crate::state::describe(cfg.state())
                ),
                "check the owner and mode of the files in the state directory",
            ));
            return out;
        }
    };
    out.push(credits_reset(cfg, store.as_ref()));
    out.push(schedule(cfg, store.as_ref()));
    out
}

fn state_dir(dir: &Path) -> Check {
    let shown = dir.display();
    let meta = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => {
            return Check::fail(
                "state-dir",
                EXIT_FAILURE,
                format!("{shown} is not a directory"),
                "point ACASO_MAIL_STATE_DIR / --state-dir at a directory",
            );
        }
        Err(e) => {
            return Check::fail(
                "state-dir",
                EXIT_FAILURE,
                format!("{shown}: {e}"),
                format!("the first run creates it; or now: mkdir -p -m 700 {shown}"),
            );
        }
    };
    let mode = meta.permissions().mode();
    if let Some(w) = crate::state::private::dir_warning(dir, mode) {
        return Check::fail("state-dir", EXIT_FAILURE, w, format!("chmod 700 {shown}"));
    }
    // Writable: a file created and removed at once (the only thing doctor writes).
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    let _ = std::fs::remove_file(&probe);
    match written {
        Ok(_) => Check::pass(
            "state-dir",
            format!(
                "{shown}: exists, private (mode {:04o}), writable",
                mode & 0o7777
            ),
        ),
        Err(e) => Check::fail(
            "state-dir",
            EXIT_FAILURE,
            format!("{shown} is not writable: {e}"),
            format!("give it to the user acaso-mail runs as: chown USER {shown}"),
        ),
    }
}

/// The state in PostgreSQL: reachable, and whether a run holds the lock there.
fn shared_lock(cfg: &Config, held: anyhow::Result<bool>) -> Check {
    let place = crate::state::describe(cfg.state());
    match held {
        Ok(false) => Check::pass("lock", format!("state: {place}; the run lock is free")),
        Ok(true) => Check::fail(
            "lock",
            EXIT_LOCKED,
            format!("state: {place}; a run (on some host) holds the run lock"),
            "wait for that run to end; runs that overlap wait for it up to --lock-wait",
        ),
        Err(e) => Check::fail(
            "state",
            crate::error::exit_code_of(&e),
            format!("{e:#}"),
            "check --state-url / ACASO_MAIL_STATE_URL / DATABASE_URL, the server, the password and TLS",
        ),
    }
}

fn lock(dir: &Path) -> Check {
    let path = dir.join("run.lock");
    let Ok(file) = std::fs::File::open(&path) else {
        return Check::pass("lock", "free (no run has taken it yet)");
    };
    match file.try_lock() {
        Ok(()) => Check::pass("lock", format!("{} is free", path.display())),
        Err(std::fs::TryLockError::WouldBlock) => Check::fail(
            "lock",
            EXIT_LOCKED,
            format!("another acaso-mail run holds {}", path.display()),
            "wait for that run to end (ps -C acaso-mail); runs that overlap wait for it up to --lock-wait",
        ),
        Err(std::fs::TryLockError::Error(e)) => Check::fail(
            "lock",
            EXIT_FAILURE,
            format!("{} cannot be locked: {e}", path.display()),
            "check the state directory's file system (flock must work there)",
        ),
    }
}

fn credits_reset(cfg: &Config, store: Option<&Store>) -> Check {
    let now = cfg.now();
    let learned = match crate::cmd::brevo_day::known(store, cfg) {
        Ok(l) => l,
        Err(e) => {
            return Check::fail(
                "credits-reset",
                EXIT_FAILURE,
                format!("the credit history cannot be read: {e:#}"),
                "check the state directory's files",
            );
        }
    };
    let eod_seen = store.and_then(|s| s.last_reading_by("drain-eod").ok().flatten());
    let report = day::position(&learned.reset, now, cfg.tz)
        .and_then(|p| crate::cmd::brevo_day::reset_report(cfg.tz, &learned, &p, eod_seen, now));
    match report {
        Some(r) if r.drain_eod_after_reset => Check::fail(
            "credits-reset",
            EXIT_FAILURE,
            r.message,
            "move drain-eod before the reset, as said above",
        ),
        Some(r) => Check::pass("credits-reset", r.message),
        None => Check::fail(
            "credits-reset",
            EXIT_FAILURE,
            "no reset can be placed at this date (--now out of range?)",
            "check --now / ACASO_MAIL_NOW",
        ),
    }
}

/// When each subcommand last ran, as the state saw it: a read of the credits by that
/// subcommand, or its last success pushed to the Pushgateway.
fn last_runs(store: &Store) -> Vec<(String, DateTime<Utc>)> {
    let mut runs: Vec<(String, DateTime<Utc>)> = Vec::new();
    let mut note = |sub: &str, at: DateTime<Utc>| match runs.iter_mut().find(|(s, _)| s == sub) {
        Some((_, t)) => *t = (*t).max(at),
        None => runs.push((sub.to_string(), at)),
    };
    for sub in ["drain-hourly", "drain-eod", "stats", "credits"] {
        if let Ok(Some(at)) = store.last_reading_by(sub) {
            note(sub, at);
        }
    }
    for (name, labels, value) in store.counters().unwrap_or_default() {
        if name == "acaso_mail_last_success_timestamp_seconds"
            && let Some(sub) = labels.strip_prefix("subcommand=")
            && let Some(at) = DateTime::from_timestamp(value as i64, 0)
        {
            note(sub, at);
        }
    }
    runs
}

fn schedule(cfg: &Config, store: Option<&Store>) -> Check {
    let Some(store) = store else {
        return Check::pass("schedule", "no run recorded yet (the state is empty)");
    };
    let now = cfg.now();
    let runs = last_runs(store);
    let local = |t: DateTime<Utc>| t.with_timezone(&cfg.tz).format("%Y-%m-%d %H:%M");
    let mut seen: Vec<String> = runs
        .iter()
        .map(|(s, t)| format!("{s} {}", local(*t)))
        .collect();
    seen.sort();
    let stale: Vec<String> = STALE
        .iter()
        .filter_map(|(sub, secs)| {
            let (_, at) = runs.iter().find(|(s, _)| s == sub)?;
            (now - *at > Duration::seconds(*secs)).then(|| format!("{sub} (last {})", local(*at)))
        })
        .collect();
    let never: Vec<&str> = STALE
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| !runs.iter().any(|(r, _)| r == s))
        .collect();
    let mut detail = if seen.is_empty() {
        "no run recorded yet".to_string()
    } else {
        format!("last runs ({}): {}", cfg.tz, seen.join(", "))
    };
    if !never.is_empty() {
        detail.push_str(&format!("; never seen: {}", never.join(", ")));
    }
    if stale.is_empty() {
        Check::pass("schedule", detail)
    } else {
        Check::fail(
            "schedule",
            EXIT_FAILURE,
            format!("{detail}; overdue: {}", stale.join(", ")),
            "check the timers or cron lines (systemctl list-timers 'acaso-mail*'; crontab -l) and their logs",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(dir: &Path, m: u32) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m)).expect("chmod");
    }

    #[test]
    fn the_state_directory_must_exist_be_private_and_writable_and_nothing_is_left() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("state");
        let missing = state_dir(&dir);
        assert!(!missing.ok && missing.hint.as_deref().is_some_and(|h| h.contains("mkdir")));
        assert!(!dir.exists(), "doctor creates nothing");
        std::fs::create_dir(&dir).expect("mkdir");
        mode(&dir, 0o755);
        let open = state_dir(&dir);
        assert_eq!((open.ok, open.code), (false, EXIT_FAILURE));
        mode(&dir, 0o700);
        assert!(state_dir(&dir).ok);
        assert_eq!(
            std::fs::read_dir(&dir).expect("ls").count(),
            0,
            "nothing left"
        );
    }

    #[test]
    fn a_held_lock_fails_with_exit_6() {
        let tmp = tempfile::tempdir().expect("tmp");
        assert!(lock(tmp.path()).ok, "no lock file: free");
        let held = crate::state::lock(tmp.path(), std::time::Duration::ZERO).expect("lock");
        let c = lock(tmp.path());
        assert_eq!((c.ok, c.code), (false, EXIT_LOCKED));
        drop(held);
        assert!(lock(tmp.path()).ok);
    }

    #[test]
    fn an_overdue_drain_fails_the_schedule() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::open(tmp.path()).expect("store");
        let t = |s: &str| DateTime::parse_from_rfc3339(s).expect("t").to_utc();
        let seen = t("2026-12-03T10:15:00Z");
        store
            .record_credits(
                (seen, seen),
                100.0,
                "free",
                true,
                "drain-hourly",
                (Duration::days(60), seen),
            )
            .expect("record");
        let cfg = |now: &str| {
            let settings = crate::config::Settings {
                now: Some(now.into()),
                state_dir: Some(tmp.path().into()),
                ..Default::default()
            };
            Config::new(&settings, |_| None).expect("config")
        };
        let fresh = schedule(&cfg("2026-12-03T12:00:00Z"), Some(&store));
        assert!(
            fresh.ok && fresh.detail.contains("drain-hourly 2026-12-03 07:15"),
            "{}",
            fresh.detail
        );
        assert!(
            fresh.detail.contains("never seen: drain-eod, reprioritize"),
            "{}",
            fresh.detail
        );
        let late = schedule(&cfg("2026-12-03T13:16:00Z"), Some(&store));
        assert!(
            !late.ok && late.detail.contains("overdue: drain-hourly"),
            "{}",
            late.detail
        );
    }
}
