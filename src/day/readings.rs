//! What the readings of the credits show: the rises that are resets, the window of the
//! day each leaves, and the window the agreeing rises narrow it to. Pure.

use super::DAY_SECS;

/// One reading of the account's email plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// The order the readings were recorded in (the store's row id).
    pub seq: i64,
    /// When the credits were asked for (Unix seconds)...
    pub asked: i64,
    /// ...and when Brevo answered: it read them in between.
    pub at: i64,
    /// The credits left.
    pub credits: f64,
    /// The plan type (`free`, ...).
    pub plan: String,
    /// Whether the plan is counted in credits (`sendLimit`).
    pub limited: bool,
}

/// A rise of the credits between two readings: a reset happened after `after` (when the
/// first was asked for) and at or before `by` (when the second was answered), in Unix
/// seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rise {
    /// The last reading before the rise.
    pub after: i64,
    /// The first reading that showed it.
    pub by: i64,
}

/// A reset brings the credits back to about a day's worth: the later reading holds at
/// least this share of the most a day was seen to hold...
pub const RESET_FULL_SHARE: f64 = 0.5;

/// ...and the credits rose by at least this share of it. A refund or a support credit
/// (a rise much smaller than a day's worth) is not a reset.
pub const RESET_RISE_SHARE: f64 = 0.1;

/// Rises that must agree on a new window before it replaces one that several rises
/// agreed on (a window known from one rise gives way to the next that disagrees).
pub const CONFIRMING_RISES: u32 = 2;

/// The resets in a history of readings, in the order they were recorded. Only readings
/// recorded one after the other are compared, and only when their instants are in the
/// same order: a reading recorded with an earlier (or later) `--now` than the real clock
/// sits between two others in time, not in recording order, and proves nothing. A rise
/// is a reset when both readings are of the same counted plan, the credits come back to
/// about a day's worth ([`RESET_FULL_SHARE`], [`RESET_RISE_SHARE`] of the most a day
/// was seen to hold: the most after a reset, else the most of any reading so far), and
/// they do not go above the most the plan was ever seen to hold after a reset (that
/// would be a bigger plan, not a new day).
pub fn rises(seen: &[Seen]) -> Vec<Rise> {
    let mut sorted: Vec<&Seen> = seen.iter().collect();
    sorted.sort_by_key(|s| (s.seq, s.at));
    let mut out = Vec::new();
    // The most credits seen just after a reset, and in any reading, of this plan.
    let mut size: Option<f64> = None;
    let mut peak: Option<f64> = None;
    for pair in sorted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let same_plan = a.plan.eq_ignore_ascii_case(&b.plan) && a.limited && b.limited;
        if !same_plan {
            // Another plan: what was known of the old one's size no longer holds.
            size = None;
            peak = None;
            continue;
        }
        if !(a.credits.is_finite() && b.credits.is_finite()) {
            continue;
        }
        let highest = a.credits.max(b.credits);
        peak = Some(peak.map_or(highest, |p| p.max(highest)));
        // Readings recorded out of time order (a run given another --now) prove nothing.
        if b.seq <= a.seq || b.at <= a.at || b.credits < a.credits + 0.5 {
            continue;
        }
        if size.is_some_and(|s| b.credits > s + 0.5) {
            size = Some(b.credits);
            continue;
        }
        let day = size.or(peak).unwrap_or(b.credits);
        let rise = b.credits - a.credits;
        if b.credits < day * RESET_FULL_SHARE || rise < day * RESET_RISE_SHARE {
            continue;
        }
        size = Some(size.map_or(b.credits, |s| s.max(b.credits)));
        out.push(Rise {
            after: a.asked.min(a.at),
            by: b.at,
        });
    }
    out
}

/// A stretch of the day, in UTC seconds since midnight: the reset comes after `start`
/// and at or before `start + len` (wrapping past midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Seconds after midnight UTC, 0..86400.
    pub start: i64,
    /// Its length in seconds, 1..86400.
    pub len: i64,
}

