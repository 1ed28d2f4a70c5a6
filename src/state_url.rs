//! Where the state lives when it is not the local SQLite file: `--state-url` /
//! `ACASO_MAIL_STATE_URL` / `DATABASE_URL` (what Dokku's `postgres:link` exports), a
//! `postgres://` URL, checked with the rest of the configuration before any I/O.
//!
//! The password may be in the URL or come, like the other secrets, from
//! `--state-password-file`, `ACASO_MAIL_STATE_PASSWORD(_FILE)` or the `state-password`
//! systemd credential (the URL itself may also come from `*_FILE` or the `state-url`
//! credential). TLS: `sslmode=verify-full` checks the server's certificate and name
//! against `sslrootcert=` / `--state-ca-file` (else the built-in roots); `sslmode=disable`
//! (the default without a CA file) speaks in clear, as Dokku's private network does.
//! The modes that encrypt without checking who answers (`require`, `prefer`...) are
//! refused.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Failure, Secret};
use crate::secrets::{self, Sources};
use crate::wire::CaFile;

/// The variables the state URL is read from, in order.
pub const URL_VARS: [&str; 2] = ["ACASO_MAIL_STATE_URL", "DATABASE_URL"];

/// A checked PostgreSQL URL.
#[derive(Clone)]
pub struct StateUrl {
    /// The URL the driver is given: password in, TLS options out.
    pub conn: Secret,
    /// The URL with the password masked, for messages, `stats` and `doctor`.
    pub masked: String,
    /// TLS: `None` in clear, else verify-full against this CA (`None`: built-in roots).
    pub tls: Option<Option<CaFile>>,
    /// Whether the CA file was named by `sslrootcert=` in the URL (else by
    /// `--state-ca-file` / `ACASO_MAIL_STATE_CA_FILE`), for messages that say what to change.
    pub ca_in_url: bool,
}

impl fmt::Debug for StateUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateUrl({})", self.masked)
    }
}

/// Where a command finds the state: the local directory (the SQLite journal, and the
/// run lock when no URL is set) and, when set, PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// `--state-dir`.
    pub dir: &'a Path,
    /// `--state-url`, when the state lives in PostgreSQL.
    pub url: Option<&'a StateUrl>,
    /// How long to wait for PostgreSQL to answer a connection (`--timeout`).
    pub timeout: std::time::Duration,
}

