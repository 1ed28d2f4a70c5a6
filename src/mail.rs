//! Mail jobs as they travel on the queue: the legacy Acaso format and the generic
//! format, both read into one [`Mail`] ready to be sent through a Brevo template.
//!
//! Anything wrong with a body is a [`BadMessage`]: a permanent property of that message,
//! which drains set aside (never a crash, never a reason to stop the queue).

use chrono::{DateTime, Duration, FixedOffset};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::park::ParkReason;
use crate::urgency::parse_datetime;

/// Bodies larger than this are refused: no mail job needs more, and a huge body is a
/// bug or an attack.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Brevo refuses a recipient name longer than this.
pub const MAX_NAME_CHARS: usize = 70;

/// The Brevo templates the legacy format knows, and what each means.
pub const LEGACY_TEMPLATES: [(u32, &str); 5] = [
    (7, "confirmation to mentor"),
    (9, "confirmation to mentored"),
    (10, "subscribed users not selected"),
    (11, "mentoring canceled"),
    (16, "mentor: mentored is leaving"),
];

/// The params each legacy template gets, in the order the first version sent them.
pub const LEGACY_PARAMS: [(u32, &[&str]); 5] = [
    (
        7,
        &[
            "MENTOR_NAME",
            "MENTORING_DATE",
            "MENTORING_HOUR",
            "MENTORED_NAME",
            "MENTORED_ID",
        ],
    ),
    (
        9,
        &[
            "MENTOR_NAME",
            "MENTORING_DATE",
            "MENTORING_HOUR",
            "MENTORED_NAME",
            "MENTOR_ID",
        ],
    ),
    (
        10,
        &[
            "MENTOR_NAME",
            "MENTORING_DATE",
            "MENTORING_HOUR",
            "MENTORED_NAME",
        ],
    ),
    (
        11,
        &[
            "MENTOR_NAME",
            "MENTOR_ID",
            "MENTORING_DATE",
            "MENTORING_HOUR",
            "MENTORED_NAME",
        ],
    ),
    (
        16,
        &[
            "MENTOR_NAME",
            "MENTORED_NAME",
            "MENTORING_DATE_LIMIT",
            "MENTORING_DATE",
            "MENTORING_HOUR",
        ],
    ),
];

/// One recipient of a mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address.
    pub email: String,
    /// The display name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Which wire format a body was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"mail_params", "recipient", "template"}` from the Acaso monolith.
    Legacy,
    /// `{"template_id", "to", "params", "deadline"}`.
    Generic,
}

/// A mail job, whichever format it came in.
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    /// The format of the body it was read from.
    pub format: Format,
    /// The Brevo template id.
    pub template_id: u32,
    /// Its recipients (at least one).
    pub to: Vec<Recipient>,
    /// The template params, sent to Brevo as they are.
    pub params: Map<String, Value>,
    /// When the mail stops being useful; drives urgency and expiry.
    pub deadline: Option<DateTime<FixedOffset>>,
}

/// Why a body cannot be sent, ever. The `reason()` goes into the parking headers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadMessage {
    /// Larger than [`MAX_BODY_BYTES`].
    #[error("body of {0} bytes is over the {MAX_BODY_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not UTF-8.
    #[error("body is not UTF-8: {0}")]
    NotUtf8(String),
    /// Not JSON, or JSON of the wrong shape.
    #[error("{0}")]
    Malformed(String),
    /// A legacy template id acaso-mail has no params mapping for.
    #[error("unknown legacy template {0} (known: 7, 9, 10, 11, 16)")]
    UnknownTemplate(i64),
    /// An address Brevo would refuse.
    #[error("invalid recipient address {0:?}")]
    BadAddress(String),
}

