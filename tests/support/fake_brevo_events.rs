//! The fake Brevo's delivery reads, as Brevo's definition publishes them:
//! `GET /smtp/statistics/events` (filters `email`, `event`, `tags`, `messageId`,
//! `templateId`; `startDate`+`endDate` at most 90 days apart, or `days`; 30 days by
//! default; `sort` newest first by default; `limit` 2500 by default, at most 5000;
//! `offset`) and `GET /smtp/blockedContacts` (`limit` 50 by default, at most 100;
//! `offset`, `sort`, `startDate`+`endDate`, `senders`). An answer with nothing is `{}`.
//! Queries are checked against `tests/fixtures/brevo/*-query.schema.json`.

use std::collections::VecDeque;

use serde_json::{Value, json};

use super::{State, conforms, err, query_object};

/// What the fake reports about delivery, and what it was asked.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Events, in the order Brevo recorded them: (Unix time, the row as Brevo sends it).
    pub events: Vec<(i64, Value)>,
    /// Blocked contacts, in the order they were blocked: (Unix time, the row).
    pub blocked: Vec<(i64, Value)>,
    /// Statuses the next events calls answer instead of the events, in order; 200
    /// lets one call through.
    pub events_script: VecDeque<u16>,
    /// Every events query received (the query string).
    pub events_queries: Vec<String>,
    /// Every blocked-contacts query received.
    pub blocked_queries: Vec<String>,
    /// Events reported for each mail as it is accepted, a second apart (the stand-in's
    /// `--events requests,delivered`); none by default, the tests script their own.
    pub on_accept: Vec<String>,
}

fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn day(q: &Value, k: &str) -> Option<chrono::NaiveDate> {
    q.get(k)
        .and_then(Value::as_str)
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
}

impl State {
    /// Brevo reports `event` (with `reason`) at `unix` for the accepted mail `i`.
    pub fn report(&mut self, i: usize, event: &str, reason: Option<&str>, unix: i64) {
        let m = &self.accepted[i];
        let mut row = json!({
            "email": m["to"][0]["email"], "date": date(unix), "subject": "Mentoria",
            "messageId": self.accepted_ids[i], "event": event,
            "from": "ops@acaso.example", "templateId": m["templateId"],
        });
        // Which tag Brevo reports for a mail with several is not documented: the first.
        if let (Some(tag), Some(o)) = (m["tags"][0].as_str(), row.as_object_mut()) {
            o.insert("tag".into(), tag.into());
        }
        if let (Some(r), Some(o)) = (reason, row.as_object_mut()) {
            o.insert("reason".into(), r.into());
        }
        self.delivery.events.push((unix, row));
    }

    /// Reports the `on_accept` events for the mail just accepted at `unix`.
    pub fn report_accepted(&mut self, unix: i64) {
        let Some(i) = self.accepted.len().checked_sub(1) else {
            return;
        };
        for (k, event) in self.delivery.on_accept.clone().iter().enumerate() {
            self.report(i, event, None, unix + i64::try_from(k).unwrap_or(0));
        }
    }

    /// Brevo reports `event` at `unix` for the accepted mail to `to`.
    pub fn report_to(&mut self, to: &str, event: &str, reason: Option<&str>, unix: i64) {
        let i = self
            .accepted
            .iter()
            .position(|m| m["to"][0]["email"].as_str() == Some(to))
            .unwrap_or_else(|| panic!("no accepted mail to {to}"));
        self.report(i, event, reason, unix);
    }

    /// Brevo blocks `email` (reason `code`) at `unix`.
    pub fn block(&mut self, email: &str, code: &str, unix: i64) {
        let row = json!({"email": email, "senderEmail": "ops@acaso.example",
                         "reason": {"code": code, "message": "blocked"}, "blockedAt": date(unix)});
        self.delivery.blocked.push((unix, row));
    }
}

/// The days a query asks for: `startDate`..`endDate`, or the `days` up to today, or
/// the past 30 days; `None` when the fake follows the wall clock (acaso-mail's `--now`
/// would not match it), where every row is in.
fn window(s: &mut State, q: &Value, what: &str) -> Result<Option<(i64, i64)>, String> {
    let (start, end) = (day(q, "startDate"), day(q, "endDate"));
    if q.get("days").is_some() && (start.is_some() || end.is_some()) {
        return Err(format!(
            "{what}: days is not compatible with startDate and endDate"
        ));
    }
    if let (Some(a), Some(b)) = (start, end)
        && (b < a || (b - a).num_days() > 90)
    {
        return Err(format!(
            "{what}: startDate {a} to endDate {b} is not within 90 days"
        ));
    }
    let Some(now) = s.now else { return Ok(None) };
    let today =
        chrono::DateTime::from_timestamp(now, 0).map_or(chrono::NaiveDate::MIN, |t| t.date_naive());
    let days = q.get("days").and_then(Value::as_i64).unwrap_or(30);
    let (a, b) = match (start, end) {
        (Some(a), Some(b)) => (a, b),
        _ => (today - chrono::Duration::days(days - 1), today),
    };
    let t = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp();
    Ok(Some((t(a), t(b) + 86_399)))
}

/// Sorts (newest first unless `sort=asc`) and pages (`offset`, `limit`) the rows.
fn page(mut rows: Vec<Value>, q: &Value, default_limit: u64) -> Vec<Value> {
    if q.get("sort").and_then(Value::as_str) != Some("asc") {
        rows.reverse();
    }
    let offset = q.get("offset").and_then(Value::as_u64).unwrap_or(0);
    let limit = q
        .get("limit")
        .and_then(Value::as_u64)
        .unwrap_or(default_limit);
    rows.into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect()
}

