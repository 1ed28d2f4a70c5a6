//! Dates as the producer writes them, urgency in calendar days, and the mapping from
//! urgency to an AMQP priority for the queue at hand.
//!
//! Urgency is the number of calendar days from "today" to the deadline, both taken in
//! the configured time zone. Priorities must make a broker that serves the highest
//! priority first take today, then tomorrow, then each day up to +6, then coarser bands.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The years a deadline may fall in: RFC 3339's. Outside them, date arithmetic in a
/// time zone can overflow chrono's range (a poison message must be parked, not crash a
/// run), and no mentoring is that far away anyway.
pub const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// Parses a deadline the way the Acaso producer writes it: Python's `str(datetime)`
/// (`2026-11-28 14:06:34.887287-03:00`, fraction and offset optional) or RFC 3339
/// (`2026-11-28T14:06:34-03:00`, `...Z`). A value without offset is UTC. A year outside
/// [`YEARS`] is refused.
pub fn parse_datetime(s: &str) -> Result<DateTime<FixedOffset>, String> {
    let dt = parse_any_year(s)?;
    if YEARS.contains(&dt.naive_utc().year()) {
        Ok(dt)
    } else {
        Err(format!(
            "date-time {s:?} is out of range: expected a year from {} to {}",
            YEARS.start(),
            YEARS.end()
        ))
    }
}

fn parse_any_year(s: &str) -> Result<DateTime<FixedOffset>, String> {
    let t = s.trim();
    let expected = || {
        format!(
            "invalid date-time {s:?}: expected \"YYYY-MM-DD HH:MM:SS[.ffffff][+HH:MM]\" or RFC 3339"
        )
    };
    // Normalise the date/time separator so one parser serves both forms.
    let mut norm = String::with_capacity(t.len());
    for (i, c) in t.chars().enumerate() {
        norm.push(if i == 10 && (c == ' ' || c == 't') {
            'T'
        } else {
            c
        });
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(&norm) {
        return Ok(dt);
    }
    // Python writes "+0000"-less naive values; read them as UTC.
    NaiveDateTime::parse_from_str(&norm, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(&norm, "%Y-%m-%dT%H:%M"))
        .map(|n| Utc.from_utc_datetime(&n).fixed_offset())
        .map_err(|_| expected())
}

/// How urgent a mail is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Urgency {
    /// The deadline has passed: never send it.
    Expired,
    /// Due in this many calendar days (0 = today).
    Days(i64),
    /// The mail has no deadline: it goes after every dated mail.
    NoDeadline,
}

impl Urgency {
    /// Computes the urgency of `deadline` at instant `now`, with calendar days in `tz`.
    pub fn of(deadline: Option<DateTime<FixedOffset>>, now: DateTime<Utc>, tz: Tz) -> Self {
        let Some(deadline) = deadline else {
            return Urgency::NoDeadline;
        };
        if deadline < now {
            return Urgency::Expired;
        }
        let today = now.with_timezone(&tz).date_naive();
        let day = deadline.with_timezone(&tz).date_naive();
        Urgency::Days((day - today).num_days())
    }

    /// A short label for tables and metrics: `today`, `tomorrow`, `+2` ... `+6`,
    /// `+7..13`, `+14..29`, `+30..`, `none`, `expired`.
    pub fn band(self) -> &'static str {
        match self {
            Urgency::Expired => "expired",
            Urgency::NoDeadline => "none",
            Urgency::Days(d) => match d {
                i64::MIN..=0 => "today",
                1 => "tomorrow",
                2 => "+2",
                3 => "+3",
                4 => "+4",
                5 => "+5",
                6 => "+6",
                7..=13 => "+7..13",
                14..=29 => "+14..29",
                _ => "+30..",
            },
        }
    }

    /// Every band label, most urgent first (for tables that list them all).
    pub const BANDS: [&'static str; 12] = [
        "expired", "today", "tomorrow", "+2", "+3", "+4", "+5", "+6", "+7..13", "+14..29", "+30..",
        "none",
    ];
}

/// The priority levels our own queue is declared with (`x-max-priority`). RabbitMQ
/// recommends single digits: every level costs memory and CPU on the broker.
pub const OUR_MAX_PRIORITY: u8 = 9;

/// Maps urgency to a message priority for a queue with a given `x-max-priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorityScale {
    /// The queue's `x-max-priority` (0 = not a priority queue).
    pub max: u8,
}

impl PriorityScale {
    /// The scale of a queue with this `x-max-priority`.
    pub fn new(max: u8) -> Self {
        PriorityScale { max }
    }