impl BadMessage {
    /// Why it is parked (its code: metric label, `x-acaso-reason` header).
    pub fn reason(&self) -> ParkReason {
        match self {
            BadMessage::TooLarge(_) => ParkReason::TooLarge,
            BadMessage::NotUtf8(_) => ParkReason::NotUtf8,
            BadMessage::Malformed(_) => ParkReason::Malformed,
            BadMessage::UnknownTemplate(_) => ParkReason::UnknownTemplate,
            BadMessage::BadAddress(_) => ParkReason::InvalidAddress,
        }
    }
}

#[derive(Deserialize)]
struct LegacyBody {
    mail_params: LegacyParams,
    recipient: Recipient,
    template: i64,
}

#[derive(Deserialize)]
struct LegacyParams {
    mentor_name: Value,
    mentoring_datetime: String,
    #[serde(default)]
    mentored_name: Value,
    #[serde(default)]
    mentor_id: Value,
    #[serde(default)]
    mentored_id: Value,
}

#[derive(Deserialize)]
struct GenericBody {
    template_id: u32,
    to: Vec<Recipient>,
    #[serde(default)]
    params: Option<Map<String, Value>>,
    #[serde(default)]
    deadline: Option<String>,
}

/// Reads a body of either format. Legacy params are rendered with dates in `tz`.
pub fn parse(body: &[u8], tz: Tz) -> Result<Mail, BadMessage> {
    if body.len() > MAX_BODY_BYTES {
        return Err(BadMessage::TooLarge(body.len()));
    }
    let text = std::str::from_utf8(body).map_err(|e| BadMessage::NotUtf8(e.to_string()))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| BadMessage::Malformed(format!("not JSON: {e}")))?;
    parse_value(value, tz)
}

/// Reads a body already parsed as JSON.
pub fn parse_value(value: Value, tz: Tz) -> Result<Mail, BadMessage> {
    let Value::Object(obj) = &value else {
        return Err(BadMessage::Malformed("body is not a JSON object".into()));
    };
    let mail = if obj.contains_key("template_id") {
        let g: GenericBody = serde_json::from_value(value)
            .map_err(|e| BadMessage::Malformed(format!("generic format: {e}")))?;
        if g.to.is_empty() {
            return Err(BadMessage::Malformed(
                "generic format: \"to\" is empty".into(),
            ));
        }
        let deadline = g
            .deadline
            .as_deref()
            .map(parse_datetime)
            .transpose()
            .map_err(|e| BadMessage::Malformed(format!("deadline: {e}")))?;
        Mail {
            format: Format::Generic,
            template_id: g.template_id,
            to: g.to,
            params: g.params.unwrap_or_default(),
            deadline,
        }
    } else if obj.contains_key("template") || obj.contains_key("mail_params") {
        let l: LegacyBody = serde_json::from_value(value)
            .map_err(|e| BadMessage::Malformed(format!("legacy format: {e}")))?;
        legacy_mail(l, tz)?
    } else {
        return Err(BadMessage::Malformed(
            "neither the legacy format (\"template\", \"mail_params\", \"recipient\") \
             nor the generic one (\"template_id\", \"to\")"
                .into(),
        ));
    };
    for r in &mail.to {
        if !is_plausible_email(&r.email) {
            return Err(BadMessage::BadAddress(r.email.clone()));
        }
    }
    Ok(mail)
}