impl<'a> From<&'a Path> for Place<'a> {
    fn from(dir: &'a Path) -> Self {
        Place {
            dir,
            url: None,
            timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// The state options as plain values.
#[derive(Debug, Clone, Default)]
pub struct StateSettings {
    /// `--state-url` (its variables are read here, not by clap).
    pub url: Option<String>,
    /// `--state-password-file`.
    pub password_file: Option<PathBuf>,
    /// `--state-ca-file` / `ACASO_MAIL_STATE_CA_FILE`.
    pub ca_file: Option<PathBuf>,
}

impl StateUrl {
    /// The state URL from its first source, checked; `None` when none is set (the state
    /// stays in SQLite in the state directory).
    pub fn from_settings(
        args: &StateSettings,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Option<StateUrl>, Failure> {
        let sources = Sources {
            what: "state URL",
            value: args.url.as_deref().map(|u| (u, "--state-url")),
            file: None,
            vars: &URL_VARS,
            credential: "state-url",
        };
        let password = Sources {
            what: "state password",
            value: None,
            file: args
                .password_file
                .as_deref()
                .map(|p| (p, "--state-password-file")),
            vars: &["ACASO_MAIL_STATE_PASSWORD"],
            credential: "state-password",
        };
        let password = secrets::resolve(&password, env)?;
        let Some(url) = secrets::resolve(&sources, env)? else {
            let stray = if args.ca_file.is_some() {
                Some("--state-ca-file / ACASO_MAIL_STATE_CA_FILE")
            } else {
                password.is_some().then_some("a state password (--state-password-file, ACASO_MAIL_STATE_PASSWORD or its file)")
            };
            if let Some(what) = stray {
                return Err(Failure::Usage(format!(
                    "{what} is set but no --state-url / ACASO_MAIL_STATE_URL / DATABASE_URL"
                )));
            }
            return Ok(None);
        };
        parse(url.expose(), password, args.ca_file.as_deref()).map(Some)
    }
}

fn parse(raw: &str, password: Option<Secret>, ca_file: Option<&Path>) -> Result<StateUrl, Failure> {
    let bad = |why: &str| {
        Failure::Usage(format!(
            "invalid state URL (--state-url / ACASO_MAIL_STATE_URL / DATABASE_URL): {why}; expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=verify-full&sslrootcert=CA.pem]"
        ))
    };
    let mut url = url::Url::parse(raw).map_err(|_| bad("not a URL"))?;
    // As given, for the masked URL: the TLS options are taken out below.
    let query = url.query().map(str::to_string);
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(bad("the scheme must be postgres:// or postgresql://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    let (mut mode, mut root) = (None, None);
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(k, v)| match k.as_ref() {
            "sslmode" => {
                mode = Some(v.into_owned());
                None
            }
            "sslrootcert" => {
                root = Some(PathBuf::from(v.as_ref()));
                None
            }
            _ => Some((k.into_owned(), v.into_owned())),
        })
        .collect();
    url.set_query(None);
    if !kept.is_empty() {
        url.query_pairs_mut().extend_pairs(kept);
    }
    let ca_in_url = root.is_some();
    let ca_path = match (root, ca_file) {
        (Some(_), Some(_)) => {
            return Err(Failure::Usage(
                "both sslrootcert= in the state URL and --state-ca-file / ACASO_MAIL_STATE_CA_FILE are set: keep one".into(),
            ));
        }
        (Some(r), None) => Some((r, "the CA file of sslrootcert= in the state URL")),
        (None, f) => f.map(|f| {
            let what = "the state CA file (--state-ca-file / ACASO_MAIL_STATE_CA_FILE)";
            (f.to_path_buf(), what)
        }),
    };
    let tls = match (mode.as_deref(), &ca_path) {
        (None, None) | (Some("disable"), None) => None,
        (None | Some("verify-full"), _) => Some(
            ca_path
                .map(|(p, what)| crate::wire::read_ca(&p, what))
                .transpose()?,
        ),
        (Some("disable"), Some(_)) => {
            return Err(bad("a CA file is given with sslmode=disable"));
        }
        (Some(other), _) => {
            return Err(bad(&format!(
                "sslmode={other} is not supported (it does not check who answers): use verify-full, or disable"
            )));
        }
    };
    let masked = masked(&url, query.as_deref());
    if let Some(p) = password {
        if !url.password().unwrap_or("").is_empty() {
            return Err(Failure::Usage(
                "the state URL holds a password and one is also given (--state-password-file, ACASO_MAIL_STATE_PASSWORD or its file, or the state-password credential): keep one".into(),
            ));
        }
        url.set_password(Some(p.expose()))
            .map_err(|()| bad("cannot hold a password"))?;
    }
    postgres::Config::from_str(url.as_str()).map_err(|e| bad(&e.to_string()))?;
    Ok(StateUrl {
        conn: Secret::new(url.to_string()),
        masked,
        tls,
        ca_in_url,
    })
}

/// The URL with the query the user wrote (`query`), for messages, `stats` and `doctor`:
/// its password, and any `password=` or `sslpassword=` in its query, masked. The rest of
/// the query stays: a `hostaddr=`, a `port=` or an `sslmode=` says where and how the run
/// connected.
fn masked(url: &url::Url, query: Option<&str>) -> String {
    let mut m = url.clone();
    if !m.password().unwrap_or("").is_empty() {
        let _ = m.set_password(Some("***"));
    }
    let kept: Vec<String> = query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let key = pair.split_once('=').map_or(pair, |(k, _)| k);
            let name: String = url::form_urlencoded::parse(key.as_bytes())
                .map(|(k, _)| k.into_owned())
                .collect();
            if matches!(name.as_str(), "password" | "sslpassword") {
                format!("{key}=***")
            } else {
                pair.to_string()
            }
        })
        .collect();
    m.set_query((!kept.is_empty()).then(|| kept.join("&")).as_deref());
    m.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(raw: &str) -> Result<StateUrl, Failure> {
        let env = |_: &str| None;
        let args = StateSettings {
            url: Some(raw.into()),
            ..StateSettings::default()
        };
        StateUrl::from_settings(&args, &env).map(|u| u.expect("set"))
    }

    #[test]
    fn the_password_is_masked_and_tls_modes_that_check_nothing_are_refused() {
        let u = url("postgres://acaso:s3cret@db.example:5433/mail").expect("ok");
        assert_eq!(u.masked, "postgres://acaso:***@db.example:5433/mail");
        assert!(u.tls.is_none());
        assert!(!format!("{u:?}").contains("s3cret"));
        let full = url("postgres://a@db/mail?sslmode=verify-full").expect("ok");
        assert!(matches!(full.tls, Some(None)));
        for bad in [
            "postgres://a@db/mail?sslmode=require",
            "mysql://a@db/mail",
            "postgres:///mail",
            "postgres://a@db/mail?sslmode=verify-full&sslrootcert=/nonexistent.pem",
        ] {
            let e = url(bad).expect_err(bad).to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("state"), "{e}");
        }
        let env = |k: &str| {
            (k == "DATABASE_URL").then(|| "postgres://dokku:pw@dokku-postgres-x:5432/x".into())
        };
        let u = StateUrl::from_settings(&StateSettings::default(), &env)
            .expect("ok")
            .expect("from DATABASE_URL");
        assert_eq!(u.masked, "postgres://dokku:***@dokku-postgres-x:5432/x");
    }

    proptest::proptest! {
        /// Any text: no panic. A URL that is taken never shows its password, whether it
        /// stands before the `@` or in the query, however the query is spelled.
        #[test]
        fn any_text_as_a_state_url(
            s in "\\PC{0,60}",
            user in "[a-z]{1,8}",
            host in "[a-z]{1,8}(\\.[a-z]{1,5})?",
            query in "((application_name=[a-zA-Z0-9._-]{0,10}|connect_timeout=[0-9]{1,3}|sslmode=disable)&){0,3}",
            key in "(password|pass%77ord|p%61ssword)",
        ) {
            let _ = parse(&s, None, None);
            let secret = "Zq9xSECRETx7";
            for raw in [
                format!("postgres://{user}:{secret}@{host}/db?{query}"),
                format!("postgres://{user}@{host}/db?{query}{key}={secret}"),
                format!("postgresql://{user}@{host}:5433/db?{key}={secret}&{query}"),
            ] {
                // Every one of these is a valid URL: the checks below always run.
                let u = parse(&raw, None, None);
                proptest::prop_assert!(u.is_ok(), "{} refused: {:?}", raw, u.as_ref().err());
                if let Ok(u) = u {
                    proptest::prop_assert!(!u.masked.contains(secret), "{raw} -> {}", u.masked);
                    let debug = format!("{u:?}");
                    proptest::prop_assert!(!debug.contains(secret), "{}", debug);
                }
            }
        }
    }

    #[test]
    fn the_masked_url_keeps_its_query_but_not_a_password_there() {
        let u = url("postgres://acaso@db.internal/mail?hostaddr=10.0.0.5&port=5433&sslmode=disable&password=s3cret&application_name=a%20b")
            .expect("ok");
        assert_eq!(
            u.masked,
            "postgres://acaso@db.internal/mail?hostaddr=10.0.0.5&port=5433&sslmode=disable&password=***&application_name=a%20b"
        );
        assert!(!format!("{u:?}").contains("s3cret"));
        // The driver still gets the password; TLS options are the program's.
        assert!(u.conn.expose().contains("password=s3cret"));
        assert!(!u.conn.expose().contains("sslmode"));
    }

    #[test]
    fn the_password_may_come_from_a_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").expect("write");
        let args = StateSettings {
            url: Some("postgres://acaso@db/mail".into()),
            password_file: Some(file),
            ca_file: None,
        };
        let u = StateUrl::from_settings(&args, &|_: &str| None)
            .expect("ok")
            .expect("set");
        assert!(u.conn.expose().contains("acaso:from-file@db"));
        assert_eq!(u.masked, "postgres://acaso@db/mail");
        let both = StateSettings {
            url: Some("postgres://acaso:x@db/mail".into()),
            ..args
        };
        assert!(StateUrl::from_settings(&both, &|_: &str| None).is_err());
    }
}
