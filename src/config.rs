//! The validated configuration every subcommand runs with, built from plain values (the
//! command line's, as `cli` hands them over) and the environment, before any I/O.
//! Wrong values are refused here, with a message that says what is expected; secrets
//! are wrapped so they cannot be printed.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;

use crate::error::{Failure, Secret};

mod amqp;
mod limit;
use crate::secrets::Which;
use amqp::validate_amqp_url;
pub use limit::{Limit, hourly_limit};

/// Default RabbitMQ URL (the contract's).
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Default queue name.
pub const DEFAULT_QUEUE: &str = "acaso.mail";
/// Default Brevo API base.
pub const DEFAULT_BREVO_URL: &str = "https://api.brevo.com/v3";
/// Default time zone.
pub const DEFAULT_TZ: &str = "America/Recife";
/// Default bound of the head read that counts urgency bands (`--scan`).
pub const DEFAULT_SCAN: u32 = 2_000;

/// The raw settings, as given on the command line (or by clap from its environment
/// variables), nothing checked yet. Each field is the flag of the same name
/// (`amqp_url` is `--amqp-url`); `lock_wait` and `timeout` are in seconds.
#[derive(Debug, Clone, Default)]
#[allow(missing_docs)] // documented above, one flag each
pub struct Settings {
    pub amqp_url: Option<String>,
    pub queue: Option<String>,
    pub brevo_url: Option<String>,
    pub api_key: Option<String>,
    pub security: crate::secrets::SecuritySettings,
    pub pushgateway: Option<String>,
    pub tz: Option<String>,
    pub now: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub state: crate::state_url::StateSettings,
    pub lock_wait: u64,
    pub timeout: u64,
    pub scan: u32,
    pub credits_reset: Option<String>,
    pub json: bool,
    pub quiet: bool,
    pub color: ColorWhen,
    /// For `drain-hourly`: its `--limit` (None when not given); None for other commands.
    pub hourly_limit: Option<Option<Limit>>,
}

/// When to colour tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ColorWhen {
    /// When stdout is a terminal that wants colour.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Everything a subcommand needs to know, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// `drain-hourly`'s limit: `--limit`, else `SENDINBLUE_MAILS_PER_HOUR`, else 12.
    pub hourly_limit: Limit,
    /// The AMQP URL, password included: a secret as a whole.
    pub amqp_url: Secret,
    /// The AMQP URL with its password replaced by `***`, for messages.
    pub amqp_display: String,
    /// The zone that defines "today".
    pub tz: Tz,
    /// The mail queue.
    pub queue: String,
    /// A fixed "now", or `None` for the clock.
    pub fixed_now: Option<DateTime<Utc>>,
    /// Pushgateway base URL, if configured.
    pub pushgateway: Option<String>,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The state in PostgreSQL (`--state-url`), else SQLite in the state directory.
    pub state_url: Option<crate::state_url::StateUrl>,
    /// Brevo API base, without a trailing slash.
    pub brevo_url: String,
    /// Brevo API key, if configured.
    pub api_key: Option<Secret>,
    /// One JSON document on stdout instead of tables.
    pub json: bool,
    /// When to colour tables (decided by the output module).
    pub color: ColorWhen,
    /// The environment asks for no colour (`NO_COLOR`, `TERM=dumb`).
    pub env_refuses_color: bool,
    /// No summary on success.
    pub quiet: bool,
    /// How long to wait for another run's lock.
    pub lock_wait: Duration,
    /// Connect and request timeout.
    pub timeout: Duration,
    /// At most this many mails are read from the head of the queue to count bands.
    pub scan: u32,
    /// TLS roots and Pushgateway auth (see [`crate::wire`]).
    pub wire: crate::wire::Wire,
    /// When Brevo's daily credits reset, if stated (`--credits-reset`), in its zone.
    pub credits_reset: Option<(NaiveTime, Tz)>,
}

