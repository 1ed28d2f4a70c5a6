//! `publish`: mock jobs like the Acaso producer's, or the lines of a JSON Lines file.
//! Every message is persistent, has a `message_id` and an urgency priority; the command
//! succeeds only once the broker has confirmed all of them (pipelined confirms).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::error::Failure;
use crate::mail::{self, MAX_BODY_BYTES};
use crate::mailbox::Rabbit;
use crate::mock::{mock_job, uuid_v4};
use crate::output::{self, Report};
use crate::signal::Cancel;
use crate::urgency::Urgency;

/// What `publish` reports.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "acaso-mail publish --json")]
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
pub async fn run(cfg: &Config, source: Source<'_>, cancel: &Cancel) -> Result<Report> {
    let now = cfg.now();
    let tz = cfg.tz;
    // Validate the whole file before touching the broker: all or nothing.
    let (total, jobs): (u64, Jobs) = match source {
        Source::File(path) => {
            let jobs = read_jobs(path, tz, now)?;
            (
                jobs.len() as u64,
                Box::new(jobs.into_iter().map(|j| (j.body, j.deadline))),
            )
        }
        Source::Mock { count, to } => {
            if !mail::is_plausible_email(to) {
                return Err(Failure::Usage(format!(
                    "invalid --to {to:?}: expected an email address"
                ))
                .into());
            }
            // Mock jobs are made as they go: a million of them take no memory.
            let (mut rng, to) = (rand::rng(), to.to_string());
            let jobs = (0..count).map(move |_| {
                let (body, deadline) = mock_job(&mut rng, &to, now, tz);
                (body, Some(deadline))
            });
            (u64::from(count), Box::new(jobs))
        }
    };
    let mut mailbox = Rabbit::create(cfg).await?;
    let scale = mailbox.info().scale();
    let ts = u64::try_from(now.timestamp()).unwrap_or(0);
    let mut rng = rand::rng();
    let bar = output::progress(cfg, total, "publish");
    let result: Result<u64> = async {
        for (body, deadline) in jobs {
            if cancel.received().is_some() {
                break;
            }
            let priority = scale.priority(Urgency::of(deadline, now, tz));
            mailbox
                .publish_new(&body, uuid_v4(&mut rng), priority, ts)
                .await?;
            bar.inc(1);
        }
        mailbox.confirm_all().await
    }
    .await;
    bar.finish_and_clear();
    let (confirmed, unconfirmed) = mailbox.publish_counts();
    let queue = mailbox.info().name.clone();
    mailbox.close().await;
    if let Err(e) = result {
        return Err(e.context(format!(
            "publish failed after {confirmed} confirmed message(s); {unconfirmed} sent but unconfirmed may or may not be queued"
        )));
    }
    if let Some(sig) = cancel.received() {
        crate::warn::notice(&format!(
            "interrupted: {confirmed} message(s) published and confirmed"
        ));
        return Err(Failure::Interrupted(sig).into());
    }
    let line = format!("published {confirmed} mail(s) to {queue}");
    Ok(Report::json(&Summary {
        published: confirmed,
        queue,
    })?
    .line(line))
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

/// Bad lines named in one error, at most: a file with more says how many in all.
pub const BAD_LINES_SHOWN: usize = 20;

fn read_jobs(path: &Path, tz: Tz, now: DateTime<Utc>) -> Result<Vec<FileJob>> {
    let mut raw = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .read_to_end(&mut raw)
            .context("reading stdin")?;
    } else {
        // A path that cannot be read is a wrong argument, not a bug.
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut raw))
            .map_err(|e| {
                Failure::Usage(format!(
                    "cannot read --file {}: {e}; nothing was published",
                    path.display()
                ))
            })?;
    }
    let mut jobs = Vec::new();
    let mut bad = Vec::new();
    let mut bad_count = 0usize;
    for (i, line) in raw.split(|b| *b == b'\n').enumerate() {
        let n = i + 1;
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match read_line(line, tz, now) {
            Ok(job) => jobs.push(job),
            Err(why) => {
                bad_count += 1;
                if bad.len() < BAD_LINES_SHOWN {
                    bad.push(format!("line {n}: {why}"));
                }
            }
        }
    }
    // What the messages call the input: "-" means nothing to a reader.
    let name = if path == Path::new("-") {
        "standard input".to_string()
    } else {
        path.display().to_string()
    };
    if bad_count > 0 {
        let more = bad_count - bad.len();
        let mut msg = format!(
            "{name}: {bad_count} bad line(s); nothing was published\n  {}",
            bad.join("\n  ")
        );
        if more > 0 {
            msg.push_str(&format!("\n  ... and {more} more"));
        }
        return Err(Failure::Input(msg).into());
    }
    if jobs.is_empty() {
        return Err(
            Failure::Input(format!("{name}: no mail jobs in it; nothing was published")).into(),
        );
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