fn legacy_mail(l: LegacyBody, tz: Tz) -> Result<Mail, BadMessage> {
    let when = parse_datetime(&l.mail_params.mentoring_datetime)
        .map_err(|e| BadMessage::Malformed(format!("mentoring_datetime: {e}")))?;
    let local = when.with_timezone(&tz);
    let date = local.format("%d/%m/%Y").to_string();
    let hour = local.format("%H:%M").to_string();
    let limit = (local - Duration::days(1)).format("%d/%m/%Y").to_string();
    let p = &l.mail_params;
    let keys = LEGACY_PARAMS
        .iter()
        .find(|(t, _)| i64::from(*t) == l.template)
        .map(|(_, keys)| *keys)
        .ok_or(BadMessage::UnknownTemplate(l.template))?;
    let value = |key: &str| -> Value {
        match key {
            "MENTOR_NAME" => p.mentor_name.clone(),
            "MENTORED_NAME" => p.mentored_name.clone(),
            "MENTOR_ID" => p.mentor_id.clone(),
            "MENTORED_ID" => p.mentored_id.clone(),
            "MENTORING_DATE" => date.clone().into(),
            "MENTORING_HOUR" => hour.clone().into(),
            _ => limit.clone().into(), // MENTORING_DATE_LIMIT
        }
    };
    let fields: Vec<(&str, Value)> = keys.iter().map(|k| (*k, value(k))).collect();
    let template_id =
        u32::try_from(l.template).map_err(|_| BadMessage::UnknownTemplate(l.template))?;
    Ok(Mail {
        format: Format::Legacy,
        template_id,
        to: vec![l.recipient],
        params: fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        deadline: Some(when),
    })
}

/// A cheap check that catches what Brevo would refuse as an address: one `@`, a
/// non-empty local part, a dotted domain, no spaces or control characters.
pub fn is_plausible_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && domain.len() >= 3
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Who a mail is for, as tables and listings show it: its template and first
/// recipient, when its body can be read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Who {
    /// Its Brevo template.
    pub template_id: Option<u32>,
    /// Its first recipient.
    pub to: Option<String>,
}

impl Who {
    /// Reads who a body is for; an unreadable body is for nobody known.
    pub fn of(body: &[u8], tz: Tz) -> Self {
        parse(body, tz).map(|m| Who::from(&m)).unwrap_or_default()
    }

    /// The template for a table cell.
    pub fn template_cell(&self) -> String {
        self.template_id
            .map_or_else(|| "-".into(), |t| t.to_string())
    }

    /// The recipient for a table cell.
    pub fn to_cell(&self) -> String {
        self.to.clone().unwrap_or_else(|| "-".into())
    }
}

impl From<&Mail> for Who {
    fn from(m: &Mail) -> Self {
        Who {
            template_id: Some(m.template_id),
            to: Some(m.first_recipient().to_string()),
        }
    }
}

impl Mail {
    /// The JSON body of `POST /smtp/email` for this mail, with an idempotency key.
    /// Names longer than Brevo accepts are cut, rather than losing the mail.
    pub fn brevo_request(&self, idempotency_key: &str) -> Value {
        let to: Vec<Value> = self
            .to
            .iter()
            .map(|r| {
                let mut o = Map::new();
                o.insert("email".into(), r.email.clone().into());
                if let Some(name) = &r.name {
                    let name: String = name.chars().take(MAX_NAME_CHARS).collect();
                    o.insert("name".into(), name.into());
                }
                Value::Object(o)
            })
            .collect();
        let mut request = serde_json::json!({
            "templateId": self.template_id,
            "to": to,
            "headers": key_headers(idempotency_key),
            // The key as a tag too: it is how this mail is found in Brevo's log.
            "tags": ["acaso-mail", idempotency_key],
        });
        // Brevo refuses `"params": {}` (400 missing_parameter "params is blank"): a
        // mail without parameters is sent without the field.
        if !self.params.is_empty()
            && let Some(o) = request.as_object_mut()
        {
            o.insert("params".into(), Value::Object(self.params.clone()));
        }
        request
    }

    /// The first recipient's address (for tables and logs).
    pub fn first_recipient(&self) -> &str {
        self.to.first().map_or("", |r| r.email.as_str())
    }
}