impl Config {
    /// Builds the configuration from settings and an environment lookup.
    pub fn new(args: &Settings, env: impl Fn(&str) -> Option<String>) -> Result<Self, Failure> {
        let env = |k: &str| env(k).filter(|v| !v.is_empty());
        // The URL may come from a file or a systemd credential; RABBITMQ_URL is what
        // Dokku's rabbitmq plugin exports when linked.
        let security = &args.security;
        let amqp = crate::secrets::read(Which::AmqpUrl, args.amqp_url.as_deref(), security, &env)?
            .map_or_else(|| DEFAULT_AMQP_URL.into(), |s| s.expose().to_string());
        let amqp_display = validate_amqp_url(&amqp)?;

        let queue = args.queue.clone().unwrap_or_else(|| DEFAULT_QUEUE.into());
        if queue.is_empty() || queue.len() > 200 || queue.starts_with("amq.") {
            return Err(Failure::Usage(format!(
                "invalid queue name {queue:?} (--queue / ACASO_MAIL_QUEUE): expected 1 to 200 bytes, not starting with \"amq.\""
            )));
        }

        // Errors name where the URL came from.
        let (brevo_url, brevo_from) = match (&args.brevo_url, env("SENDINBLUE_URL")) {
            (Some(u), _) => (u.clone(), "--brevo-url"),
            (None, Some(u)) => (u, "SENDINBLUE_URL"),
            (None, None) => match env("BREVO_URL") {
                Some(u) => (u, "BREVO_URL"),
                None => (DEFAULT_BREVO_URL.into(), "--brevo-url / SENDINBLUE_URL"),
            },
        };
        let brevo_url = validate_http_url(&brevo_url, brevo_from, DEFAULT_BREVO_URL)?;
        // Security hook: https:// only, except to a stand-in on loopback.
        crate::wire::require_tls_off_loopback(&brevo_url, brevo_from)?;

        // Security hook: the key may come from a file or a systemd credential.
        let api_key = crate::secrets::read(Which::ApiKey, args.api_key.as_deref(), security, &env)?;
        if let Some(k) = &api_key
            && k.expose()
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Failure::Usage(
                "invalid API key (--api-key, SENDINBLUE_API_KEY, BREVO_API_KEY or their files): it contains white space (expected a Brevo key such as xkeysib-...)"
                    .into(),
            ));
        }

        let pushgateway = args
            .pushgateway
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|u| {
                validate_http_url(
                    u,
                    "--pushgateway / PUSHGATEWAY_URL",
                    "http://127.0.0.1:9091",
                )
            })
            .transpose()?;
        // Security hook: CA files and Pushgateway auth, checked before any I/O.
        let wire = crate::wire::Wire::from_args(security, &amqp, pushgateway.as_deref(), &env)?;

        let tz_name = args.tz.clone().unwrap_or_else(|| DEFAULT_TZ.into());
        let tz = Tz::from_str(&tz_name).map_err(|_| {
            Failure::Usage(format!(
                "unknown time zone {tz_name:?} (--tz / ACASO_MAIL_TZ): expected an IANA name such as America/Recife or UTC"
            ))
        })?;

        let fixed_now = args
            .now
            .as_deref()
            .map(|s| {
                DateTime::parse_from_rfc3339(s).map(|d| d.to_utc()).map_err(|_| {
                    Failure::Usage(format!(
                        "invalid --now / ACASO_MAIL_NOW {s:?}: expected an RFC 3339 instant such as 2026-11-27T12:00:00-03:00"
                    ))
                })
            })
            .transpose()?;

        // The variable is read here, not by clap, so that a wrong value is reported as
        // the variable's when it came from there.
        let credits_reset = match (&args.credits_reset, env("ACASO_MAIL_CREDITS_RESET")) {
            (Some(v), _) => Some(("--credits-reset", v.clone())),
            (None, Some(v)) => Some(("ACASO_MAIL_CREDITS_RESET", v)),
            (None, None) => None,
        }
        .map(|(name, v)| {
            parse_reset(&v)
                .map(|(time, zone)| (time, zone.unwrap_or(tz)))
                .map_err(|why| Failure::Usage(format!("invalid {name}: {why}")))
        })
        .transpose()?;

        let state_dir = match &args.state_dir {
            Some(d) => d.clone(),
            None => default_state_dir(&env)?,
        };

        let state_url = crate::state_url::StateUrl::from_settings(&args.state, &env)?;

        let env_refuses_color = env("NO_COLOR").is_some() || env("TERM").as_deref() == Some("dumb");

        // Read only for drain-hourly: a wrong value in it fails no other command.
        let hourly_limit = match args.hourly_limit {
            Some(flag) => hourly_limit(flag, env)?,
            None => Limit::Count(12),
        };
        Ok(Config {
            hourly_limit,
            amqp_url: Secret::new(amqp),
            amqp_display,
            queue,
            brevo_url,
            api_key,
            pushgateway,
            tz,
            fixed_now,
            state_dir,
            state_url,
            json: args.json,
            color: args.color,
            env_refuses_color,
            quiet: args.quiet,
            lock_wait: Duration::from_secs(args.lock_wait),
            timeout: Duration::from_secs(args.timeout),
            scan: if args.scan == 0 {
                DEFAULT_SCAN
            } else {
                args.scan
            },
            wire,
            credits_reset,
        })
    }

    /// Where the state lives (see [`crate::state`]).
    pub fn state(&self) -> crate::state_url::Place<'_> {
        crate::state_url::Place {
            dir: &self.state_dir,
            url: self.state_url.as_ref(),
            timeout: self.timeout,
        }
    }

    /// "Now": the fixed instant if one was given, else the clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.fixed_now.unwrap_or_else(Utc::now)
    }

    /// The earlier of `--now` and the clock: what may be parked as expired. `stats
    /// --now` a week ahead (a "what if") must not park mail that is not expired yet.
    pub fn now_not_ahead(&self) -> DateTime<Utc> {
        self.now().min(Utc::now())
    }

    /// The API key, or a usage error for commands that need one.
    pub fn require_api_key(&self) -> Result<&Secret, Failure> {
        self.api_key.as_ref().ok_or_else(|| {
            Failure::Usage(
                "this command calls Brevo: set SENDINBLUE_API_KEY (or BREVO_API_KEY, or --api-key), or give it in a file: SENDINBLUE_API_KEY_FILE, --api-key-file, or the sendinblue-api-key systemd credential"
                    .into(),
            )
        })
    }
}

