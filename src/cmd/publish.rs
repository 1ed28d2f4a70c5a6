//! `publish`: mock jobs like the Acaso producer's, or the lines of a JSON Lines file.
//! Every message is persistent, has a `message_id` and an urgency priority; the command
//! succeeds only once the broker has confirmed all of them (pipelined confirms).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde::Serialize;
use serde_json::Value;

use super::{open_queues, unix_seconds};
use crate::amqp::{Publisher, QueueInfo, new_properties};
use crate::config::Config;
use crate::error::Failure;
use crate::mail::{self, LEGACY_TEMPLATES, MAX_BODY_BYTES};
use crate::signal::Cancel;
use crate::urgency::Urgency;

/// Unconfirmed messages allowed in flight: enough to hide the round trip.
const CONFIRM_WINDOW: usize = 1000;

/// What `publish` reports.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Messages the broker confirmed.
    pub published: u64,
    /// The queue they went to.
    pub queue: String,
}

/// Where the jobs come from.
pub enum Source<'a> {
    /// N mock jobs to this recipient.
    Mock {
        /// How many.
        count: u32,
        /// Their recipient.
        to: &'a str,
    },
    /// A JSON Lines file, `-` for stdin.
    File(&'a Path),
}

/// Runs `publish`.
pub async fn run(cfg: &Config, source: Source<'_>, cancel: &Cancel) -> Result<Summary> {
    let now = cfg.now();
    // Validate the whole file before touching the broker: all or nothing.
    let lines = match &source {
        Source::File(path) => Some(read_jobs(path, cfg.tz, now)?),
        Source::Mock { to, .. } => {
            if !mail::is_plausible_email(to) {
                return Err(Failure::Usage(format!(
                    "invalid --to {to:?}: expected an email address"
                ))
                .into());
            }
            None
        }
    };
    let (broker, info) = open_queues(cfg).await?;
    let mut publisher = Publisher::new(&broker, CONFIRM_WINDOW).await?;
    let ts = unix_seconds(now);
    let mut rng = rand::rng();
    let tz = cfg.tz;
    // One stream of (body, deadline), whatever the source: a file's jobs were all read
    // and checked before connecting; mock jobs are made as they go.
    let (total, jobs): (u64, Jobs) = match (&source, lines) {
        (_, Some(jobs)) => (
            jobs.len() as u64,
            Box::new(jobs.into_iter().map(|j| (j.body, j.deadline))),
        ),
        (Source::Mock { count, to }, None) => {
            let (mut mock_rng, to) = (rand::rng(), to.to_string());
            let jobs = (0..*count).map(move |_| {
                let (body, deadline) = mock_job(&mut mock_rng, &to, now, tz);
                (body, Some(deadline))
            });
            (u64::from(*count), Box::new(jobs))
        }
        (Source::File(_), None) => (0, Box::new(std::iter::empty())),
    };
    let bar = crate::progress::bar(cfg.progress, total, "publish");
    let result: Result<()> = async {
        for (body, deadline) in jobs {
            if cancel.received().is_some() {
                break;
            }
            publish_one(
                &mut publisher,
                &info,
                &body,
                deadline,
                now,
                tz,
                ts,
                &mut rng,
            )
            .await?;
            bar.inc(1);
        }
        publisher.finish().await.map(|_| ())
    }
    .await;
    bar.finish_and_clear();
    if let Err(e) = result {
        let unconfirmed = publisher.unconfirmed();
        return Err(e.context(format!(
            "publish failed after {} confirmed message(s); {unconfirmed} sent but unconfirmed may or may not be queued",
            publisher.confirmed
        )));
    }
    broker.close().await;
    if let Some(sig) = cancel.received() {
        eprintln!(
            "acaso-mail: interrupted: {} message(s) published and confirmed",
            publisher.confirmed
        );
        return Err(Failure::Interrupted(sig).into());
    }
    Ok(Summary {
        published: publisher.confirmed,
        queue: info.name,
    })
}

#[allow(clippy::too_many_arguments)]
async fn publish_one(
    publisher: &mut Publisher,
    info: &QueueInfo,
    body: &[u8],
    deadline: Option<DateTime<chrono::FixedOffset>>,
    now: DateTime<Utc>,
    tz: Tz,
    ts: u64,
    rng: &mut impl Rng,
) -> Result<()> {
    let priority = info.scale().priority(Urgency::of(deadline, now, tz));
    let props = new_properties(uuid_v4(rng), priority, ts);
    publisher.publish(&info.name, body, props).await
}

