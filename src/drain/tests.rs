//! Every Brevo outcome, settled against an in-memory mailbox and a scripted Brevo: where
//! the mail goes, what the journal remembers, what the summary says, and the exit code.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::budget::Caps;
use super::decide::Rules;
use super::engine::{Drain, Io, Options};
use super::summary::Summary;
use crate::brevo::{LogAnswer, LogQuery, SendOutcome, Sender};
use crate::error::exit_code_of;
use crate::mailbox::memory::{Memory, Settled};
use crate::mailbox::{Envelope, identity};
use crate::signal::Cancel;
use crate::state::{Outcome, Store};

/// A Brevo that answers from a script, and remembers what it was sent.
#[derive(Clone, Default)]
struct Scripted {
    answers: Arc<Mutex<VecDeque<SendOutcome>>>,
    requests: Arc<Mutex<Vec<Value>>>,
    log: Arc<Mutex<VecDeque<LogAnswer>>>,
    log_queries: Arc<Mutex<Vec<LogQuery>>>,
}

impl Scripted {
    fn new(answers: impl IntoIterator<Item = SendOutcome>) -> Self {
        let s = Scripted::default();
        s.answers.lock().expect("lock").extend(answers);
        s
    }
    fn sent(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }
    fn unused(&self) -> usize {
        self.answers.lock().expect("lock").len()
    }
}

/// The next scripted answer; an unscripted call panics (a test failure).
fn next<T>(script: &Mutex<VecDeque<T>>, what: &dyn std::fmt::Debug) -> T {
    script
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or_else(|| panic!("Brevo was asked more than scripted: {what:?}"))
}

impl Sender for Scripted {
    fn find_in_log(&self, query: &LogQuery) -> LogAnswer {
        self.log_queries.lock().expect("lock").push(query.clone());
        next(&self.log, query)
    }