/// Parses a reset time as `--credits-reset` takes it: `HH:MM`, optionally followed by a
/// time zone (`21:00`, `00:00 UTC`, `21:00 America/Recife`); no zone means `--tz`.
fn parse_reset(s: &str) -> Result<(NaiveTime, Option<Tz>), String> {
    let expected = "expected a time of day HH:MM, optionally followed by a time zone (21:00, 00:00 UTC, 21:00 America/Recife)";
    let mut parts = s.split_whitespace();
    let time = parts
        .next()
        .and_then(|t| NaiveTime::parse_from_str(t, "%H:%M").ok())
        .ok_or_else(|| format!("{s:?} is not a reset time: {expected}"))?;
    let zone = match parts.next() {
        None => None,
        Some(z) => Some(Tz::from_str(z).map_err(|_| {
            format!("{s:?}: unknown time zone {z:?}: {expected}, the zone an IANA name")
        })?),
    };
    if parts.next().is_some() {
        return Err(format!("{s:?} is not a reset time: {expected}"));
    }
    Ok((time, zone))
}

/// Checks an http(s) URL and returns it, as the URL standard writes it, without a
/// trailing slash: what is checked here is what the HTTP client is given.
/// `example` is a URL of the same kind, for the message.
fn validate_http_url(url: &str, what: &str, example: &str) -> Result<String, Failure> {
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    match url::Url::parse(url) {
        // No user or password in it: the URL is printed and pushed to.
        Ok(u) if scheme_ok && u.has_host() && u.username().is_empty() && u.password().is_none() => {
            Ok(u.as_str().trim_end_matches('/').to_string())
        }
        Ok(u) if scheme_ok && u.has_host() => Err(Failure::Usage(format!(
            "invalid {what} {:?}: a user or password does not belong in the URL (it would be printed); expected an http:// or https:// URL such as {example}, with the credentials given apart",
            without_userinfo(url)
        ))),
        _ => Err(Failure::Usage(format!(
            "invalid {what} {:?}: expected an http:// or https:// URL such as {example}",
            without_userinfo(url)
        ))),
    }
}

/// `url` with everything between `scheme://` and its last `@` replaced by `***`: a
/// refused URL is printed, and the password it may carry must not be, even one holding
/// a `/`, `?` or `#` (a path with an `@` in it is masked too: harmless).
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_string(),
    }
}

