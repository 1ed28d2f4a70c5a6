//! Counting queued mail by urgency band from a bounded read of the head of the queue.
//!
//! The most urgent mail sits at the head of a priority queue, so reading the first N
//! mails (in priority order) sees every mail whose priority is above that of the last
//! one read: the bands of those priorities are counted exactly; every other band is
//! only "at least" what was read; the rest of the queue is reported as not read, never
//! guessed. (This holds while priorities are today's, which the daily `reprioritize`
//! keeps true.) A read that reaches the end of the queue is exact for every band.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::envelope::Envelope;
use crate::mail;
use crate::urgency::{PriorityScale, Urgency};

/// The bands of a queue, from its head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Mails read per band (`bad` = unreadable bodies).
    pub bands: BTreeMap<String, u32>,
    /// The bands whose count is exact; the others are lower bounds.
    pub exact: Vec<String>,
    /// Mails read.
    pub read: u32,
    /// Mails ready in the queue.
    pub ready: u32,
}

/// The least urgent urgency of a band, whose priority every mail of the band has at
/// least (`None`: a band any priority may hold).
fn floor(band: &str) -> Option<Urgency> {
    let days = match band {
        "today" => 0,
        "tomorrow" => 1,
        "+2" => 2,
        "+3" => 3,
        "+4" => 4,
        "+5" => 5,
        "+6" => 6,
        "+7..13" => 13,
        "+14..29" => 29,
        "+30.." => 100_000,
        "none" => return Some(Urgency::NoDeadline),
        _ => return None,
    };
    Some(Urgency::Days(days))
}

/// Every band, `bad` included.
pub fn all_bands() -> impl Iterator<Item = &'static str> {
    Urgency::BANDS.iter().copied().chain(["bad"])
}

impl Census {
    /// Counts the bands of `head`, the first mails of a queue holding `ready`.
    pub fn of(
        head: &[Envelope],
        ready: u32,
        scale: PriorityScale,
        now: DateTime<Utc>,
        tz: Tz,
    ) -> Self {
        let mut bands: BTreeMap<String, u32> = BTreeMap::new();
        for e in head {
            let band = match mail::parse(&e.body, tz) {
                Ok(m) => Urgency::of(m.deadline, now, tz).band(),
                Err(_) => "bad",
            };
            *bands.entry(band.to_string()).or_default() += 1;
        }
        let read = u32::try_from(head.len()).unwrap_or(u32::MAX);
        let exact = match head.last() {
            Some(last) if read < ready => all_bands()
                .filter(|b| floor(b).is_some_and(|u| scale.priority(u) > last.priority))
                .map(String::from)
                .collect(),
            None if ready > 0 => Vec::new(),
            _ => all_bands().map(String::from).collect(),
        };
        Census {
            bands,
            exact,
            read,
            ready,
        }
    }

    /// Whether every ready mail was read.
    pub fn complete(&self) -> bool {
        self.read >= self.ready
    }

    /// Whether the count of `band` is exact.
    pub fn is_exact(&self, band: &str) -> bool {
        self.exact.iter().any(|b| b == band)
    }

    /// Mails read in `band`.
    pub fn get(&self, band: &str) -> u32 {
        self.bands.get(band).copied().unwrap_or(0)
    }

    /// The exact counts only (zeros included), as the band gauges push them.
    pub fn exact_counts(&self) -> BTreeMap<String, u32> {
        self.exact
            .iter()
            .map(|b| (b.clone(), self.get(b)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(priority: u8, deadline: &str) -> Envelope {
        let body = format!(
            r#"{{"template_id":1,"to":[{{"email":"a@example.org"}}],"deadline":"{deadline}"}}"#
        );
        Envelope {
            priority,
            body: body.into_bytes(),
            ..Envelope::default()
        }
    }

    #[test]
    fn a_partial_read_is_exact_only_above_the_last_priority_read() {
        let now = "2026-11-28T12:00:00Z".parse().expect("now");
        let tz = chrono_tz::UTC;
        let head = [
            mail(9, "2026-11-28T20:00:00Z"),
            mail(9, "2026-11-28T21:00:00Z"),
            mail(8, "2026-11-29T20:00:00Z"),
        ];
        let c = Census::of(&head, 1000, PriorityScale::new(9), now, tz);
        assert_eq!((c.get("today"), c.get("tomorrow")), (2, 1));
        assert!(c.is_exact("today"));
        assert!(!c.is_exact("tomorrow"), "more of priority 8 may follow");
        assert!(!c.is_exact("expired") && !c.is_exact("bad") && !c.complete());
        assert_eq!(c.exact_counts(), BTreeMap::from([("today".into(), 2)]));
        let all = Census::of(&head, 3, PriorityScale::new(9), now, tz);
        assert!(all.complete() && all.is_exact("+30..") && all.is_exact("bad"));
        assert_eq!(all.exact_counts().get("+2"), Some(&0));
        let none = Census::of(&[], 5, PriorityScale::new(9), now, tz);
        assert!(none.exact.is_empty());
    }
}