    fn send(&self, request: &Value) -> SendOutcome {
        self.requests.lock().expect("lock").push(request.clone());
        next(&self.answers, request)
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-27T12:00:00-03:00")
        .expect("now")
        .to_utc()
}

/// A generic mail due `deadline`, with its identity from `id`.
fn mail(id: &str, priority: u8, deadline: &str) -> Envelope {
    let body = format!(
        r#"{{"template_id": 7, "to": [{{"email": "{id}@example.org"}}], "deadline": "{deadline}"}}"#
    );
    Envelope {
        identity: identity(Some(id), body.as_bytes()),
        message_id: Some(id.into()),
        priority,
        body: body.into_bytes(),
        ..Envelope::default()
    }
}

fn due_today(id: &str) -> Envelope {
    mail(id, 9, "2026-11-27T20:00:00-03:00")
}

fn due_in_two_days(id: &str) -> Envelope {
    mail(id, 7, "2026-11-29T20:00:00-03:00")
}

fn sent() -> SendOutcome {
    SendOutcome::Sent {
        message_id: "<1@smtp-relay>".into(),
    }
}

fn transient(ambiguous: bool) -> SendOutcome {
    SendOutcome::Transient {
        reason: if ambiguous {
            "network: timeout".into()
        } else {
            "network: connection refused".into()
        },
        ambiguous,
        retry_after: None,
    }
}

struct Run {
    summary: Summary,
    mailbox: Memory,
    store: Store,
    brevo: Scripted,
    _dir: tempfile::TempDir,
}

impl Run {
    fn settled(&self, id: &str) -> Option<Settled> {
        let identity = format!("id:{id}");
        self.mailbox
            .settled
            .iter()
            .rev()
            .find(|(i, _)| *i == identity)
            .map(|(_, s)| s.clone())
    }
    fn exit_code(&self) -> u8 {
        self.summary
            .failure()
            .map_or(0, |f| exit_code_of(&anyhow::Error::new(f)))
    }
}

async fn drain_with(
    mails: Vec<Envelope>,
    answers: Vec<SendOutcome>,
    caps: Caps,
    prepare: impl FnOnce(&Store, &mut Memory),
) -> Run {
    drain_at(now(), 1, mails, answers, vec![], caps, prepare).await
}

async fn drain_at(
    at: DateTime<Utc>,
    concurrency: usize,
    mails: Vec<Envelope>,
    answers: Vec<SendOutcome>,
    log: Vec<LogAnswer>,
    caps: Caps,
    prepare: impl FnOnce(&Store, &mut Memory),
) -> Run {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("store");
    let mut mailbox = Memory::with(mails);
    prepare(&store, &mut mailbox);
    let brevo = Scripted::new(answers);
    let log_answers = log.len();
    brevo.log.lock().expect("lock").extend(log);
    let rules = Rules {
        tz: chrono_tz::America::Recife,
        now: at,
        fixed: true,
        caps,
        suppress: true,
    };
    let opts = Options {
        concurrency,
        max_attempts: 3,
    };
    let cancel = Cancel::never();
    let io = Io {
        mailbox: &mut mailbox,
        sender: brevo.clone(),
        store: &store,
        cancel: &cancel,
        progress: &super::engine::Unwatched,
    };
    let summary = Drain::new(io, rules, opts, 300.0)
        .run()
        .await
        .expect("drain");
    assert_eq!(mailbox.held(), 0, "every taken mail is settled or put back");
    // A look-up nobody scripted panics in the sender, which the drain would take for an
    // unreadable log: count them instead.
    let asked = brevo.log_queries.lock().expect("lock").len();
    assert_eq!(
        asked, log_answers,
        "Brevo's log was asked {asked} times, scripted {log_answers}"
    );
    Run {
        summary,
        mailbox,
        store,
        brevo,
        _dir: dir,
    }
}

fn caps(soft: u32) -> Caps {
    Caps {
        credits: 300,
        soft,
        overflow: true,
    }
}

async fn drain(mails: Vec<Envelope>, answers: Vec<SendOutcome>) -> Run {
    drain_with(mails, answers, caps(12), |_, _| {}).await
}

#[tokio::test]
async fn accepted_2xx_is_journaled_then_acked() {
    let r = drain(vec![due_today("a")], vec![sent()]).await;
    assert_eq!(r.settled("a"), Some(Settled::Acked));
    assert!(r.store.is_sent("id:a").expect("journal"));
    assert_eq!((r.summary.sent, r.summary.failed, r.exit_code()), (1, 0, 0));
    let key = &r.brevo.requests.lock().expect("lock")[0]["headers"]["idempotencyKey"];
    assert_eq!(
        key.as_str(),
        Some(crate::brevo::idempotency_key("id:a").as_str())
    );
}

#[tokio::test]
async fn refused_400_is_parked_and_the_next_mail_still_goes() {
    let refused = SendOutcome::Permanent {
        status: 400,
        code: "invalid_parameter".into(),
        message: "bad template".into(),
    };
    let r = drain(vec![due_today("a"), due_today("b")], vec![refused, sent()]).await;
    assert_eq!(
        r.settled("a"),
        Some(Settled::Parked("brevo_rejected".into()))
    );
    assert_eq!(r.settled("b"), Some(Settled::Acked));
    assert_eq!(
        (r.summary.sent, r.summary.failed, r.summary.parked),
        (1, 1, 1)
    );
    assert!(!r.store.is_sent("id:a").expect("journal"));
}

#[tokio::test]
async fn bad_key_401_puts_the_mail_back_and_exits_5() {
    let refused = SendOutcome::Refused {
        status: 401,
        message: "Key not found".into(),
    };
    let r = drain(vec![due_today("a"), due_today("b")], vec![refused]).await;
    assert_eq!(r.mailbox.queued(), ["id:a", "id:b"]);
    assert_eq!(
        r.brevo.sent(),
        1,
        "nothing more is tried once the key is refused"
    );
    assert_eq!(r.exit_code(), 5);
    assert_eq!(r.summary.sent, 0);
}

#[tokio::test]
async fn an_answer_about_the_endpoint_parks_nothing_and_exits_4() {
    let gone = SendOutcome::Unavailable {
        status: 404,
        message: "not_found: Invalid route".into(),
    };
    let r = drain(vec![due_today("a"), due_today("b")], vec![gone]).await;
    assert_eq!(r.mailbox.queued(), ["id:a", "id:b"]);
    assert_eq!(r.brevo.sent(), 1, "nothing more is tried after a 404");
    assert_eq!(r.exit_code(), 4);
    assert_eq!((r.summary.sent, r.summary.parked), (0, 0));
}

#[tokio::test]
async fn no_credits_402_stops_sending_and_keeps_the_rest_queued() {
    let r = drain(
        vec![due_today("a"), due_today("b")],
        vec![SendOutcome::NoCredits],
    )
    .await;
    assert_eq!(r.mailbox.queued(), ["id:a", "id:b"]);
    assert_eq!(r.exit_code(), 0);
    assert!(
        r.summary
            .stopped
            .as_deref()
            .is_some_and(|s| s.contains("no credits")),
        "{:?}",
        r.summary.stopped
    );
}

#[tokio::test]
async fn rate_limited_429_pauses_then_sends_the_same_mail() {
    let slow_down = SendOutcome::RateLimited {
        retry_after: Some(Duration::from_millis(50)),
    };
    let r = drain(vec![due_today("a")], vec![slow_down, sent()]).await;
    assert_eq!(r.settled("a"), Some(Settled::Acked));
    assert_eq!((r.summary.sent, r.summary.rate_limited), (1, 1));
    assert_eq!(r.brevo.sent(), 2);
}

#[tokio::test]
async fn server_error_5xx_goes_to_the_first_retry_queue_and_closes_the_attempt() {
    let r = drain(vec![due_today("a")], vec![transient(false)]).await;
    assert_eq!(
        r.settled("a"),
        Some(Settled::Retrying {
            attempts: 1,
            delay_secs: 60
        })
    );
    let prior = r.store.begin_send("id:a", now()).expect("journal");
    assert_eq!((prior.attempts, prior.uncertain_since), (1, None));
    assert_eq!((r.summary.failed, r.summary.retried), (1, 1));
}

#[tokio::test]
async fn timeout_or_dropped_connection_is_retried_with_the_attempt_left_open() {
    // A timeout and a connection dropped mid-exchange are both "Brevo may have it".
    let r = drain(vec![due_today("a")], vec![transient(true)]).await;
    assert!(matches!(
        r.settled("a"),
        Some(Settled::Retrying { attempts: 1, .. })
    ));
    let prior = r.store.begin_send("id:a", now()).expect("journal");
    assert_eq!(
        prior.uncertain_since,
        Some(now()),
        "the unseen outcome is remembered"
    );
}

#[tokio::test]
async fn retries_run_out_and_the_mail_is_parked() {
    let mut tired = due_today("a");
    tired.attempts = 2; // max_attempts is 3 in these tests
    let r = drain(vec![tired], vec![transient(false)]).await;
    assert_eq!(
        r.settled("a"),
        Some(Settled::Parked("retries_exhausted".into()))
    );
}

#[tokio::test]
async fn retries_run_out_on_a_mail_that_may_have_gone_and_it_waits_for_the_log() {
    // A 5xx proves no refusal: parked for `dead-letters recheck`, not a blind replay.
    let mut tired = due_today("a");
    tired.attempts = 2;
    let r = drain(vec![tired], vec![transient(true)]).await;
    assert_eq!(
        r.settled("a"),
        Some(Settled::Parked("uncertain_send".into()))
    );
}

#[tokio::test]
async fn five_failures_in_a_row_end_the_run_with_exit_4() {
    let mails = (0..6).map(|i| due_today(&format!("m{i}"))).collect();
    let r = drain(mails, (0..5).map(|_| transient(false)).collect()).await;
    assert_eq!(r.exit_code(), 4);
    assert_eq!(r.brevo.sent(), 5);
    assert_eq!(r.mailbox.queued(), ["id:m5"], "the rest stays queued");
}

#[tokio::test]
async fn duplicate_parameter_after_our_own_attempt_means_sent() {
    let dup = SendOutcome::Duplicate;
    let r = drain_with(vec![due_today("a")], vec![dup], caps(12), |store, _| {
        store.begin_send("id:a", now()).expect("journal");
    })
    .await;
    assert_eq!(r.settled("a"), Some(Settled::Acked));
    assert!(r.store.is_sent("id:a").expect("journal"));
    assert_eq!((r.summary.sent, r.summary.already_sent), (0, 1));
}

#[tokio::test]
async fn duplicate_parameter_for_a_mail_never_attempted_is_parked() {
    let r = drain(vec![due_today("a")], vec![SendOutcome::Duplicate]).await;
    assert_eq!(
        r.settled("a"),
        Some(Settled::Parked("brevo_duplicate".into()))
    );
    assert!(!r.store.is_sent("id:a").expect("journal"));
}

#[tokio::test]
async fn a_mail_journaled_as_sent_is_acked_without_sending() {
    let r = drain_with(vec![due_today("a")], vec![], caps(12), |store, _| {
        store
            .record_sent("id:a", "<x>", 7, "a@example.org", now())
            .expect("journal");
    })
    .await;
    assert_eq!(r.settled("a"), Some(Settled::Acked));
    assert_eq!((r.brevo.sent(), r.summary.already_sent), (0, 1));
}

#[tokio::test]
async fn poison_and_expired_mail_is_parked_and_the_mail_behind_is_sent() {
    let mut poison = due_today("bad");
    poison.body = b"{not json".to_vec();
    let expired = mail("old", 9, "2026-11-27T08:00:00-03:00");
    let r = drain(vec![poison, expired, due_today("good")], vec![sent()]).await;
    assert_eq!(r.settled("bad"), Some(Settled::Parked("malformed".into())));
    assert_eq!(r.settled("old"), Some(Settled::Parked("expired".into())));
    assert_eq!(r.settled("good"), Some(Settled::Acked));
    assert_eq!(
        (r.summary.expired, r.summary.parked, r.summary.sent),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn the_budget_stops_the_run_but_mail_due_today_goes_beyond_it() {
    let r1 = drain_with(
        vec![due_today("t1"), due_today("t2"), due_in_two_days("later")],
        vec![sent(), sent()],
        caps(1),
        |_, _| {},
    )
    .await;
    assert_eq!(r1.summary.sent, 2, "today's mail beyond a limit of 1");
    assert_eq!(r1.mailbox.queued(), ["id:later"]);
    assert_eq!(r1.brevo.unused(), 0);
}

#[tokio::test]
async fn a_lost_broker_ends_the_run_with_exit_4() {
    let r = drain_with(vec![due_today("a")], vec![], caps(12), |_, mb| {
        mb.broken = true;
    })
    .await;
    assert_eq!(r.exit_code(), 4);
    assert_eq!(r.brevo.sent(), 0);
}

// Issue 11's findings: each of these failed before its fix.

/// The journal of a mail first sent at `t0`, whose answer was never seen.
fn journal(store: &Store, t0: DateTime<Utc>, later: &[(i64, Option<Outcome>)]) {
    store.begin_send("id:a", t0).expect("journal");
    for (minutes, ended) in later {
        if let Some(o) = ended {
            store.end_send("id:a", *o).expect("journal");
        }
        let at = t0 + chrono::Duration::minutes(*minutes);
        store.begin_send("id:a", at).expect("journal");
    }
}

#[tokio::test]
async fn brevos_window_counts_from_the_first_attempt_whose_answer_was_never_seen() {
    // (a) A send timed out (Brevo may have it); its retry, 5 minutes later, got a
    // definite 500. (b) Two runs died mid-send 20 minutes apart. Either way, forty
    // minutes after the first attempt Brevo's window has passed: sending again blindly
    // could deliver it twice (both were sent again before). Brevo's log is asked; when
    // it cannot be read, the mail is set aside.
    let cases: [&[(i64, Option<Outcome>)]; 2] = [&[(5, Some(Outcome::Unknown))], &[(20, None)]];
    for later in cases {
        let t0 = now() - chrono::Duration::minutes(40);
        let log = vec![LogAnswer::Unreachable("down".into())];
        let r = drain_at(
            now(),
            1,
            vec![due_today("a")],
            vec![],
            log,
            caps(12),
            |store, _| {
                journal(store, t0, later);
                store.end_send("id:a", Outcome::Known).expect("journal");
            },
        )
        .await;
        let what = format!("{later:?}");
        assert_eq!(
            r.settled("a"),
            Some(Settled::Parked("uncertain_send".into())),
            "{what}"
        );
        assert_eq!(r.brevo.sent(), 0, "{what}");
    }
}

/// A drain forty minutes after an attempt whose answer was never seen, with Brevo's log
/// answering `log`, and Brevo answering `answers` to sends.
async fn after_the_window(log: LogAnswer, answers: Vec<SendOutcome>) -> Run {
    let t0 = now() - chrono::Duration::minutes(40);
    drain_at(
        now(),
        1,
        vec![due_today("a")],
        answers,
        vec![log],
        caps(12),
        |store, _| {
            store.begin_send("id:a", t0).expect("journal");
        },
    )
    .await
}

#[tokio::test]
async fn an_expired_mail_left_open_by_a_dead_run_stays_in_doubt_past_the_lookup_limit() {
    // A killed run left its attempts open; the mails expired since. Each is looked up in
    // Brevo's log before being parked; past the run's look-up limit one is retried later,
    // and must still be in doubt then (it was parked as expired, though Brevo had it).
    let t0 = now() - chrono::Duration::hours(3);
    let expired = |i: usize| mail(&format!("e{i}"), 9, "2026-11-27T10:00:00-03:00");
    let n = usize::try_from(super::lookup::MAX_LOOKUPS).expect("small") + 1;
    let r = drain_at(
        now(),
        1,
        (0..n).map(expired).collect(),
        vec![],
        vec![LogAnswer::Found; n - 1],
        caps(12),
        |store, _| {
            for i in 0..n {
                store.begin_send(&format!("id:e{i}"), t0).expect("journal");
            }
        },
    )
    .await;
    let last = format!("e{}", n - 1);
    assert!(
        matches!(r.settled(&last), Some(Settled::Retrying { .. })),
        "{:?}",
        r.settled(&last)
    );
    let doubt = r.store.uncertainty(&format!("id:{last}")).expect("journal");
    assert_eq!(
        doubt.map(|(since, _)| since),
        Some(t0),
        "the doubt was forgotten"
    );
    assert_eq!(r.summary.already_sent, u32::try_from(n - 1).expect("small"));
}

#[tokio::test]
async fn an_expired_mail_absent_from_brevos_log_is_parked_with_no_doubt_left() {
    // A dead run's attempt, Brevo's log says it never went: the mail is parked as
    // expired, and the journal must not keep an attempt open (a doubt) for it.
    let t0 = now() - chrono::Duration::hours(3);
    let r = drain_at(
        now(),
        1,
        vec![mail("e0", 9, "2026-11-27T10:00:00-03:00")],
        vec![],
        vec![LogAnswer::Absent],
        caps(12),
        |store, _| {
            store.begin_send("id:e0", t0).expect("journal");
        },
    )
    .await;
    assert_eq!(r.settled("e0"), Some(Settled::Parked("expired".into())));
    let doubt = r.store.uncertainty("id:e0").expect("journal");
    assert_eq!(
        doubt, None,
        "a parked, never-sent mail keeps an open attempt"
    );
}

#[tokio::test]
async fn found_in_brevos_log_means_sent() {
    let r = after_the_window(LogAnswer::Found, vec![]).await;
    assert_eq!(r.settled("a"), Some(Settled::Acked));
    assert!(r.store.is_sent("id:a").expect("journal"));
    assert_eq!((r.brevo.sent(), r.summary.already_sent), (0, 1));
    let q = r.brevo.log_queries.lock().expect("lock")[0].clone();
    assert_eq!(q.email, "a@example.org");
    assert_eq!(q.tag, crate::brevo::idempotency_key("id:a"));
}

#[tokio::test]
async fn absent_from_brevos_log_means_it_never_went_so_it_is_sent() {
    let r = after_the_window(LogAnswer::Absent, vec![sent()]).await;
    assert_eq!(r.settled("a"), Some(Settled::Acked));
    assert_eq!((r.brevo.sent(), r.summary.sent), (1, 1));
}

#[tokio::test]
async fn an_unreadable_log_sets_the_mail_aside() {
    let r = after_the_window(LogAnswer::Unreachable("503".into()), vec![]).await;
    assert_eq!(
        r.settled("a"),
        Some(Settled::Parked("uncertain_send".into()))
    );
    assert_eq!(r.brevo.sent(), 0);
}

#[tokio::test]
async fn a_log_that_does_not_answer_is_asked_again_later_for_hours() {
    let later = || LogAnswer::Later {
        why: "429".into(),
        retry_after: None,
    };
    let r = after_the_window(later(), vec![]).await;
    assert!(
        matches!(r.settled("a"), Some(Settled::Retrying { .. })),
        "{:?}",
        r.settled("a")
    );
    assert!(r.store.uncertainty("id:a").expect("journal").is_some());
    // Six hours of doubt later, a person decides.
    let t0 = now() - chrono::Duration::hours(7);
    let r = drain_at(
        now(),
        1,
        vec![due_today("a")],
        vec![],
        vec![later()],
        caps(12),
        |store, _| {
            store.begin_send("id:a", t0).expect("journal");
        },
    )
    .await;
    assert_eq!(
        r.settled("a"),
        Some(Settled::Parked("uncertain_send".into()))
    );
    assert_eq!(r.brevo.sent(), 0);
}

#[tokio::test]
async fn a_key_brevo_kept_from_a_refused_attempt_is_not_taken_as_sent() {
    // The earlier attempt got a 500 (a definite answer) and Brevo recorded its key all
    // the same: duplicate_parameter now means nothing was sent. The mail is retried
    // once the key has expired (it was acked, and lost, before).
    let r = drain_with(
        vec![due_today("a")],
        vec![SendOutcome::Duplicate],
        caps(12),
        |store, _| {
            store.begin_send("id:a", now()).expect("journal");
            store.end_send("id:a", Outcome::Known).expect("journal");
        },
    )
    .await;
    assert!(
        matches!(r.settled("a"), Some(Settled::Retrying { delay_secs, .. }) if delay_secs >= 1800),
        "{:?}",
        r.settled("a")
    );
    assert!(!r.store.is_sent("id:a").expect("journal"));
    assert_eq!(r.summary.already_sent, 0);
    // Never a blind resend later: the mail is now uncertain, so its next take asks
    // Brevo's log (a 5xx may have hidden an acceptance).
    assert!(r.store.uncertainty("id:a").expect("journal").is_some());
}

#[tokio::test]
async fn a_second_copy_of_a_mail_being_sent_is_not_sent_beside_it() {
    // A crash mid-move leaves two copies of one mail; with room for two sends, both
    // would have gone out at once.
    let r = drain_at(
        now(),
        2,
        vec![due_today("a"), due_today("a")],
        vec![sent()],
        vec![],
        caps(12),
        |_, _| {},
    )
    .await;
    assert_eq!(r.brevo.sent(), 1);
    assert_eq!((r.summary.sent, r.summary.already_sent), (1, 1));
    assert!(r.mailbox.queued().is_empty());
}

#[tokio::test]
async fn the_log_is_not_asked_before_it_can_list_the_latest_attempt() {
    // First unseen attempt 40 minutes ago, the latest one 10 minutes ago: Brevo's log
    // may not list it yet, so the mail waits in a retry queue instead of being judged.
    let t0 = now() - chrono::Duration::minutes(40);
    let r = drain_with(vec![due_today("a")], vec![], caps(12), |store, _| {
        store.begin_send("id:a", t0).expect("journal");
        let recent = now() - chrono::Duration::minutes(10);
        store.begin_send("id:a", recent).expect("journal");
    })
    .await;
    assert!(
        matches!(r.settled("a"), Some(Settled::Retrying { .. })),
        "{:?}",
        r.settled("a")
    );
    assert_eq!(r.brevo.sent(), 0);
}

/// A drain `minutes` after a send whose answer was never seen (no later attempt).
async fn after_an_unseen_send(minutes: i64) -> Run {
    let t0 = now() - chrono::Duration::minutes(minutes);
    drain_with(vec![due_today("a")], vec![sent()], caps(12), |store, _| {
        store.begin_send("id:a", t0).expect("journal");
    })
    .await
}

#[tokio::test]
async fn past_brevos_shortest_key_window_a_maybe_sent_mail_waits_for_the_log() {
    // Brevo's changelog says it remembers a key 15 minutes (its guide: 30). Fourteen
    // minutes after an unseen send the key may be forgotten, and the log may not list
    // the mail yet: resending could deliver it twice, so it waits, unsent, unasked.
    let r = after_an_unseen_send(14).await;
    assert!(
        matches!(r.settled("a"), Some(Settled::Retrying { .. })),
        "{:?}",
        r.settled("a")
    );
    assert_eq!(r.brevo.sent(), 0, "resent past the shortest key window");
    assert!(r.brevo.log_queries.lock().expect("lock").is_empty());
    // Well inside the shortest window, the same key makes a resend safe.
    let r = after_an_unseen_send(5).await;
    assert_eq!((r.brevo.sent(), r.summary.sent), (1, 1));
}

#[tokio::test]
async fn a_run_whose_every_send_failed_does_not_exit_0() {
    let mails = (0..3).map(|i| due_today(&format!("m{i}"))).collect();
    let r = drain(mails, (0..3).map(|_| transient(true)).collect()).await;
    assert_eq!(r.exit_code(), 4, "{:?}", r.summary);
    assert!(r.summary.stopped.is_some());
}

#[tokio::test]
async fn acks_the_broker_may_not_have_got_do_not_exit_0() {
    let r = drain_with(vec![due_today("a")], vec![sent()], caps(12), |_, mb| {
        mb.sync_fails = true;
    })
    .await;
    assert_eq!(r.summary.sent, 1, "it was sent, and the journal says so");
    assert!(r.store.is_sent("id:a").expect("journal"));
    assert_eq!(r.exit_code(), 4);
}

#[tokio::test]
async fn mail_put_back_by_a_429_is_taken_again_after_the_pause() {
    // With room for two sends, the second take finds the queue empty; the 429 on the
    // only mail then puts it back, and the run must take it again.
    let slow_down = SendOutcome::RateLimited {
        retry_after: Some(Duration::from_millis(50)),
    };
    let (mails, answers) = (vec![due_today("a")], vec![slow_down, sent()]);
    let r = drain_at(now(), 2, mails, answers, vec![], caps(12), |_, _| {}).await;
    assert_eq!(r.settled("a"), Some(Settled::Acked));
    assert_eq!((r.summary.sent, r.exit_code()), (1, 0));
    assert!(r.mailbox.queued().is_empty());
}

#[tokio::test]
async fn a_failed_idempotency_probe_makes_every_unseen_answer_a_lookup_before_any_resend() {
    // An attempt 22 minutes ago whose answer was never seen: within Brevo's window the
    // drain would resend and count on the key. Once `doctor --idempotency-probe` saw
    // Brevo accept a repeated key, the key proves nothing: Brevo's log is asked first.
    let t0 = now() - chrono::Duration::minutes(22);
    let r = drain_at(
        now(),
        1,
        vec![due_today("a")],
        vec![],
        vec![LogAnswer::Found],
        caps(12),
        |store, _| {
            store.begin_send("id:a", t0).expect("journal");
            store
                .record_probe(t0, false, "accepted twice")
                .expect("probe");
        },
    )
    .await;
    assert_eq!(r.brevo.sent(), 0, "not sent again");
    assert_eq!(r.settled("a"), Some(Settled::Acked));
}
