//! Brevo's day: when the free plan's daily credits reset. Brevo documents that the 300
//! sends "reset every day" but not when, so acaso-mail learns it: every run that reads the
//! account records the credits it saw, and a rise between two readings of the same
//! counted plan is a reset that happened after the first reading and at or before the
//! second. Successive rises narrow the reset down to a window of the day. A configured
//! time (`--credits-reset`) overrides what was observed; with neither, local midnight is
//! assumed, which is how acaso-mail behaved before it learned.
//!
//! Everything here is pure (no I/O, no clock) and never panics: date arithmetic is checked
//! and an instant out of chrono's range gives `None`. Reading the account, keeping the
//! readings and asking the clock are the commands' part (`crate::cmd::brevo_day`).

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Seconds in a day.
pub const DAY_SECS: i64 = 86_400;

/// The end-of-day drain's documented time (the timer, the crontab, `app.json`), in `--tz`:
/// what `stats` assumes until it has seen a `drain-eod` run.
pub const DOCUMENTED_EOD: (u32, u32) = (23, 5);

/// How long the reset history is kept.
pub const KEEP_DAYS: i64 = 60;

mod readings;

pub use readings::{
    CONFIRMING_RISES, Inferred, RESET_FULL_SHARE, RESET_RISE_SHARE, Rise, Seen, Window, infer,
    rises,
};

/// How the reset time is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Learned from the credits the runs saw.
    Observed,
    /// Stated with `--credits-reset` / `ACASO_MAIL_CREDITS_RESET`.
    Configured,
    /// Nothing known yet: local midnight, as before acaso-mail learned.
    Assumed,
}

impl Source {
    /// Its name in JSON and text.
    pub fn name(self) -> &'static str {
        match self {
            Source::Observed => "observed",
            Source::Configured => "configured",
            Source::Assumed => "assumed",
        }
    }
}

/// The daily reset: it comes after `after` and at or before `after + len` seconds, each
/// day, in `zone`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reset {
    /// How it is known.
    pub source: Source,
    /// The zone its times of day are in.
    pub zone: Tz,
    /// The last time of day known to come before the reset.
    pub after: NaiveTime,
    /// The window's length in seconds (1 for a configured or assumed time).
    pub len: i64,
    /// Rises that agree with it (observed only).
    pub agreeing: u32,
}

/// One day's reset: after `after`, at or before `by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    /// The last instant known to come before it.
    pub after: DateTime<Utc>,
    /// The instant by which it has happened.
    pub by: DateTime<Utc>,
}

fn one_second_before(t: NaiveTime) -> NaiveTime {
    t.overflowing_sub_signed(Duration::seconds(1)).0
}

impl Reset {
    /// A reset stated outright: at `time` in `zone`.
    pub fn configured(time: NaiveTime, zone: Tz) -> Reset {
        Reset {
            source: Source::Configured,
            zone,
            after: one_second_before(time),
            len: 1,
            agreeing: 0,
        }
    }

    /// Local midnight in `tz`: the assumption until a reset is observed.
    pub fn assumed(tz: Tz) -> Reset {
        Reset {
            source: Source::Assumed,
            zone: tz,
            after: one_second_before(NaiveTime::MIN),
            len: 1,
            agreeing: 0,
        }
    }

    /// The reset the readings show, if they show one.
    pub fn observed(inferred: Inferred) -> Option<Reset> {
        let secs = u32::try_from(inferred.window.start).ok()?;
        Some(Reset {
            source: Source::Observed,
            zone: Tz::UTC,
            after: NaiveTime::from_num_seconds_from_midnight_opt(secs, 0)?,
            len: inferred.window.len,
            agreeing: inferred.agreeing,
        })
    }

    /// What to go by: a configured time, else what was observed, else local midnight.
    pub fn choose(configured: Option<Reset>, inferred: Option<Inferred>, tz: Tz) -> Reset {
        configured
            .or_else(|| inferred.and_then(Reset::observed))
            .unwrap_or_else(|| Reset::assumed(tz))
    }

