//! How much a drain may send: the hourly limit (a count, `auto` or `unlimited`), the
//! end-of-day budget, and the caps a run derives from them and the credits left.

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;

pub use crate::config::Limit;

impl Limit {
    /// Mails this run may send out of `credits`, `reserve` kept back for urgent mail
    /// still to come, with `runs_left` hourly runs (this one included) before the reset.
    pub fn allowance(self, credits: u32, reserve: u32, runs_left: u32) -> u32 {
        match self {
            Limit::Count(n) => n.min(credits),
            Limit::Unlimited => credits,
            Limit::Auto => credits
                .saturating_sub(reserve)
                .div_ceil(runs_left.clamp(1, 24)),
        }
    }
}

/// Credits an end-of-day drain run early in Brevo's day keeps back, as `--reserve` does
/// by default.
pub const EARLY_EOD_RESERVE: u32 = 30;

/// Where a run stands before Brevo's next credit reset (see `crate::day`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Hourly runs left before the reset, this one included (1-24).
    pub runs_left: u32,
    /// No later hourly run comes before the (known) reset: this run spends what is left.
    pub last_before_reset: bool,
    /// The (known) reset is more than 12 hours away: the day has just begun.
    pub early_in_day: bool,
}

impl Pace {
    /// The pace with the reset at local midnight, at local hour `hour` (0-23): how every
    /// run went before the reset was learned.
    pub fn at_hour(hour: u32) -> Pace {
        Pace {
            runs_left: 24u32.saturating_sub(hour.min(23)),
            last_before_reset: false,
            early_in_day: false,
        }
    }

    /// Where a run at `now` stands in Brevo's day; local midnight in `tz` when the
    /// reset's date is out of range (no position).
    pub fn of(position: Option<&crate::day::Position>, now: DateTime<Utc>, tz: Tz) -> Pace {
        match position {
            Some(p) => Pace {
                runs_left: p.runs_left,
                last_before_reset: p.last_before_reset,
                early_in_day: p.early_in_day,
            },
            None => Pace::at_hour(now.with_timezone(&tz).hour()),
        }
    }
}

/// How much a drain may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// At most `limit` (and never more than the credits); with `urgent_beyond_limit`,
    /// mails due today go out beyond the limit as long as credits last.
    Hourly {
        /// Mails per run.
        limit: Limit,
        /// Send today's mails beyond the limit.
        urgent_beyond_limit: bool,
        /// Credits `Limit::Auto` keeps back for urgent mail that may still arrive.
        reserve: u32,
    },
    /// Everything the credits allow.
    EndOfDay,
}

/// A run's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Never more than this (the credits; `u32::MAX` on a plan without a daily limit).
    pub credits: u32,
    /// The budget before today's overflow.
    pub soft: u32,
    /// Whether mail due today goes beyond `soft` (while credits last).
    pub overflow: bool,
}

impl Budget {
    /// The subcommand this budget belongs to.
    pub fn subcommand(self) -> &'static str {
        match self {
            Budget::Hourly { .. } => "drain-hourly",
            Budget::EndOfDay => "drain-eod",
        }
    }

    /// The caps of a run with `credits` sendable, at `pace` before the reset.
    ///
    /// The last hourly run before a known reset spends everything (unless the limit is
    /// strict, `--strict-limit`): credits left then are lost at the reset. An end-of-day
    /// drain early in Brevo's day (it runs after the reset: the schedule was not moved)
    /// paces as `--limit auto` would, rather than spend the new day's credits at once;
    /// mail due today still goes out.
    pub fn caps(self, credits: u32, pace: Pace) -> Caps {
        match self {
            Budget::Hourly {
                urgent_beyond_limit: true,
                ..
            }
            | Budget::EndOfDay
                if pace.last_before_reset =>
            {
                Caps {
                    credits,
                    soft: credits,
                    overflow: false,
                }
            }
            Budget::Hourly {
                limit,
                urgent_beyond_limit,
                reserve,
            } => Caps {
                credits,
                soft: limit.allowance(credits, reserve, pace.runs_left),
                overflow: urgent_beyond_limit,
            },
            Budget::EndOfDay if pace.early_in_day => Caps {
                credits,
                soft: Limit::Auto.allowance(credits, EARLY_EOD_RESERVE, pace.runs_left),
                overflow: true,
            },
            Budget::EndOfDay => Caps {
                credits,
                soft: credits,
                overflow: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_refuse_with_a_hint() {
        assert_eq!("12".parse::<Limit>(), Ok(Limit::Count(12)));
        assert_eq!("auto".parse::<Limit>(), Ok(Limit::Auto));
        assert_eq!("unlimited".parse::<Limit>(), Ok(Limit::Unlimited));
        let err = "abc".parse::<Limit>().expect_err("abc");
        assert!(
            err.contains("auto") && err.contains("whole number"),
            "{err}"
        );
        assert!("-1".parse::<Limit>().is_err());
    }

    #[test]
    fn auto_spreads_the_credits_over_the_hours_left_keeping_the_reserve() {
        let at = |hour| Pace::at_hour(hour).runs_left;
        // 300 credits, 30 kept back, at 00:xx: 24 runs left -> 12 per run.
        assert_eq!(Limit::Auto.allowance(300, 30, at(0)), 12);
        // A quiet morning: at 12:00 with 290 left, the 12 runs left get more each.
        assert_eq!(Limit::Auto.allowance(290, 30, at(12)), 22);
        // Last hourly run of the day: all but the reserve.
        assert_eq!(Limit::Auto.allowance(100, 30, at(23)), 70);
        // Fewer credits than the reserve: nothing (the end-of-day drain spends it).
        assert_eq!(Limit::Auto.allowance(20, 30, at(15)), 0);
        // With the reset at 21:00, at 12:00 there are 9 runs left, not 12.
        assert_eq!(Limit::Auto.allowance(290, 30, 9), 29);
        assert_eq!(Limit::Count(12).allowance(5, 30, 3), 5);
        assert_eq!(Limit::Unlimited.allowance(u32::MAX, 30, 3), u32::MAX);
    }

    #[test]
    fn end_of_day_spends_the_credits_and_hourly_keeps_its_limit() {
        let eod = Budget::EndOfDay.caps(40, Pace::at_hour(23));
        assert_eq!((eod.credits, eod.soft, eod.overflow), (40, 40, false));
        let hourly = Budget::Hourly {
            limit: Limit::Count(12),
            urgent_beyond_limit: true,
            reserve: 30,
        };
        let h = hourly.caps(40, Pace::at_hour(10));
        assert_eq!((h.credits, h.soft, h.overflow), (40, 12, true));
        // The last hourly run before a known reset spends what would be lost.
        let last = Pace {
            runs_left: 1,
            last_before_reset: true,
            early_in_day: false,
        };
        assert_eq!(hourly.caps(40, last).soft, 40);
        // ...unless the operator made the limit strict.
        let strict = Budget::Hourly {
            limit: Limit::Count(12),
            urgent_beyond_limit: false,
            reserve: 30,
        };
        assert_eq!(strict.caps(40, last).soft, 12);
        // drain-eod just after the reset: paced over the day's runs, today's mail first.
        let early = Pace {
            runs_left: 21,
            last_before_reset: false,
            early_in_day: true,
        };
        let e = Budget::EndOfDay.caps(276, early);
        assert_eq!((e.soft, e.overflow), (12, true));
    }
}
