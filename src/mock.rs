//! Realistic mock mail jobs, as the Acaso producer writes them: a random template among
//! the five, random Brazilian names, a mentoring 1 hour to 10 days ahead.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde::Serialize;

use crate::mail::LEGACY_TEMPLATES;

const FIRST: [&str; 12] = [
    "Ana", "Bruno", "Carla", "Diego", "Elisa", "Fábio", "Gabi", "Hugo", "Íris", "João", "Maria",
    "Enzo",
];
const LAST: [&str; 10] = [
    "Silva",
    "Souza",
    "Barros",
    "Farias",
    "Melo",
    "Araújo",
    "da Cruz",
    "da Conceição",
    "Costa",
    "Lima",
];

fn name(rng: &mut impl Rng) -> String {
    let f = FIRST.choose(rng).copied().unwrap_or("Ana");
    let l = LAST.choose(rng).copied().unwrap_or("Silva");
    format!("{f} {l}")
}

/// One mock job in the legacy format, as the Acaso producer writes it.
pub fn mock_job(
    rng: &mut impl Rng,
    to: &str,
    now: DateTime<Utc>,
    tz: Tz,
) -> (Vec<u8>, DateTime<chrono::FixedOffset>) {
    let (template, _) = LEGACY_TEMPLATES.choose(rng).copied().unwrap_or((9, ""));
    // 0-10 days ahead, at least an hour from now so a fresh mock is never expired.
    let minutes = rng.random_range(60..=10 * 24 * 60);
    let when = (now + Duration::minutes(minutes))
        .with_timezone(&tz)
        .fixed_offset();
    let (mentor, mentored) = (name(rng), name(rng));
    let to_mentor = matches!(template, 7 | 16);
    let (mentor_id, mentored_id) = if to_mentor {
        (None, Some(uuid_v4(rng)))
    } else {
        (Some(uuid_v4(rng)), None)
    };
    // Typed serialisation, in the producer's field order: this is the hot path of
    // `publish -n` (a serde_json::Value tree cost half its CPU).
    let body = MockBody {
        mail_params: MockParams {
            mentor_name: &mentor,
            mentoring_datetime: when.format("%Y-%m-%d %H:%M:%S%.6f%:z").to_string(),
            mentored_name: &mentored,
            mentor_id,
            mentored_id,
        },
        recipient: MockRecipient {
            name: if to_mentor { &mentor } else { &mentored },
            email: to,
        },
        template,
    };
    // Strings and numbers only: serialising cannot fail; an empty body would be parked.
    (serde_json::to_vec(&body).unwrap_or_default(), when)
}

#[derive(Serialize)]
struct MockBody<'a> {
    mail_params: MockParams<'a>,
    recipient: MockRecipient<'a>,
    template: u32,
}

#[derive(Serialize)]
struct MockParams<'a> {
    mentor_name: &'a str,
    mentoring_datetime: String,
    mentored_name: &'a str,
    mentor_id: Option<String>,
    mentored_id: Option<String>,
}

#[derive(Serialize)]
struct MockRecipient<'a> {
    name: &'a str,
    email: &'a str,
}

/// A random UUID v4.
pub fn uuid_v4(rng: &mut impl Rng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail;
    use crate::urgency::Urgency;

    #[test]
    fn mock_jobs_are_valid_legacy_mails_within_ten_days() {
        let tz: Tz = "America/Recife".parse().expect("tz");
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .expect("instant")
            .to_utc();
        let mut rng = rand::rng();
        for _ in 0..200 {
            let (body, when) = mock_job(&mut rng, "x@example.org", now, tz);
            let m = mail::parse(&body, tz).expect("mock parses");
            assert_eq!(m.format, mail::Format::Legacy);
            assert_eq!(m.to[0].email, "x@example.org");
            assert_eq!(m.deadline.map(|d| d.timestamp()), Some(when.timestamp()));
            match Urgency::of(m.deadline, now, tz) {
                Urgency::Days(d) => assert!((0..=10).contains(&d)),
                u => panic!("unexpected urgency {u:?}"),
            }
        }
    }

    #[test]
    fn uuids_have_the_v4_shape() {
        let u = uuid_v4(&mut rand::rng());
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
