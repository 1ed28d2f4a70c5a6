//! acaso-mail against Brevo's published definition: the fake checks every request it
//! gets against the schemas in `tests/fixtures/brevo/` (any test fails on the first
//! that does not conform), and these tests cover what needs more than one request.

use crate::it::failures_interrupts::kill_drain_mid_send;
use crate::support::*;

#[test]
fn a_maybe_sent_mail_is_found_on_a_later_page_of_brevos_log() {
    // The recipient got 150 newer mails of the same template (other senders of the
    // account): Brevo's log lists newest first, 100 a page, so the mail in doubt is on
    // the second page. The look-up must page on, and find it there, not send it again.
    let w = World::new("log-pages", 300.0);
    let to = "busy@example.org";
    kill_drain_mid_send(&w, to);
    {
        let mut s = w.fake.state();
        let first_at = s.accepted_at[0];
        for i in 0..150 {
            let other = serde_json::json!({"templateId": 3, "to": [{"email": to}],
                                           "tags": [format!("other-{i}")]});
            s.accepted.push(other);
            s.accepted_at.push(first_at + 1 + i);
            s.accepted_ids
                .push(format!("<other-{i}@smtp-relay.mailin.fr>"));
        }
    }
    let s = w.json("2026-11-27T13:00:00-03:00", &["drain-eod"]);
    assert_eq!(
        counts(&s, &["sent", "already_sent", "parked"]),
        [Some(0), Some(1), Some(0)],
        "{s}"
    );
    assert_eq!(w.fake.state().log_calls, 2, "one page, then the second");
    assert_eq!(w.fake.accepted().len(), 151, "sent twice");
    assert_eq!(w.ready(&w.queue), 0);
}