/// `GET /smtp/statistics/events`.
pub fn events(s: &mut State, query: &str) -> (u16, Value) {
    s.delivery.events_queries.push(query.to_string());
    if let Some(status) = s.delivery.events_script.pop_front()
        && status != 200
    {
        return (status, err("internal_error", "try again later"));
    }
    let q = query_object(query);
    let what = "GET /smtp/statistics/events";
    if let Err(e) = conforms(s, what, "events-query", &q) {
        return (400, err("invalid_parameter", &e));
    }
    let within = match window(s, &q, what) {
        Ok(w) => w,
        Err(e) => {
            s.violations.push(e.clone());
            return (400, err("invalid_parameter", &e));
        }
    };
    let text = |k: &str| q.get(k).and_then(Value::as_str).map(str::to_string);
    let tags: Option<Vec<String>> =
        text("tags").map(|t| t.split(',').map(|x| x.trim().to_string()).collect());
    let fits = |(at, row): &(i64, Value)| {
        let field = |k: &str| row.get(k).and_then(Value::as_str).map(str::to_string);
        within.is_none_or(|(a, b)| (a..=b).contains(at))
            && ["email", "event", "messageId"]
                .iter()
                .all(|k| text(k).is_none() || text(k) == field(k))
            && q.get("templateId")
                .is_none_or(|t| row.get("templateId") == Some(t))
            && tags
                .as_ref()
                .is_none_or(|t| field("tag").is_some_and(|g| t.contains(&g)))
    };
    let rows: Vec<Value> = s
        .delivery
        .events
        .iter()
        .filter(|r| fits(r))
        .map(|(_, r)| r.clone())
        .collect();
    let rows = page(rows, &q, 2500);
    if rows.is_empty() {
        return (200, json!({}));
    }
    (200, json!({ "events": rows }))
}

/// `GET /smtp/blockedContacts`.
pub fn blocked(s: &mut State, query: &str) -> (u16, Value) {
    s.delivery.blocked_queries.push(query.to_string());
    let q = query_object(query);
    let what = "GET /smtp/blockedContacts";
    if let Err(e) = conforms(s, what, "blocked-query", &q) {
        return (400, err("invalid_parameter", &e));
    }
    let (start, end) = (day(&q, "startDate"), day(&q, "endDate"));
    let t = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp();
    let rows: Vec<Value> = s
        .delivery
        .blocked
        .iter()
        .filter(|(at, _)| {
            start.is_none_or(|a| *at >= t(a)) && end.is_none_or(|b| *at < t(b) + 86_400)
        })
        .map(|(_, r)| r.clone())
        .collect();
    if rows.is_empty() {
        return (200, json!({}));
    }
    let count = rows.len();
    (200, json!({"count": count, "contacts": page(rows, &q, 50)}))
}

/// The events and blocked contacts the fake serves fit Brevo's definition; it pages,
/// sorts and filters as documented, and answers `{}` when there is nothing.
#[test]
fn the_delivery_reads_fit_brevos_definition_and_page_as_documented() {
    use super::{FakeBrevo, assert_fits_brevo, call};
    let fake = FakeBrevo::start("k", 5.0);
    let t0 = 1_796_166_000; // 2026-12-02T...
    fake.set_now(t0);
    let (status, empty) = call(&fake, "/smtp/statistics/events?limit=10&offset=0", None);
    assert_eq!((status, &empty), (200, &json!({})));
    let (status, none) = call(&fake, "/smtp/blockedContacts?limit=100", None);
    assert_eq!((status, &none), (200, &json!({})));
    for to in ["a@example.org", "b@example.org", "c@example.org"] {
        let mail = json!({"templateId": 9, "to": [{"email": to}], "tags": ["acaso-mail", to]});
        assert_eq!(call(&fake, "/smtp/email", Some(&mail)).0, 201);
    }
    {
        let mut s = fake.state();
        for i in 0..3 {
            s.report(i, "requests", None, t0 + 1);
        }
        s.report(0, "delivered", None, t0 + 2);
        s.report_to(
            "b@example.org",
            "hardBounces",
            Some("550 no such user"),
            t0 + 3,
        );
        s.block("b@example.org", "hardBounce", t0 + 4);
    }
    let (_, all) = call(&fake, "/smtp/statistics/events", None);
    assert_fits_brevo("events-answer", &all);
    let rows = all["events"].as_array().map_or(0, Vec::len);
    assert_eq!(rows, 5);
    assert_eq!(
        all["events"][0]["event"], "hardBounces",
        "newest first by default"
    );
    let (_, p1) = call(
        &fake,
        "/smtp/statistics/events?limit=2&offset=2&sort=asc",
        None,
    );
    let events: Vec<&str> = p1["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(events, ["requests", "delivered"]);
    let (_, hb) = call(
        &fake,
        "/smtp/statistics/events?event=hardBounces&email=b%40example.org",
        None,
    );
    assert_eq!(hb["events"][0]["reason"], "550 no such user");
    let (_, blocked) = call(
        &fake,
        "/smtp/blockedContacts?limit=100&offset=0&sort=asc",
        None,
    );
    assert_fits_brevo("blocked-answer", &blocked);
    assert_eq!(blocked["count"], 1);
    // What Brevo refuses: a window over 90 days, days with dates, a page over 5000.
    for q in [
        "startDate=2026-01-01&endDate=2026-12-01",
        "days=3&startDate=2026-12-01&endDate=2026-12-02",
        "limit=5001",
        "startDate=2026-12-01",
    ] {
        let (status, _) = call(&fake, &format!("/smtp/statistics/events?{q}"), None);
        assert_eq!(status, 400, "{q}");
    }
    assert_eq!(call(&fake, "/smtp/blockedContacts?limit=101", None).0, 400);
    assert_eq!(fake.take_violations().len(), 5);
}