/// When a mail stops being useful.
type Deadline = DateTime<chrono::FixedOffset>;

/// The bodies to publish, each with its deadline.
type Jobs = Box<dyn Iterator<Item = (Vec<u8>, Option<Deadline>)>>;

/// A validated job from a file.
struct FileJob {
    body: Vec<u8>,
    deadline: Option<DateTime<chrono::FixedOffset>>,
}

fn read_jobs(path: &Path, tz: Tz, now: DateTime<Utc>) -> Result<Vec<FileJob>> {
    let mut raw = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .read_to_end(&mut raw)
            .context("reading stdin")?;
    } else {
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut raw))
            .with_context(|| format!("reading {}", path.display()))?;
    }
    let mut jobs = Vec::new();
    for (i, line) in raw.split(|b| *b == b'\n').enumerate() {
        let n = i + 1;
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let job = read_line(line, tz, now).map_err(|why| {
            Failure::Input(format!(
                "{} line {n}: {why}; nothing was published",
                path.display()
            ))
        })?;
        jobs.push(job);
    }
    if jobs.is_empty() {
        return Err(Failure::Input(format!(
            "{}: no mail jobs in it; nothing was published",
            path.display()
        ))
        .into());
    }
    Ok(jobs)
}

fn read_line(line: &[u8], tz: Tz, now: DateTime<Utc>) -> Result<FileJob, String> {
    if line.len() > MAX_BODY_BYTES {
        return Err(format!(
            "{} bytes is over the {MAX_BODY_BYTES}-byte limit",
            line.len()
        ));
    }
    let text = std::str::from_utf8(line).map_err(|e| format!("not UTF-8: {e}"))?;
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    // Lines like the fixtures', {"priority": N, "body": {...}}: the body is the job and
    // the priority is recomputed.
    let wrapped = value
        .get("body")
        .filter(|_| value.get("template").is_none() && value.get("template_id").is_none());
    let (body, value) = match wrapped {
        Some(b) => (serde_json::to_vec(b).map_err(|e| e.to_string())?, b.clone()),
        None => (line.to_vec(), value),
    };
    let m = mail::parse_value(value, tz).map_err(|e| e.to_string())?;
    if Urgency::of(m.deadline, now, tz) == Urgency::Expired {
        let d = m.deadline.map(|d| d.to_rfc3339()).unwrap_or_default();
        return Err(format!("its deadline {d} has already passed"));
    }
    Ok(FileJob {
        body,
        deadline: m.deadline,
    })
}

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
fn mock_job(
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
    (
        serde_json::to_vec(&body).expect("a mock job of strings and numbers serialises"),
        when,
    )
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
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    super::uuid_string(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_jobs_are_valid_legacy_mails_within_ten_days() {
        let tz: Tz = "America/Recife".parse().expect("tz");
        let now = Utc::now();
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
    fn file_lines_are_checked_with_reasons() {
        let tz: Tz = "America/Recife".parse().expect("tz");
        let now = DateTime::parse_from_rfc3339("2026-11-27T12:00:00-03:00")
            .expect("now")
            .to_utc();
        let ok = br#"{"template_id": 1, "to": [{"email": "a@example.org"}], "deadline": "2026-11-28T10:00:00-03:00"}"#;
        assert!(read_line(ok, tz, now).is_ok());
        let past = br#"{"template_id": 1, "to": [{"email": "a@example.org"}], "deadline": "2026-11-26T10:00:00-03:00"}"#;
        assert!(
            read_line(past, tz, now)
                .err()
                .expect("past")
                .contains("passed")
        );
        let wrapped =
            br#"{"priority": 3, "body": {"template_id": 1, "to": [{"email": "a@example.org"}]}}"#;
        let job = read_line(wrapped, tz, now).expect("wrapped");
        assert!(!String::from_utf8_lossy(&job.body).contains("priority"));
        assert!(
            read_line(b"{", tz, now)
                .err()
                .expect("bad")
                .contains("not JSON")
        );
    }

    #[test]
    fn uuids_have_the_v4_shape() {
        let u = uuid_v4(&mut rand::rng());
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
