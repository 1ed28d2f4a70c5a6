//! What happened to sent mails after Brevo accepted them (domain, no I/O): Brevo's
//! delivery events matched to journaled mails, the outcome each one becomes for the
//! app, and which events make an address one not to mail again.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::brevo::events::{Event, SUPPRESSING_EVENTS, tag_parts};
use crate::brevo::idempotency_key;

/// A sent mail as the journal knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMail {
    /// Its identity (`id:<message_id>` or `sha256:<digest>`).
    pub identity: String,
    /// Brevo's message id from the 201.
    pub brevo_id: String,
    /// The template.
    pub template_id: u32,
    /// The first recipient.
    pub recipient: String,
}

/// The journal's sent mails, findable by Brevo's message id and by the tag each send
/// carries (the idempotency key of the mail's identity).
#[derive(Debug, Default)]
pub struct Matcher {
    mails: Vec<SentMail>,
    by_id: HashMap<String, usize>,
    by_key: HashMap<String, usize>,
}

impl Matcher {
    /// Indexes `mails`.
    pub fn new(mails: Vec<SentMail>) -> Self {
        let mut m = Matcher {
            by_id: HashMap::with_capacity(mails.len()),
            by_key: HashMap::with_capacity(mails.len()),
            mails: Vec::new(),
        };
        for (i, mail) in mails.iter().enumerate() {
            if !mail.brevo_id.is_empty() {
                m.by_id.insert(mail.brevo_id.clone(), i);
            }
            m.by_key.insert(idempotency_key(&mail.identity), i);
        }
        m.mails = mails;
        m
    }

    /// The mail an event is about: by message id, else by a tag that is a mail's key.
    pub fn find(&self, e: &Event) -> Option<&SentMail> {
        let i = self.by_id.get(&e.message_id).copied().or_else(|| {
            e.tag
                .as_deref()
                .and_then(|t| tag_parts(t).find_map(|p| self.by_key.get(p).copied()))
        })?;
        self.mails.get(i)
    }
}

/// A delivery outcome as published to the app (`schemas/delivery-outcome.schema.json`),
/// routing key the event name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Outcome {
    /// The mail's identity in acaso-mail: `id:<message_id>` or `sha256:<digest of the body>`.
    pub identity: String,
    /// The AMQP `message_id` the app published the mail with; null when it set none.
    pub message_id: Option<String>,
    /// The address the event is about (one of the mail's recipients).
    pub recipient: String,
    /// The Brevo template.
    pub template_id: u32,
    /// Brevo's event name (`delivered`, `hardBounces`, `spam`, `blocked`, ...).
    pub event: String,
    /// When it happened (RFC 3339, UTC).
    pub date: String,
    /// Brevo's reason (bounces), when it gave one.
    pub reason: Option<String>,
    /// Whether acaso-mail will now park mail to this address as `suppressed`.
    pub suppressed: bool,
    /// Brevo's message id.
    pub brevo_message_id: String,
}

/// A day's delivery as `stats` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct DeliveryDay {
    /// The day's delivery events of acaso-mail's mails (as `acaso-mail events` last
    /// read them), by Brevo's event name.
    pub events: std::collections::BTreeMap<String, u64>,
    /// Addresses whose mail a drain parks as `suppressed`.
    pub suppressed: u64,
}

impl DeliveryDay {
    /// In words: "delivered 3, hardBounces 1; 2 address(es) suppressed".
    pub fn line(&self) -> String {
        let by: Vec<String> = self
            .events
            .iter()
            .map(|(e, n)| format!("{e} {n}"))
            .collect();
        let by = if by.is_empty() {
            "no events read".to_string()
        } else {
            by.join(", ")
        };
        format!(
            "delivery today: {by}; {} address(es) suppressed",
            self.suppressed
        )
    }
}