    /// The priority to publish a mail of this urgency with.
    ///
    /// On a queue with 200 or more levels (the legacy `queue`, 255) the legacy scale is
    /// kept so that our messages interleave correctly with the legacy producer's:
    /// 200 = today, 199 = tomorrow ... 1. On our 10-level queue (max 9): 9 = today,
    /// 8 = tomorrow ... 3 = +6, 2 = +7..13, 1 = +14..29, 0 = later or no deadline.
    /// On a smaller queue, one level per day from the top until the levels run out.
    /// Expired mail gets the top priority so that drains set it aside first.
    pub fn priority(self, urgency: Urgency) -> u8 {
        let max = i64::from(self.max);
        let p = match urgency {
            Urgency::Expired => max,
            Urgency::NoDeadline => 0,
            Urgency::Days(d) => {
                let d = d.max(0);
                if max >= 200 {
                    (200 - d).max(1)
                } else if max >= 9 {
                    match d {
                        0..=6 => max - d,
                        7..=13 => max - 7,
                        14..=29 => max - 8,
                        _ => max - 9,
                    }
                } else {
                    (max - d).max(0)
                }
            }
        };
        u8::try_from(p.clamp(0, max)).unwrap_or(self.max)
    }

    /// A priority of this queue as a rank on our 10-level scale (9 = today ... 0 =
    /// later): what the priority said about urgency when it was set. Monotone, so
    /// ordering by rank orders by priority.
    pub fn rank(self, priority: u8) -> u8 {
        let (p, max) = (i64::from(priority), i64::from(self.max));
        let rank = if max >= 200 {
            match 200 - p.min(200) {
                d @ 0..=6 => 9 - d,
                7..=13 => 2,
                14..=29 => 1,
                _ => 0,
            }
        } else {
            p + i64::from(OUR_MAX_PRIORITY) - max
        };
        u8::try_from(rank.clamp(0, i64::from(OUR_MAX_PRIORITY))).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.to_utc())
            .expect("test date")
    }

    #[test]
    fn parses_every_producer_form() {
        let cases = [
            (
                "2026-11-28 14:06:34.887287-03:00",
                "2026-11-28T17:06:34.887287Z",
            ),
            ("2026-11-28 14:06:34-03:00", "2026-11-28T17:06:34Z"),
            ("2026-11-28T14:06:34-03:00", "2026-11-28T17:06:34Z"),
            ("2026-11-28T17:06:34Z", "2026-11-28T17:06:34Z"),
            ("2026-11-28 17:06:34.5", "2026-11-28T17:06:34.500Z"),
            ("2026-11-28 17:06:34", "2026-11-28T17:06:34Z"),
            ("2026-11-28T17:06:34", "2026-11-28T17:06:34Z"),
            ("2026-11-28 14:06:34+05:30", "2026-11-28T08:36:34Z"),
        ];
        for (input, want) in cases {
            let got = parse_datetime(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.to_utc(), utc(want), "{input}");
        }
    }

    #[test]
    fn rejects_non_dates_with_a_hint() {
        for bad in ["", "tomorrow", "2026-13-01 10:00:00", "28/11/2026 10:00"] {
            let err = parse_datetime(bad).expect_err(bad);
            assert!(err.contains("expected"), "{err}");
        }
    }

    #[test]
    fn urgency_counts_calendar_days_in_the_zone() {
        let tz: Tz = "America/Recife".parse().expect("tz");
        let now = utc("2026-11-27T15:00:00Z"); // 12:00 in Recife
        let dl = |s: &str| Some(parse_datetime(s).expect("date"));
        assert_eq!(
            Urgency::of(dl("2026-11-27 23:59:00-03:00"), now, tz),
            Urgency::Days(0)
        );
        assert_eq!(
            Urgency::of(dl("2026-11-28 00:01:00-03:00"), now, tz),
            Urgency::Days(1)
        );
        // 02:30 UTC on the 28th is still the 27th in Recife: today, not tomorrow.
        assert_eq!(
            Urgency::of(dl("2026-11-28T02:30:00Z"), now, tz),
            Urgency::Days(0)
        );
        assert_eq!(
            Urgency::of(dl("2026-11-27 11:59:00-03:00"), now, tz),
            Urgency::Expired
        );
        assert_eq!(Urgency::of(None, now, tz), Urgency::NoDeadline);
        // Just before midnight in Recife it is already the next day in UTC.
        let late = utc("2026-11-28T02:59:00Z"); // 23:59 on the 27th in Recife
        assert_eq!(
            Urgency::of(dl("2026-11-28 09:00:00-03:00"), late, tz),
            Urgency::Days(1)
        );
        let tokyo: Tz = "Asia/Tokyo".parse().expect("tz");
        assert_eq!(
            Urgency::of(dl("2026-11-28 09:00:00-03:00"), late, tokyo),
            Urgency::Days(0)
        );
    }

    #[test]
    fn compact_scale_orders_days_then_bands() {
        let s = PriorityScale::new(OUR_MAX_PRIORITY);
        let p: Vec<u8> = (0..=6).map(|d| s.priority(Urgency::Days(d))).collect();
        assert_eq!(p, [9, 8, 7, 6, 5, 4, 3]);
        assert_eq!(s.priority(Urgency::Days(7)), 2);
        assert_eq!(s.priority(Urgency::Days(13)), 2);
        assert_eq!(s.priority(Urgency::Days(14)), 1);
        assert_eq!(s.priority(Urgency::Days(29)), 1);
        assert_eq!(s.priority(Urgency::Days(30)), 0);
        assert_eq!(s.priority(Urgency::NoDeadline), 0);
        assert_eq!(s.priority(Urgency::Expired), 9);
    }

    #[test]
    fn legacy_scale_matches_the_producer_intent() {
        let s = PriorityScale::new(255);
        assert_eq!(s.priority(Urgency::Days(0)), 200);
        assert_eq!(s.priority(Urgency::Days(1)), 199);
        assert_eq!(s.priority(Urgency::Days(10)), 190);
        assert_eq!(s.priority(Urgency::Days(250)), 1);
    }

    #[test]
    fn small_and_plain_queues_never_exceed_their_levels() {
        assert_eq!(PriorityScale::new(3).priority(Urgency::Days(0)), 3);
        assert_eq!(PriorityScale::new(3).priority(Urgency::Days(5)), 0);
        assert_eq!(PriorityScale::new(0).priority(Urgency::Days(0)), 0);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn any_tz() -> impl Strategy<Value = Tz> {
            proptest::sample::select(chrono_tz::TZ_VARIANTS.to_vec())
        }

        fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
            // Every instant chrono can hold, to the second.
            let (lo, hi) = (
                DateTime::<Utc>::MIN_UTC.timestamp(),
                DateTime::<Utc>::MAX_UTC.timestamp(),
            );
            (lo..=hi).prop_map(|t| DateTime::from_timestamp(t, 0).unwrap_or_default())
        }

        proptest! {
            #[test]
            fn parsing_any_text_never_panics(s in "\\PC{0,40}") {
                if let Ok(d) = parse_datetime(&s) {
                    prop_assert!(YEARS.contains(&d.naive_utc().year()));
                }
            }

            #[test]
            fn dates_of_any_year_and_offset_parse_or_are_refused(
                year in -300_000i64..300_000,
                month in 0u32..14,
                day in 0u32..33,
                hour in 0u32..25,
                offset in -1500i32..1500,
                space in any::<bool>(),
            ) {
                let sep = if space { ' ' } else { 'T' };
                let sign = if offset < 0 { '-' } else { '+' };
                let (oh, om) = (offset.abs() / 60, offset.abs() % 60);
                let s = format!("{year:04}-{month:02}-{day:02}{sep}{hour:02}:30:00{sign}{oh:02}:{om:02}");
                if let Ok(d) = parse_datetime(&s) {
                    prop_assert!(YEARS.contains(&d.naive_utc().year()));
                }
            }

            #[test]
            fn urgency_and_priority_of_any_deadline_never_panic(
                deadline in any_instant(),
                now in any_instant(),
                tz in any_tz(),
                max in any::<u8>(),
            ) {
                // A deadline as parsing lets it through, "now" anything chrono holds.
                let deadline = deadline.fixed_offset();
                if YEARS.contains(&deadline.year()) {
                    let u = Urgency::of(Some(deadline), now, tz);
                    prop_assert!(!u.band().is_empty());
                    prop_assert!(PriorityScale::new(max).priority(u) <= max);
                }
            }
        }
    }

    #[test]
    fn poison_years_are_refused_not_panicked_on() {
        for bad in [
            "-262143-01-01T00:00:00",
            "+262142-12-31T23:59:59",
            "0000-01-01 00:00:00",
            "10000-01-01T00:00:00Z",
        ] {
            let err = parse_datetime(bad).expect_err(bad);
            assert!(
                err.contains("out of range") || err.contains("expected"),
                "{err}"
            );
        }
        let tokyo: Tz = "Asia/Tokyo".parse().expect("tz");
        let edge = parse_datetime("9999-12-31T23:59:59+12:00").expect("the last year");
        let now = utc("2026-11-27T15:00:00Z");
        assert!(matches!(
            Urgency::of(Some(edge), now, tokyo),
            Urgency::Days(_)
        ));
    }

    #[test]
    fn bands_are_listed_in_urgency_order() {
        let labels: Vec<&str> = [
            Urgency::Expired,
            Urgency::Days(0),
            Urgency::Days(1),
            Urgency::Days(2),
            Urgency::Days(3),
            Urgency::Days(4),
            Urgency::Days(5),
            Urgency::Days(6),
            Urgency::Days(8),
            Urgency::Days(20),
            Urgency::Days(100),
            Urgency::NoDeadline,
        ]
        .iter()
        .map(|u| u.band())
        .collect();
        assert_eq!(labels, Urgency::BANDS);
    }
}