impl Window {
    /// The window of one rise; `None` when the readings are a day or more apart (any
    /// time of day fits) or not in order.
    pub fn of(rise: Rise) -> Option<Window> {
        let len = rise.by.checked_sub(rise.after)?;
        if len <= 0 || len >= DAY_SECS {
            return None;
        }
        Some(Window {
            start: rise.after.rem_euclid(DAY_SECS),
            len,
        })
    }

    /// Whether a time of day (UTC seconds since midnight) is in the window.
    pub fn contains(self, tod: i64) -> bool {
        let d = (tod - self.start).rem_euclid(DAY_SECS);
        d > 0 && d <= self.len
    }

    /// The part of the day in both windows; `None` when they do not meet. When they
    /// meet twice (two long windows), the stretch of `self` that holds both pieces.
    pub fn intersect(self, other: Window) -> Option<Window> {
        // Put `self` at (0, len] and `other` at (d, d + len'] and one day earlier.
        let d = (other.start - self.start).rem_euclid(DAY_SECS);
        let pieces: Vec<(i64, i64)> = [d, d - DAY_SECS]
            .into_iter()
            .filter_map(|s| {
                let lo = s.max(0);
                let hi = (s + other.len).min(self.len);
                (hi > lo).then_some((lo, hi))
            })
            .collect();
        let lo = pieces.iter().map(|p| p.0).min()?;
        let hi = pieces.iter().map(|p| p.1).max()?;
        Some(Window {
            start: (self.start + lo).rem_euclid(DAY_SECS),
            len: hi - lo,
        })
    }
}

/// What the readings say about the reset: the window all agreeing rises leave, and how
/// many rises agreed. Rises outside the window mean the reset moved (Brevo changed it,
/// or it follows a zone with daylight saving): once [`CONFIRMING_RISES`] of them agree
/// (one, against a window only one rise showed), the count starts again from them. A
/// single disagreeing rise (credits given back at another hour) changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inferred {
    /// Where the reset falls.
    pub window: Window,
    /// The rises that narrowed it.
    pub agreeing: u32,
}

/// Rises that disagree with the current window, kept until one of their windows gathers
/// enough agreement (bounded: the oldest is forgotten first).
const PENDING_RISES: usize = 24;

/// Infers the reset from rises, oldest first.
///
/// Every rise that disagrees with the current window is kept as a candidate until the
/// current window is confirmed again; a candidate that gathers as many agreeing rises
/// as the current one (or [`CONFIRMING_RISES`]) replaces it. A window only one rise
/// showed stays a candidate when it is replaced, so credits given back an hour before a
/// reset (which hide that day's rise) cannot alternate with the true reset forever.
pub fn infer(rises: &[Rise]) -> Option<Inferred> {
    let one = |window| Inferred {
        window,
        agreeing: 1,
    };
    let narrowed = |c: Inferred, w: Window| {
        c.window.intersect(w).map(|window| Inferred {
            window,
            agreeing: c.agreeing.saturating_add(1),
        })
    };
    let mut cur: Option<Inferred> = None;
    let mut pending: Vec<Inferred> = Vec::new();
    for w in rises.iter().filter_map(|r| Window::of(*r)) {
        let Some(c) = cur else {
            cur = Some(one(w));
            continue;
        };
        if let Some(n) = narrowed(c, w) {
            cur = Some(n);
            pending.clear();
            continue;
        }
        let agreed = pending
            .iter()
            .rposition(|p| p.window.intersect(w).is_some());
        let next = match agreed.map(|i| pending.remove(i)) {
            Some(p) => narrowed(p, w).unwrap_or_else(|| one(w)),
            None => one(w),
        };
        if next.agreeing >= c.agreeing.min(CONFIRMING_RISES) {
            if c.agreeing < CONFIRMING_RISES {
                pending.push(c);
            }
            cur = Some(next);
        } else {
            pending.push(next);
        }
        if pending.len() > PENDING_RISES {
            pending.remove(0);
        }
    }
    cur
}