fn default_state_dir(env: &impl Fn(&str) -> Option<String>) -> Result<PathBuf, Failure> {
    if let Some(x) = env("XDG_STATE_HOME") {
        return Ok(PathBuf::from(x).join("acaso-mail"));
    }
    if let Some(h) = env("HOME") {
        return Ok(PathBuf::from(h).join(".local/state/acaso-mail"));
    }
    Err(Failure::Usage(
        "no state directory: set --state-dir / ACASO_MAIL_STATE_DIR (or HOME)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_url_never_prints_its_password() {
        for url in [
            "http://user:s3cret@127.0.0.1:9091",
            "https://:s3cret@api.brevo.com/v3",
            "ftp://user:s3cret@host/x",
            "http://user:s3cret@[::1:9091/",
            "https://u:s3/cret@host/v3",
            "https://u:s3cret?x@host",
        ] {
            let e = validate_http_url(url, "Pushgateway URL", "http://127.0.0.1:9091")
                .expect_err("refused");
            let msg = e.to_string();
            assert!(!msg.contains("s3cret"), "{msg}");
            assert!(msg.contains("***@"), "{msg}");
        }
        assert_eq!(without_userinfo("no scheme"), "no scheme");
    }

    /// Settings from flag pairs such as `["--tz", "UTC"]`.
    fn config(args: &[&str], env: &[(&str, &str)]) -> Result<Config, Failure> {
        let mut s = Settings {
            timeout: 10,
            lock_wait: 30,
            ..Settings::default()
        };
        for pair in args.chunks(2) {
            let v = Some(pair[1].to_string());
            match pair[0] {
                "--tz" => s.tz = v,
                "--now" => s.now = v,
                "--amqp-url" => s.amqp_url = v,
                "--brevo-url" => s.brevo_url = v,
                "--pushgateway" => s.pushgateway = v,
                "--queue" => s.queue = v,
                "--credits-reset" => s.credits_reset = v,
                other => panic!("no such flag in this test: {other}"),
            }
        }
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::new(&s, move |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn rabbitmq_url_is_taken_when_no_other_url_is_set() {
        let c = config(
            &[],
            &[("HOME", "/h"), ("RABBITMQ_URL", "amqp://u:p@rabbit:5672/v")],
        )
        .expect("config");
        assert_eq!(c.amqp_display, "amqp://u:***@rabbit:5672/v");
        let c = config(
            &["--amqp-url", "amqp://a:b@flag:5672/%2f"],
            &[("HOME", "/h"), ("RABBITMQ_URL", "amqp://u:p@rabbit:5672/v")],
        )
        .expect("config");
        assert_eq!(c.amqp_display, "amqp://a:***@flag:5672//");
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = config(&[], &[("HOME", "/home/op")]).expect("config");
        assert_eq!(c.queue, "acaso.mail");
        assert_eq!(c.brevo_url, "https://api.brevo.com/v3");
        assert_eq!(c.tz, chrono_tz::America::Recife);
        assert_eq!(c.amqp_display, "amqp://guest:***@127.0.0.1:5672//");
        assert_eq!(
            c.state_dir,
            PathBuf::from("/home/op/.local/state/acaso-mail")
        );
        assert!(c.api_key.is_none() && c.fixed_now.is_none() && c.pushgateway.is_none());
    }

    #[test]
    fn env_fallbacks_and_precedence() {
        // (flags, environment, expected Brevo URL, expected key)
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: [Case; 2] = [
            (
                &[],
                &[
                    ("BREVO_URL", "http://127.0.0.2/v3/"),
                    ("BREVO_API_KEY", "k2"),
                ],
                "http://127.0.0.2/v3",
                "k2",
            ),
            (
                &["--brevo-url", "http://127.0.0.3"],
                &[
                    ("SENDINBLUE_URL", "http://127.0.0.4"),
                    ("BREVO_URL", "http://127.0.0.5"),
                    ("SENDINBLUE_API_KEY", "k1"),
                    ("BREVO_API_KEY", "k2"),
                ],
                "http://127.0.0.3",
                "k1",
            ),
        ];
        for (flags, env, url, key) in cases {
            let mut env = env.to_vec();
            env.push(("HOME", "/h"));
            let c = config(flags, &env).expect("config");
            assert_eq!(c.brevo_url, url);
            assert_eq!(c.api_key.as_ref().map(Secret::expose), Some(key));
        }
    }

    #[test]
    fn bad_values_say_what_is_expected() {
        let cases: [(&[&str], &str); 8] = [
            (&["--tz", "Mars/Olympus"], "IANA"),
            (&["--now", "yesterday"], "RFC 3339"),
            (&["--amqp-url", "http://x"], "amqp://"),
            (&["--amqp-url", "amqp://u:hunter2@"], "amqp://"),
            (&["--brevo-url", "ftp://x"], "http://"),
            (&["--brevo-url", "http://api.brevo.com/v3"], "https://"),
            (
                &["--pushgateway", "localhost:9091"],
                "such as http://127.0.0.1:9091",
            ),
            (&["--queue", "amq.x"], "queue"),
        ];
        for (args, hint) in cases {
            let err = config(args, &[("HOME", "/h")]).expect_err(&format!("{args:?}"));
            let msg = err.to_string();
            assert!(msg.contains(hint), "{args:?}: {msg}");
            assert!(!msg.contains("hunter2"), "secret leaked: {msg}");
            assert!(matches!(err, Failure::Usage(_)));
        }
    }

    #[test]
    fn the_credits_reset_is_a_time_of_day_with_an_optional_zone() {
        let at = |flags: &[&str], env: &[(&str, &str)]| {
            let mut env = env.to_vec();
            env.push(("HOME", "/h"));
            config(flags, &env).map(|c| c.credits_reset)
        };
        let nine = NaiveTime::from_hms_opt(21, 0, 0);
        assert_eq!(
            at(&["--credits-reset", "21:00"], &[]).expect("ok"),
            nine.map(|t| (t, chrono_tz::America::Recife))
        );
        assert_eq!(
            at(&[], &[("ACASO_MAIL_CREDITS_RESET", "00:00 UTC")]).expect("ok"),
            Some((NaiveTime::MIN, chrono_tz::UTC))
        );
        assert_eq!(
            at(
                &["--credits-reset", "21:00 America/Recife", "--tz", "UTC"],
                &[("ACASO_MAIL_CREDITS_RESET", "bad")]
            )
            .expect("the flag wins"),
            nine.map(|t| (t, chrono_tz::America::Recife))
        );
        assert_eq!(at(&[], &[]).expect("ok"), None);
        for (flags, env, named) in [
            (
                &["--credits-reset", "25:00"][..],
                &[][..],
                "--credits-reset",
            ),
            (
                &[],
                &[("ACASO_MAIL_CREDITS_RESET", "9pm")][..],
                "ACASO_MAIL_CREDITS_RESET",
            ),
            (&["--credits-reset", "21:00 Mars/Base"], &[], "IANA"),
            (&["--credits-reset", "21:00 UTC x"], &[], "HH:MM"),
        ] {
            let err = at(flags, env).expect_err("refused").to_string();
            assert!(err.contains(named) && err.contains("HH:MM"), "{err}");
        }
    }

    #[test]
    fn fixed_now_is_used() {
        let c = config(&["--now", "2026-11-27T12:00:00-03:00"], &[("HOME", "/h")]).expect("config");
        assert_eq!(c.now().to_rfc3339(), "2026-11-27T15:00:00+00:00");
    }

    #[test]
    fn http_urls_are_read_by_the_url_standard() {
        let read = |u: &str| validate_http_url(u, "--brevo-url", "https://api.brevo.com/v3");
        for (given, taken) in [
            ("https://api.brevo.com/v3", "https://api.brevo.com/v3"),
            ("http://127.0.0.1:9091/", "http://127.0.0.1:9091"),
            ("https://API.Brevo.com:443/v3/", "https://api.brevo.com/v3"),
        ] {
            assert_eq!(read(given).expect(given), taken);
        }
        for bad in [
            "api.brevo.com",
            "ftp://x",
            " https://x",
            "HTTPS://x",
            "http://",
            "http://user:pw@x",
            "http://x:99999",
            "http://[::1",
            "http://exa mple.com",
        ] {
            let err = read(bad).expect_err(bad).to_string();
            assert!(err.contains("expected an http:// or https:// URL"), "{err}");
        }
    }

    proptest::proptest! {
        /// Any text: no panic; what is taken is an http(s) URL, taken again unchanged.
        #[test]
        fn any_text_as_an_http_url(s in "\\PC{0,40}", tail in "[a-z0-9:/@.%?#\\[\\] -]{0,30}") {
            for u in [s.clone(), format!("http://{tail}"), format!("https://{s}")] {
                if let Ok(v) = validate_http_url(&u, "--pushgateway", "http://127.0.0.1:9091") {
                    proptest::prop_assert!(v.starts_with("http://") || v.starts_with("https://"), "{v}");
                    proptest::prop_assert_eq!(validate_http_url(&v, "x", "y").ok(), Some(v.clone()));
                }
                let _ = crate::wire::is_loopback_url(&u);
            }
        }
    }
}