/// An event read, matched to its mail (if it is one of ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// Brevo's event, as read.
    pub event: Event,
    /// Its key for "seen once": message id, event name, date.
    pub key: String,
    /// The outcome for the app, when the mail is one of ours.
    pub outcome: Option<Outcome>,
}

/// The canonical form of a date in the journal and the outcomes.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Whether an event makes its address one not to mail again.
pub fn suppresses(event: &str) -> bool {
    SUPPRESSING_EVENTS.contains(&event)
}

/// Matches a page of events to the journal's mails.
pub fn settle(events: Vec<Event>, matcher: &Matcher) -> Vec<Settled> {
    events
        .into_iter()
        .map(|event| {
            // The recipient too: one mail to several addresses has one messageId, and
            // two of them may bounce in the same second.
            let key = format!(
                "{}|{}|{}|{}",
                event.message_id,
                event.event,
                stamp(event.date),
                event.email.to_lowercase()
            );
            let outcome = matcher.find(&event).map(|m| Outcome {
                identity: m.identity.clone(),
                message_id: m.identity.strip_prefix("id:").map(str::to_string),
                // The address the event is about (a mail may have several).
                recipient: event.email.clone(),
                template_id: m.template_id,
                event: event.event.clone(),
                date: stamp(event.date),
                reason: event.reason.clone(),
                suppressed: suppresses(&event.event),
                brevo_message_id: event.message_id.clone(),
            });
            Settled {
                event,
                key,
                outcome,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, name: &str, tag: Option<&str>) -> Event {
        Event {
            email: "a@example.org".into(),
            date: DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
                .expect("t")
                .to_utc(),
            message_id: id.into(),
            event: name.into(),
            reason: None,
            tag: tag.map(str::to_string),
            template_id: Some(9),
        }
    }

    #[test]
    fn events_find_their_mail_by_message_id_or_tag() {
        let mails = vec![
            SentMail {
                identity: "id:m-1".into(),
                brevo_id: "<1@relay>".into(),
                template_id: 9,
                recipient: "a@example.org".into(),
            },
            SentMail {
                identity: "sha256:ab".into(),
                brevo_id: String::new(),
                template_id: 7,
                recipient: "b@example.org".into(),
            },
        ];
        let m = Matcher::new(mails);
        let key = idempotency_key("sha256:ab");
        let tag = format!("acaso-mail,{key}");
        let out = settle(
            vec![
                event("<1@relay>", "hardBounces", None),
                event("<2@relay>", "delivered", Some(&tag)),
                event("<3@relay>", "delivered", Some("other")),
            ],
            &m,
        );
        let o = out[0].outcome.as_ref().expect("by id");
        assert_eq!(o.message_id.as_deref(), Some("m-1"));
        assert!(o.suppressed);
        assert_eq!(o.date, "2026-12-03T10:00:00.000Z");
        let o = out[1].outcome.as_ref().expect("by tag");
        assert_eq!(
            (o.identity.as_str(), o.message_id.as_deref()),
            ("sha256:ab", None)
        );
        assert!(!o.suppressed);
        assert!(out[2].outcome.is_none());
        assert_ne!(out[0].key, out[1].key);
    }
    #[test]
    fn two_recipients_of_one_mail_bouncing_at_once_are_two_outcomes_each_naming_its_address() {
        let m = Matcher::new(vec![SentMail {
            identity: "id:m-1".into(),
            brevo_id: "<1@relay>".into(),
            template_id: 9,
            recipient: "a@example.org".into(),
        }]);
        let mut second = event("<1@relay>", "hardBounces", None);
        second.email = "B@Example.org".into();
        let out = settle(vec![event("<1@relay>", "hardBounces", None), second], &m);
        assert_ne!(out[0].key, out[1].key);
        let to = |i: usize| out[i].outcome.as_ref().expect("matched").recipient.clone();
        assert_eq!(to(1), "B@Example.org");
        assert_ne!(to(0), to(1));
    }
}