/// The `headers` of a send that carry its idempotency key, under both names Brevo has
/// documented: `idempotencyKey` (its guide, the 2024 definition) and `Idempotency-Key`
/// (the 2026 definition, which converts header names to Title-Case). The name Brevo
/// does not recognise only becomes a harmless header of the sent mail. The drain and
/// `doctor --idempotency-probe` both send it, so the probe proves what the drain uses.
pub fn key_headers(key: &str) -> serde_json::Value {
    serde_json::json!({"idempotencyKey": key, "Idempotency-Key": key})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recife() -> Tz {
        "America/Recife".parse().expect("tz")
    }

    fn legacy(template: i64, when: &str) -> String {
        serde_json::json!({
            "mail_params": {
                "mentor_name": "Maria Barros",
                "mentoring_datetime": when,
                "mentored_name": "Enzo da Concei\u{e7}\u{e3}o",
                "mentor_id": null,
                "mentored_id": "e2f3fc03"
            },
            "recipient": {"name": "Maria Barros", "email": "someone@example.org"},
            "template": template
        })
        .to_string()
    }

    #[test]
    fn every_legacy_template_gets_exactly_its_params() {
        // Written out again on purpose: the test must not read the table it checks.
        let want = [
            (
                7,
                "MENTOR_NAME MENTORING_DATE MENTORING_HOUR MENTORED_NAME MENTORED_ID",
            ),
            (
                9,
                "MENTOR_NAME MENTORING_DATE MENTORING_HOUR MENTORED_NAME MENTOR_ID",
            ),
            (
                10,
                "MENTOR_NAME MENTORING_DATE MENTORING_HOUR MENTORED_NAME",
            ),
            (
                11,
                "MENTOR_NAME MENTOR_ID MENTORING_DATE MENTORING_HOUR MENTORED_NAME",
            ),
            (
                16,
                "MENTOR_NAME MENTORED_NAME MENTORING_DATE_LIMIT MENTORING_DATE MENTORING_HOUR",
            ),
        ];
        for (t, keys) in want {
            let m =
                parse(legacy(t, "2026-12-01 00:30:00-03:00").as_bytes(), recife()).expect("parse");
            let mut got: Vec<&str> = m.params.keys().map(String::as_str).collect();
            let mut keys: Vec<&str> = keys.split(' ').collect();
            got.sort_unstable();
            keys.sort_unstable();
            assert_eq!(got, keys, "template {t}");
            assert_eq!(m.template_id, u32::try_from(t).expect("id"));
            assert_eq!(m.params["MENTOR_NAME"], "Maria Barros");
        }
    }

    #[test]
    fn legacy_dates_render_in_recife_time() {
        // 02:30 UTC on Dec 1st is 23:30 on Nov 30th in Recife.
        let m = parse(legacy(16, "2026-12-01T02:30:00Z").as_bytes(), recife()).expect("parse");
        assert_eq!(m.params["MENTORING_DATE"], "30/11/2026");
        assert_eq!(m.params["MENTORING_HOUR"], "23:30");
        assert_eq!(m.params["MENTORING_DATE_LIMIT"], "29/11/2026");
        assert_eq!(m.params["MENTORED_NAME"], "Enzo da Concei\u{e7}\u{e3}o");
    }

    #[test]
    fn nulls_stay_null_and_absent_fields_are_null() {
        let body = r#"{"mail_params":{"mentor_name":"A B","mentoring_datetime":"2026-11-28 10:00:00"},
            "recipient":{"name":"A","email":"a@example.org"},"template":9}"#;
        let m = parse(body.as_bytes(), recife()).expect("parse");
        assert_eq!(m.params["MENTOR_ID"], Value::Null);
        assert_eq!(m.params["MENTORED_NAME"], Value::Null);
        // Naive = UTC: 10:00 UTC is 07:00 in Recife.
        assert_eq!(m.params["MENTORING_HOUR"], "07:00");
    }

    #[test]
    fn generic_format_passes_params_as_they_are() {
        let body = r#"{"template_id": 12, "to": [{"email": "a@example.org", "name": "Ana"}],
            "params": {"X": [1, {"y": null}]}, "deadline": "2026-11-28T14:00:00-03:00"}"#;
        let m = parse(body.as_bytes(), recife()).expect("parse");
        assert_eq!(m.format, Format::Generic);
        assert_eq!(m.template_id, 12);
        assert_eq!(
            Value::Object(m.params.clone()),
            serde_json::json!({"X": [1, {"y": null}]})
        );
        assert!(m.deadline.is_some());
        let req = m.brevo_request("k");
        assert_eq!(req["templateId"], 12);
        assert_eq!(req["to"][0]["name"], "Ana");
        assert_eq!(req["headers"]["idempotencyKey"], "k");
        assert_eq!(req["headers"]["Idempotency-Key"], "k");
        assert_eq!(req["params"]["X"][0], 1);
        let no_deadline = r#"{"template_id": 3, "to": [{"email": "a@example.org"}]}"#;
        let m = parse(no_deadline.as_bytes(), recife()).expect("parse");
        assert_eq!(m.deadline, None);
        assert!(m.params.is_empty());
        assert!(m.brevo_request("k")["to"][0].get("name").is_none());
        assert!(
            m.brevo_request("k").get("params").is_none(),
            "Brevo refuses an empty params object"
        );
    }

    #[test]
    fn bad_bodies_are_classified() {
        let tz = recife();
        let cases: [(&[u8], &str); 9] = [
            (b"\xff\xfe", "not_utf8"),
            (b"{not json", "malformed"),
            (b"[1,2]", "malformed"),
            (b"{\"hello\": 1}", "malformed"),
            (br#"{"template_id": "x", "to": []}"#, "malformed"),
            (br#"{"template_id": 1, "to": []}"#, "malformed"),
            (br#"{"template_id": 1, "to": [{"email": "not an address"}]}"#, "invalid_address"),
            (br#"{"template_id": 1, "to": [{"email": "a@b.c"}], "deadline": "soon"}"#, "malformed"),
            (br#"{"mail_params": {"mentor_name": "A", "mentoring_datetime": "2026-11-28 10:00:00"}, "recipient": {"email": "a@example.org"}, "template": 99}"#, "unknown_template"),
        ];
        for (body, reason) in cases {
            let err = parse(body, tz).expect_err(&String::from_utf8_lossy(body));
            assert_eq!(err.reason(), reason, "{err}");
        }
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(parse(&big, tz).expect_err("big").reason(), "too_large");
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            parse(deep.as_bytes(), tz).expect_err("deep").reason(),
            "malformed"
        );
    }

    mod properties {
        use super::super::*;
        use crate::urgency::Urgency;
        use proptest::prelude::*;

        fn any_tz() -> impl Strategy<Value = Tz> {
            proptest::sample::select(chrono_tz::TZ_VARIANTS.to_vec())
        }

        /// (year, month, day, hour): any date, with chrono's first and last days (where a
        /// time zone's offset or a day's subtraction overflows) well covered.
        fn any_date() -> BoxedStrategy<(i64, u32, u32, u32)> {
            prop_oneof![
                (Just(-262_143i64), Just(1u32), 1u32..3, 0u32..24),
                (Just(262_142i64), Just(12u32), 30u32..32, 0u32..24),
                (-300_000i64..300_000, 1u32..13, 1u32..32, 0u32..24),
                (1i64..10_000, 1u32..13, 1u32..32, 0u32..24),
            ]
            .boxed()
        }

        /// Date-times as a producer might write them, sane or not: any text, and dates of
        /// any year, day and hour, with or without an offset.
        fn any_datetime_text() -> impl Strategy<Value = String> {
            prop_oneof![
                "\\PC{0,30}",
                (any_date(), -14i32..15).prop_map(|((y, m, d, h), o)| format!(
                    "{y:+05}-{m:02}-{d:02}T{h:02}:00:00{o:+03}:00"
                )),
                any_date().prop_map(|(y, m, d, h)| format!("{y:+05}-{m:02}-{d:02}T{h:02}:59:59")),
            ]
        }

        proptest! {
            #[test]
            fn any_bytes_are_a_mail_or_a_reason_never_a_panic(body in proptest::collection::vec(any::<u8>(), 0..300), tz in any_tz()) {
                if let Err(e) = parse(&body, tz) {
                    prop_assert!(!e.reason().as_str().is_empty());
                }
            }

            #[test]
            fn any_deadline_in_either_format_is_a_mail_or_a_reason(
                when in any_datetime_text(),
                template in prop_oneof![Just(7i64), Just(9), Just(10), Just(11), Just(16), any::<i64>()],
                tz in any_tz(),
                now_secs in 0i64..253_402_300_799,
            ) {
                let legacy = serde_json::json!({
                    "mail_params": {"mentor_name": "A", "mentoring_datetime": when},
                    "recipient": {"email": "a@example.org"},
                    "template": template,
                });
                let generic = serde_json::json!({
                    "template_id": 1, "to": [{"email": "a@example.org"}], "deadline": when,
                });
                let now = chrono::DateTime::from_timestamp(now_secs, 0).unwrap_or_default();
                for body in [legacy, generic] {
                    match parse(body.to_string().as_bytes(), tz) {
                        // What a drain does next must not panic either.
                        Ok(m) => prop_assert!(!Urgency::of(m.deadline, now, tz).band().is_empty()),
                        Err(e) => prop_assert!(!e.reason().as_str().is_empty()),
                    }
                }
            }
        }
    }

    #[test]
    fn poison_dates_are_malformed_in_both_formats() {
        let tokyo: Tz = "Asia/Tokyo".parse().expect("tz");
        let legacy = legacy(9, "-262143-01-01T00:00:00");
        let err = parse(legacy.as_bytes(), recife()).expect_err("legacy poison");
        assert_eq!(err.reason(), "malformed", "{err}");
        let generic = br#"{"template_id": 1, "to": [{"email": "a@example.org"}], "deadline": "+262142-12-31T23:59:59"}"#;
        let err = parse(generic, tokyo).expect_err("generic poison");
        assert_eq!(err.reason(), "malformed", "{err}");
    }

    #[test]
    fn long_names_are_cut_to_what_brevo_accepts() {
        let name = "é".repeat(100);
        let body =
            serde_json::json!({"template_id": 1, "to": [{"email": "a@example.org", "name": name}]});
        let m = parse_value(body, recife()).expect("parse");
        let req = m.brevo_request("k");
        assert_eq!(
            req["to"][0]["name"].as_str().map(|s| s.chars().count()),
            Some(MAX_NAME_CHARS)
        );
    }

    #[test]
    fn every_fixture_line_maps_to_its_template_params() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/legacy-messages.jsonl"
        );
        let text = std::fs::read_to_string(path).expect("fixture");
        let mut n = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).expect("fixture json");
            let body = v["body"].to_string();
            let m = parse(body.as_bytes(), recife()).expect("fixture body parses");
            let t = v["body"]["template"].as_i64().expect("template");
            assert!(LEGACY_TEMPLATES.iter().any(|(id, _)| i64::from(*id) == t));
            assert_eq!(
                m.to[0].email,
                v["body"]["recipient"]["email"].as_str().expect("email")
            );
            assert_eq!(
                m.params["MENTOR_NAME"],
                v["body"]["mail_params"]["mentor_name"]
            );
            let date = m.params["MENTORING_DATE"].as_str().expect("date");
            let raw = v["body"]["mail_params"]["mentoring_datetime"]
                .as_str()
                .expect("dt");
            // The fixture writes Recife time: the rendered date is its first 10 chars, reordered.
            let want = format!("{}/{}/{}", &raw[8..10], &raw[5..7], &raw[0..4]);
            assert_eq!(date, want);
            assert_eq!(m.params["MENTORING_HOUR"].as_str(), Some(&raw[11..16]));
            n += 1;
        }
        assert!(n >= 10, "only {n} fixture lines");
    }
}
