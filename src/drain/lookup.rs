//! Asking Brevo instead of guessing: a mail whose earlier attempt's answer was never
//! seen, taken again after Brevo's idempotency window, is looked up in Brevo's
//! transactional log. The look-up keeps the journal and says what it found, as a
//! [`Lookup`]; the engine acts on it (ack, send, retry later, park), beside the rest of
//! a taken mail's life.

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::doubt::Lookup;
use super::engine::Drain;
use crate::brevo::{LogAnswer, LogQuery, Sender, idempotency_key};
use crate::mail::Mail;
use crate::state::Outcome;
use crate::taken::Mailbox;

/// Log look-ups one run may make: Brevo allows 100 an hour for all such calls, and a
/// run is at least an hour from the next. Past it, the mail waits for a later run.
pub(super) const MAX_LOOKUPS: u32 = 25;

/// How long a mail whose look-ups get no answer (429, 5xx, network) keeps waiting for
/// Brevo's log, from the first attempt in doubt; then it is parked as `uncertain_send`.
const GIVE_UP: chrono::Duration = chrono::Duration::hours(6);
/// The least wait before a look-up that got no answer is asked again.
const LATER_SECS: u64 = 300;

impl<M: Mailbox, S: Sender> Drain<'_, M, S> {
    /// Looks up a mail first attempted at `since` in Brevo's log.
    pub(super) async fn look_up(
        &mut self,
        id: &str,
        m: &Mail,
        since: DateTime<Utc>,
    ) -> Result<Lookup> {
        if self.lookups >= MAX_LOOKUPS {
            // Brevo's budget for log calls is spent for this run: ask in a later one. No
            // send was made here: an attempt a dead run left open stays a doubt.
            self.io.store.end_send(id, Outcome::Unknown)?;
            let detail = format!("this run already asked Brevo's log {MAX_LOOKUPS} times");
            return Ok(Lookup::Later { secs: 3600, detail });
        }
        let answer = {
            self.lookups += 1;
            let query = LogQuery {
                email: m.first_recipient().to_string(),
                template_id: m.template_id,
                tag: idempotency_key(id),
                days: LogQuery::days(since, self.rules.clock()),
            };
            let sender = self.io.sender.clone();
            tokio::task::spawn_blocking(move || sender.find_in_log(&query))
                .await
                .unwrap_or_else(|e| LogAnswer::Unreachable(format!("the log look-up failed: {e}")))
        };
        // No send was made here: closing keeps an attempt a dead run left open as a
        // doubt (the log's answer settles it below, or it stays one).
        self.io.store.end_send(id, Outcome::Unknown)?;
        let now = self.rules.clock();
        Ok(match answer {
            LogAnswer::Found => {
                let note = "(found in Brevo's log)";
                let recipient = m.first_recipient();
                self.io.store.record_sent(
                    id,
                    note,
                    m.template_id,
                    recipient,
                    self.rules.clock(),
                )?;
                Lookup::Sent
            }
            LogAnswer::Absent => {
                // It never went. The caller opens an attempt if it sends it now (an
                // expired mail is parked instead, with no attempt left open).
                self.io.store.clear_uncertain(id)?;
                Lookup::NotSent
            }
            LogAnswer::Later { why, retry_after } if now - since < GIVE_UP => {
                // Brevo's log did not answer this time: the mail waits, still in doubt,
                // and is looked up again later.
                let detail = format!("Brevo's log did not answer ({why}); asked again later");
                let secs = retry_after.map_or(LATER_SECS, |d| d.as_secs().max(LATER_SECS));
                Lookup::Later { secs, detail }
            }
            LogAnswer::Later { why, .. } | LogAnswer::Unreachable(why) => {
                let detail = format!(
                    "a send started at {} got no answer, and Brevo's log could not tell whether it went ({why}): check the log before replaying",
                    since.to_rfc3339()
                );
                Lookup::Unknowable(detail)
            }
        })
    }
}