    /// The reset whose window starts on `date` (in `zone`).
    pub fn on(&self, date: NaiveDate) -> Option<Occurrence> {
        let local = date.and_time(self.after);
        let after = match self.zone.from_local_datetime(&local).earliest() {
            Some(t) => t,
            // In a daylight-saving gap: the first instant after it.
            None => self
                .zone
                .from_local_datetime(&local.checked_add_signed(Duration::hours(1))?)
                .earliest()?,
        }
        .with_timezone(&Utc);
        let by = after.checked_add_signed(Duration::seconds(self.len))?;
        Some(Occurrence { after, by })
    }

    /// The next reset: the first one that has not surely happened by `now`.
    pub fn next(&self, now: DateTime<Utc>) -> Option<Occurrence> {
        let today = now.with_timezone(&self.zone).date_naive();
        let mut date = today.checked_sub_signed(Duration::days(1))?;
        for _ in 0..4 {
            let occ = self.on(date)?;
            if occ.by > now {
                return Some(occ);
            }
            date = date.succ_opt()?;
        }
        None
    }

    /// The last reset that surely happened by `now`: when the current Brevo day began.
    pub fn previous(&self, now: DateTime<Utc>) -> Option<Occurrence> {
        let next = self.next(now)?;
        let date = next
            .after
            .with_timezone(&self.zone)
            .date_naive()
            .pred_opt()?;
        self.on(date)
    }

    /// `after` and `by` as times of day in `tz` (`HH:MM`), for people.
    pub fn local_window(&self, tz: Tz, now: DateTime<Utc>) -> Option<(String, String)> {
        let occ = self.next(now)?;
        let fmt = |t: DateTime<Utc>| t.with_timezone(&tz).format("%H:%M").to_string();
        let after = match self.source {
            // A stated time is when the credits are back: the `by` side.
            Source::Observed => fmt(occ.after),
            Source::Configured | Source::Assumed => fmt(occ.by),
        };
        Some((after, fmt(occ.by)))
    }
}

/// How late an hourly run may start after its hour (systemd's `AccuracySec=1min`, cron
/// starting up), in seconds. An observed window starts at a run's reading: the same
/// hour's run the next day, a little later, is still that run, the last before the reset.
pub const RUN_SLACK: i64 = 120;

/// Where a run stands in Brevo's day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The next reset.
    pub next: Occurrence,
    /// Hourly runs left before it, this one included (1-24).
    pub runs_left: u32,
    /// No hourly run after this one comes before the reset: this run is the last that
    /// can spend the day's credits. Only for a known reset (observed or configured).
    pub last_before_reset: bool,
    /// The reset is more than 12 hours away: the day has just begun (an end-of-day drain
    /// now would spend the new day's credits). Only for a known reset.
    pub early_in_day: bool,
    /// The Brevo day's name: the local date (in `--tz`) of its middle, so that with a
    /// reset at local midnight it is the calendar day.
    pub day: NaiveDate,
}

/// Where `now` stands in the Brevo day `reset` defines; names days in `tz`. Hourly runs
/// are counted as starting up to [`RUN_SLACK`] after the hour of the reading that began
/// an observed window (a stated time is exact: the run after it is in the new day).
pub fn position(reset: &Reset, now: DateTime<Utc>, tz: Tz) -> Option<Position> {
    let next = reset.next(now)?;
    let before = next.after.signed_duration_since(now).num_seconds();
    let slack = match reset.source {
        Source::Observed => RUN_SLACK,
        Source::Configured | Source::Assumed => 0,
    };
    let ahead = before.saturating_add(slack);
    let runs_left = if ahead >= 0 {
        u32::try_from((ahead / 3600 + 1).min(24)).unwrap_or(24)
    } else {
        1
    };
    let known = reset.source != Source::Assumed;
    let day = next
        .by
        .checked_sub_signed(Duration::hours(12))?
        .with_timezone(&tz)
        .date_naive();
    Some(Position {
        next,
        runs_left,
        last_before_reset: known && (0..3600).contains(&ahead),
        early_in_day: known && before > 12 * 3600,
        day,
    })
}

/// The hours of the day other than `skip`, as a crontab field (`0-19,21-23`) or, with
/// `systemd`, as `OnCalendar` writes them (`00..19,21..23`).
pub fn hours_except(skip: u32, systemd: bool) -> String {
    let range = |a: u32, b: u32| match (a == b, systemd) {
        (true, true) => format!("{a:02}"),
        (true, false) => a.to_string(),
        (false, true) => format!("{a:02}..{b:02}"),
        (false, false) => format!("{a}-{b}"),
    };
    let mut parts = Vec::new();
    if skip > 0 {
        parts.push(range(0, skip - 1));
    }
    if skip < 23 {
        parts.push(range(skip + 1, 23));
    }
    parts.join(",")
}

/// `time` on the date of `now` in `tz`, as an instant (for "drain-eod runs at 23:05").
pub fn today_at(tz: Tz, now: DateTime<Utc>, time: NaiveTime) -> Option<DateTime<Utc>> {
    let date = now.with_timezone(&tz).date_naive();
    tz.from_local_datetime(&date.and_time(time))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// The reset to go by, and the rises it was learned from.
#[derive(Debug, Clone)]
pub struct Learned {
    /// The reset.
    pub reset: Reset,
    /// The rises of the credits in the kept history, oldest first.
    pub rises: Vec<Rise>,
}

/// What the readings say: a configured time (`--credits-reset`, in its zone), else the
/// window the rises in `seen` leave, else local midnight in `tz`.
pub fn learned(seen: &[Seen], configured: Option<(NaiveTime, Tz)>, tz: Tz) -> Learned {
    let rises = rises(seen);
    let configured = configured.map(|(t, z)| Reset::configured(t, z));
    Learned {
        reset: Reset::choose(configured, infer(&rises), tz),
        rises,
    }
}

/// The name of the Brevo day `now` is in: the position's once the reset is placed, else
/// the local date in `tz` (a reset whose date is out of range).
pub fn name(position: Option<&Position>, now: DateTime<Utc>, tz: Tz) -> NaiveDate {
    position.map_or_else(|| now.with_timezone(&tz).date_naive(), |p| p.day)
}

/// Where a command stands in Brevo's day.
#[derive(Debug, Clone)]
pub struct Today {
    /// The reset to go by, and the rises it was learned from.
    pub learned: Learned,
    /// Where `now` stands before the next reset (`None`: a date out of range).
    pub position: Option<Position>,
    /// The day's name: Brevo's day once its reset is placed, else the local date.
    pub name: NaiveDate,
}

impl Today {
    /// `now` placed in the day `learned` defines, days named in `tz`.
    pub fn at(learned: Learned, now: DateTime<Utc>, tz: Tz) -> Today {
        let position = position(&learned.reset, now, tz);
        let name = name(position.as_ref(), now, tz);
        Today {
            learned,
            position,
            name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn recife() -> Tz {
        chrono_tz::America::Recife
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("instant").to_utc()
    }

    fn seen(seq: i64, at: &str, credits: f64) -> Seen {
        Seen {
            seq,
            asked: t(at).timestamp(),
            at: t(at).timestamp(),
            credits,
            plan: "free".into(),
            limited: true,
        }
    }

    #[test]
    fn a_rise_between_two_runs_is_a_reset_and_narrows_as_days_pass() {
        let history = [
            seen(1, "2026-12-01T19:15:00-03:00", 40.0),
            seen(2, "2026-12-01T20:15:00-03:00", 20.0),
            seen(3, "2026-12-01T21:15:00-03:00", 300.0),
            seen(4, "2026-12-01T22:15:00-03:00", 288.0),
            // The next day a run at 20:40 still saw the old day's credits.
            seen(5, "2026-12-02T20:40:00-03:00", 5.0),
            seen(6, "2026-12-02T21:15:00-03:00", 300.0),
        ];
        let r = rises(&history);
        assert_eq!(r.len(), 2);
        let inferred = infer(&r).expect("inferred");
        assert_eq!(inferred.agreeing, 2);
        let reset = Reset::choose(None, Some(inferred), recife());
        assert_eq!(reset.source, Source::Observed);
        let now = t("2026-12-03T10:00:00-03:00");
        assert_eq!(
            reset.local_window(recife(), now),
            Some(("20:40".into(), "21:15".into()))
        );
        let p = position(&reset, now, recife()).expect("position");
        assert_eq!(p.next.by, t("2026-12-03T21:15:00-03:00"));
        assert_eq!(p.runs_left, 11, "10:00 ... 20:00, all at or before 20:40");
        assert!(!p.last_before_reset && !p.early_in_day);
        let last = position(&reset, t("2026-12-03T20:15:00-03:00"), recife()).expect("p");
        assert!(last.last_before_reset);
        assert_eq!(last.runs_left, 1);
        let eod = position(&reset, t("2026-12-03T23:05:00-03:00"), recife()).expect("p");
        assert!(eod.early_in_day && !eod.last_before_reset);
        assert_eq!(eod.day, "2026-12-04".parse::<NaiveDate>().expect("date"));
        assert_eq!(last.day, "2026-12-03".parse::<NaiveDate>().expect("date"));
    }

    #[test]
    fn no_reset_without_a_rise_of_the_same_plan() {
        let mut a = seen(1, "2026-12-01T10:00:00Z", 10.0);
        let mut b = seen(2, "2026-12-01T11:00:00Z", 300.0);
        b.plan = "payAsYouGo".into();
        assert!(rises(&[a.clone(), b.clone()]).is_empty(), "a plan change");
        b.plan = "FREE".into();
        assert_eq!(rises(&[a.clone(), b.clone()]).len(), 1);
        // Recorded out of order (a run given an earlier --now): not a reset.
        a.seq = 3;
        assert!(rises(&[a.clone(), b.clone()]).is_empty());
        a.seq = 1;
        b.limited = false;
        assert!(rises(&[a, b]).is_empty(), "an unlimited plan has no reset");
        // Above the most a day was seen to hold: a bigger plan, not a new day.
        let h = [
            seen(1, "2026-12-01T10:00:00Z", 10.0),
            seen(2, "2026-12-01T11:00:00Z", 300.0),
            seen(3, "2026-12-01T12:00:00Z", 200.0),
            seen(4, "2026-12-01T13:00:00Z", 1000.0),
        ];
        assert_eq!(rises(&h).len(), 1);
    }

    #[test]
    fn a_reading_recorded_with_an_earlier_now_makes_no_reset() {
        // Real readings at 10:00 (100) and 12:00 (80), then a run given `--now 11:00`
        // the next day, when the credits were back to 300.
        let h = [
            seen(1, "2026-12-01T10:00:00Z", 100.0),
            seen(2, "2026-12-01T12:00:00Z", 80.0),
            seen(3, "2026-12-01T11:00:00Z", 300.0),
        ];
        assert_eq!(rises(&h), vec![]);
        // A reading with a future --now costs the pairs it is in, not the later ones.
        let h = [
            seen(1, "2026-12-01T20:00:00Z", 20.0),
            seen(2, "2027-06-01T00:00:00Z", 300.0),
            seen(3, "2026-12-01T21:00:00Z", 10.0),
            seen(4, "2026-12-02T20:00:00Z", 5.0),
            seen(5, "2026-12-02T21:00:00Z", 300.0),
        ];
        let only = Rise {
            after: t("2026-12-02T20:00:00Z").timestamp(),
            by: t("2026-12-02T21:00:00Z").timestamp(),
        };
        let found = rises(&h);
        assert!(found.contains(&only), "{found:?}");
        // The rise into the future reading spans half a year: no time of day.
        for r in found.iter().filter(|r| **r != only) {
            assert_eq!(Window::of(*r), None, "{r:?}");
        }
        let inferred = infer(&found).expect("inferred");
        assert_eq!(inferred.window, Window::of(only).expect("window"));
    }

    /// Three days of hourly readings with the reset at 21:00 in Recife (00:00 UTC), then
    /// `extra` on the fourth morning.
    fn three_days_then(extra: &[(&str, f64)]) -> Vec<Seen> {
        let mut h = Vec::new();
        for d in 1..=3 {
            for (hh, c) in [(19, 40.0), (20, 20.0), (21, 300.0), (22, 290.0)] {
                let at = format!("2026-12-0{d}T{hh}:15:00-03:00");
                h.push(seen(h.len() as i64 + 1, &at, c));
            }
        }
        for (at, c) in extra {
            h.push(seen(h.len() as i64 + 1, at, *c));
        }
        h
    }

    #[test]
    fn credits_given_back_do_not_move_a_well_known_reset() {
        use crate::drain::{Budget, Limit, Pace};
        let established = infer(&rises(&three_days_then(&[]))).expect("learned");
        assert_eq!(established.agreeing, 3);
        let (nine, ten) = ("2026-12-04T09:15:00-03:00", "2026-12-04T10:15:00-03:00");
        // One credit refunded mid-morning: not a reset at all.
        let refund = [(nine, 150.0), (ten, 151.0)];
        let h = three_days_then(&refund);
        assert_eq!(rises(&h).len(), 3, "{:?}", rises(&h));
        // A support credit of 180: as big as a reset, yet one rise against three.
        let grant = [(nine, 20.0), (ten, 200.0)];
        let h = three_days_then(&grant);
        assert_eq!(rises(&h).len(), 4, "counted as a rise: {:?}", rises(&h));
        for h in [three_days_then(&refund), h] {
            let inferred = infer(&rises(&h)).expect("inferred");
            assert_eq!(inferred, established);
            // The next morning's 09:15 hourly run is not the last before the reset, and
            // `--limit 12 --strict-limit` sends 12.
            let reset = Reset::choose(None, Some(inferred), recife());
            let p = position(&reset, t("2026-12-05T09:15:00-03:00"), recife()).expect("p");
            assert!(!p.last_before_reset, "{p:?}");
            assert_eq!(p.runs_left, 12);
            let pace = Pace {
                runs_left: p.runs_left,
                last_before_reset: p.last_before_reset,
                early_in_day: p.early_in_day,
            };
            let strict = Budget::Hourly {
                limit: Limit::Count(12),
                urgent_beyond_limit: false,
                reserve: 30,
            };
            assert_eq!(strict.caps(300, pace).soft, 12);
        }
    }

    #[test]
    fn a_reset_that_moves_is_learned_from_two_agreeing_rises() {
        // From the fourth day the credits come back at 22:00 local instead (a zone with
        // daylight saving, or Brevo moved it).
        let moved = |d: u32| {
            [(20, 40.0), (21, 20.0), (22, 300.0)]
                .map(|(hh, c)| (format!("2026-12-0{d}T{hh}:15:00-03:00"), c))
        };
        let day4 = moved(4);
        let one: Vec<(&str, f64)> = day4.iter().map(|(a, c)| (a.as_str(), *c)).collect();
        let after_one = infer(&rises(&three_days_then(&one))).expect("inferred");
        assert_eq!(after_one.agreeing, 3, "one rise moved a 3-rise window");
        let day5 = moved(5);
        let two: Vec<(&str, f64)> = day4
            .iter()
            .chain(&day5)
            .map(|(a, c)| (a.as_str(), *c))
            .collect();
        let after_two = infer(&rises(&three_days_then(&two))).expect("inferred");
        assert_eq!(after_two.agreeing, 2);
        let reset = Reset::choose(None, Some(after_two), recife());
        assert_eq!(
            reset.local_window(recife(), t("2026-12-06T10:00:00-03:00")),
            Some(("21:15".into(), "22:15".into()))
        );
        // A window only one rise showed gives way to the next rise at once.
        let h = [
            seen(1, "2026-12-01T20:15:00Z", 20.0),
            seen(2, "2026-12-01T21:15:00Z", 300.0),
            seen(3, "2026-12-02T09:15:00Z", 10.0),
            seen(4, "2026-12-02T10:15:00Z", 300.0),
        ];
        let w = infer(&rises(&h)).expect("inferred").window;
        assert_eq!(w.start, 9 * 3600 + 900);
    }

    #[test]
    fn a_reading_brackets_the_read_from_request_to_answer() {
        // Brevo took 40 s to answer the 20:15 run: the old credits were read after the
        // request went out, not only by the answer.
        let mut slow = seen(1, "2026-12-01T20:15:40Z", 20.0);
        slow.asked = t("2026-12-01T20:15:00Z").timestamp();
        let mut next = seen(2, "2026-12-01T21:15:30Z", 300.0);
        next.asked = t("2026-12-01T21:15:00Z").timestamp();
        let r = rises(&[slow, next]);
        assert_eq!(
            r,
            vec![Rise {
                after: t("2026-12-01T20:15:00Z").timestamp(),
                by: t("2026-12-01T21:15:30Z").timestamp(),
            }]
        );
    }

    #[test]
    fn hourly_runs_a_minute_late_keep_their_place_before_the_reset() {
        // Learned from the 20:00 run (answered at 20:00:05) and the 21:00 one, in UTC.
        let h = [
            seen(1, "2026-12-01T20:00:05Z", 20.0),
            seen(2, "2026-12-01T21:00:03Z", 300.0),
        ];
        let reset = Reset::choose(None, infer(&rises(&h)), Tz::UTC);
        assert_eq!(reset.source, Source::Observed);
        let at = |s: &str| position(&reset, t(s), Tz::UTC).expect("position");
        // The next day's 20:00 run, 50 s late: inside the window, still the last run.
        let late = at("2026-12-02T20:00:50Z");
        assert!(late.last_before_reset && late.runs_left == 1, "{late:?}");
        // Its 19:00 run, as late: one more run comes before the reset.
        let hour_before = at("2026-12-02T19:00:50Z");
        assert!(!hour_before.last_before_reset, "{hour_before:?}");
        assert_eq!(hour_before.runs_left, 2);
        assert_eq!(at("2026-12-02T19:00:00Z").runs_left, 2);
        assert!(at("2026-12-02T20:00:00Z").last_before_reset);
        // A stated time is exact: the 20:00 run a minute late is still the last, the
        // 21:00 one a minute late is in the new day.
        let stated = Reset::configured(NaiveTime::from_hms_opt(21, 0, 0).expect("t"), Tz::UTC);
        let at = |s: &str| position(&stated, t(s), Tz::UTC).expect("position");
        assert!(at("2026-12-02T20:00:50Z").last_before_reset);
        let after = at("2026-12-02T21:00:50Z");
        assert!(!after.last_before_reset && after.early_in_day, "{after:?}");
    }

    #[test]
    fn assumed_midnight_paces_as_before() {
        let reset = Reset::assumed(recife());
        for h in 0..24u32 {
            let now = t(&format!("2026-12-01T{h:02}:15:00-03:00"));
            let p = position(&reset, now, recife()).expect("p");
            assert_eq!(p.runs_left, 24 - h, "at {h}:15");
            assert!(!p.last_before_reset && !p.early_in_day);
            assert_eq!(p.day, "2026-12-01".parse::<NaiveDate>().expect("d"));
        }
        let midnight = position(&reset, t("2026-12-01T00:00:00-03:00"), recife()).expect("p");
        assert_eq!(midnight.next.by, t("2026-12-02T00:00:00-03:00"));
        assert_eq!(
            reset.local_window(recife(), t("2026-12-01T10:00:00Z")),
            Some(("00:00".into(), "00:00".into()))
        );
    }

    #[test]
    fn a_configured_time_is_when_the_credits_are_back() {
        let midnight = NaiveTime::MIN;
        let reset = Reset::configured(midnight, Tz::UTC);
        let p = position(&reset, t("2026-12-01T20:59:59-03:00"), recife()).expect("p");
        assert!(p.last_before_reset);
        assert_eq!(p.next.by, t("2026-12-02T00:00:00Z"));
        let p = position(&reset, t("2026-12-01T21:00:00-03:00"), recife()).expect("p");
        assert!(p.early_in_day);
        assert_eq!(
            reset.local_window(recife(), t("2026-12-01T10:00:00Z")),
            Some(("21:00".into(), "21:00".into()))
        );
    }

    #[test]
    fn windows_meet_across_midnight() {
        let a = Window {
            start: 23 * 3600,
            len: 2 * 3600,
        };
        let b = Window {
            start: 0,
            len: 3 * 3600,
        };
        assert_eq!(
            a.intersect(b),
            Some(Window {
                start: 0,
                len: 3600
            })
        );
        let far = Window {
            start: 12 * 3600,
            len: 60,
        };
        assert_eq!(a.intersect(far), None);
        assert_eq!(hours_except(20, false), "0-19,21-23");
        assert_eq!(hours_except(23, true), "00..22");
        assert_eq!(hours_except(0, false), "1-23");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the readings, times and zones: no panic.
        #[test]
        fn never_panics(
            readings in proptest::collection::vec((any::<i64>(), any::<i64>(), any::<i64>(), -1e6f64..1e6, any::<bool>()), 0..20),
            now in any::<i64>(),
            tz_index in 0usize..600,
            hh in 0u32..24, mm in 0u32..60,
        ) {
            let tz = chrono_tz::TZ_VARIANTS[tz_index % chrono_tz::TZ_VARIANTS.len()];
            let seen: Vec<Seen> = readings.iter().map(|(seq, asked, at, credits, free)| Seen {
                seq: *seq, asked: *asked, at: *at, credits: *credits,
                plan: if *free { "free".into() } else { "x".into() }, limited: true,
            }).collect();
            let inferred = infer(&rises(&seen));
            let configured = NaiveTime::from_hms_opt(hh, mm, 0).map(|t| Reset::configured(t, tz));
            for reset in [Reset::choose(None, inferred, tz), Reset::choose(configured, None, tz)] {
                if let Some(now) = DateTime::from_timestamp(now, 0) {
                    let _ = position(&reset, now, tz);
                    let _ = reset.previous(now);
                    let _ = reset.local_window(tz, now);
                }
            }
        }

        /// Runs at random times see the credits of a plan that resets every day at a fixed
        /// time and is spent in between: the inferred window always holds the true reset.
        #[test]
        fn the_window_always_holds_the_true_reset(
            reset_tod in 0i64..DAY_SECS,
            gaps in proptest::collection::vec(1i64..(30 * 3600), 2..80),
            spends in proptest::collection::vec(0u32..40, 80),
        ) {
            let start = 1_796_000_000i64;
            let mut credits = 300.0f64;
            let mut at = start;
            let mut seen = Vec::new();
            for (i, gap) in gaps.iter().enumerate() {
                let next = at + gap;
                // Resets in (at, next]: the credits are back to the plan's size.
                let day_of = |x: i64| (x - reset_tod).div_euclid(DAY_SECS);
                if day_of(next) > day_of(at) {
                    credits = 300.0;
                }
                at = next;
                seen.push(Seen { seq: i as i64, asked: at, at, credits, plan: "free".into(), limited: true });
                credits = (credits - f64::from(spends[i % spends.len()])).max(0.0);
            }
            check_holds(&seen, reset_tod, at)?;
        }

        /// The same plan, hourly runs, and now and then credits given back (a refund, a
        /// support credit) at another hour: one big enough to look like a reset does not
        /// move a window two rises agreed on.
        #[test]
        fn credits_given_back_never_lose_the_true_reset(
            reset_hour in 0i64..24,
            minute in 0i64..60,
            spends in proptest::collection::vec(15u32..40, 24 * 6),
            gifts in proptest::collection::vec((48usize..(24 * 6), 1u32..300), 0..6),
        ) {
            let reset_tod = reset_hour * 3600 + 1800;
            // Never two at the same hour of the day: two rises that agree are a reset
            // that moved.
            let mut gifts = gifts;
            gifts.sort_by_key(|g| g.0 % 24);
            gifts.dedup_by_key(|g| g.0 % 24);
            let (seen, at) = hourly(reset_tod, minute, &spends, &gifts);
            let inf = infer(&rises(&seen)).expect("six days show the reset");
            prop_assert!(inf.agreeing >= 2, "{inf:?}");
            check_holds(&seen, reset_tod, at)?;
        }

        /// Credits given back, less than a tenth of a day's, are never a reset (they may
        /// hide one that followed a quiet day: the rise is then too small to tell).
        #[test]
        fn small_refunds_are_no_reset(
            reset_hour in 0i64..24,
            minute in 0i64..60,
            spends in proptest::collection::vec(15u32..40, 24 * 3),
            gifts in proptest::collection::vec((0usize..(24 * 3), 1u32..30), 1..10),
        ) {
            let reset_tod = reset_hour * 3600 + 1800;
            let (plain, _) = hourly(reset_tod, minute, &spends, &[]);
            let (refunded, _) = hourly(reset_tod, minute, &spends, &gifts);
            let real = rises(&plain);
            for r in rises(&refunded) {
                prop_assert!(real.contains(&r), "{r:?} is not one of {real:?}");
            }
        }
    }

    proptest! {
        /// The runs of a day, each up to a minute after its hour, against a window begun
        /// by a reading up to a minute after the hour `slot`: each run counts the runs left
        /// down to the one at `slot`, the only one that is the last before the reset.
        /// (The run an hour after `slot` may fall inside the previous day's window: which
        /// day it is in is not known, and it is left out.)
        #[test]
        fn late_hourly_runs_count_down_to_the_last_before_the_reset(
            slot in 0i64..24,
            began in 0i64..=60,
            lates in proptest::collection::vec(0i64..=60, 23),
        ) {
            let window = Window { start: slot * 3600 + began, len: 3600 };
            let reset = Reset::observed(Inferred { window, agreeing: 2 }).expect("reset");
            let day = 1_796_083_200i64; // 2026-12-01T00:00:00Z
            for (k, late) in lates.iter().enumerate() {
                // k hours before the run at `slot`, the next day.
                let k = k as i64;
                let now = day + DAY_SECS + (slot - k) * 3600 + late;
                let now = DateTime::from_timestamp(now, 0).expect("now");
                let p = position(&reset, now, Tz::UTC).expect("position");
                prop_assert_eq!(i64::from(p.runs_left), k + 1, "{} {:?}", now, p);
                prop_assert_eq!(p.last_before_reset, k == 0, "{} {:?}", now, p);
            }
        }
    }

    /// Hourly readings at `minute` past each hour of a plan of 300 that resets at
    /// `reset_tod` (UTC seconds of the day, at half past an hour), spending `spends`
    /// between runs; `gifts` (run index, credits; the first for an index) are given back
    /// just before a run, never
    /// in the reset's own hour (a rise there is a reset anyway). The readings, and the
    /// instant of the last.
    fn hourly(
        reset_tod: i64,
        minute: i64,
        spends: &[u32],
        gifts: &[(usize, u32)],
    ) -> (Vec<Seen>, i64) {
        let start = 1_796_000_000i64 - 1_796_000_000i64.rem_euclid(DAY_SECS);
        let day_of = |x: i64| (x - reset_tod).div_euclid(DAY_SECS);
        let mut credits = 300.0f64;
        let mut seen = Vec::new();
        let mut at = start;
        for (i, spend) in spends.iter().enumerate() {
            let next = start + i as i64 * 3600 + minute * 60;
            if day_of(next) > day_of(at) {
                credits = 300.0;
            }
            at = next;
            let reset_hour_run = (at - reset_tod).rem_euclid(DAY_SECS) < 3600;
            if let Some((_, gift)) = gifts.iter().find(|g| g.0 == i && !reset_hour_run) {
                credits = (credits + f64::from(*gift)).min(300.0);
            }
            seen.push(Seen {
                seq: i as i64,
                asked: at,
                at,
                credits,
                plan: "free".into(),
                limited: true,
            });
            credits = (credits - f64::from(*spend)).max(0.0);
        }
        (seen, at)
    }

    /// The window inferred from `seen` holds the true reset (`reset_tod`, UTC seconds of
    /// the day), and the next reset after `at` is found from it.
    fn check_holds(seen: &[Seen], reset_tod: i64, at: i64) -> Result<(), TestCaseError> {
        {
            if let Some(inf) = infer(&rises(seen)) {
                prop_assert!(inf.window.contains(reset_tod), "{inf:?} misses {reset_tod}");
                let reset = Reset::observed(inf).expect("observed");
                let now = DateTime::from_timestamp(at, 0).expect("now");
                let next = reset.next(now).expect("next");
                prop_assert!(next.by > now);
                let truth = next.after.timestamp()
                    + (reset_tod - next.after.timestamp()).rem_euclid(DAY_SECS);
                prop_assert!(truth > next.after.timestamp() && truth <= next.by.timestamp());
            }
        }
        Ok(())
    }
}
