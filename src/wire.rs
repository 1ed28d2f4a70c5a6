//! TLS and authentication on the wires acaso-mail talks over: RabbitMQ (`amqps://`, with
//! an optional private CA), and the Pushgateway (`https://`, with an optional private CA,
//! and HTTP basic auth). Brevo is reached over `https://` with the built-in roots.
//!
//! The options are validated with the rest of the configuration, before any I/O; the CA
//! files are read then, so a wrong path fails with exit 2, not half-way through a run.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Failure, Secret};
use crate::secrets::{self, SecuritySettings};

/// What the wires need besides the URLs.
#[derive(Debug, Clone, Default)]
pub struct Wire {
    /// CA(s) trusted for RabbitMQ's certificate, besides the built-in roots.
    pub amqp_ca: Option<CaFile>,
    /// CA(s) trusted for the Pushgateway's certificate, instead of the built-in roots.
    pub pushgateway_ca: Option<CaFile>,
    /// Basic auth for the Pushgateway.
    pub pushgateway_auth: Option<BasicAuth>,
}

/// A PEM file of CA certificates, read and checked.
#[derive(Clone)]
pub struct CaFile {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// Its PEM text.
    pub pem: String,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaFile({})", self.path.display())
    }
}

/// HTTP basic-auth credentials; the password is never printed.
#[derive(Debug, Clone)]
pub struct BasicAuth {
    /// The user.
    pub user: String,
    /// The password.
    pub password: Secret,
}

impl BasicAuth {
    /// The `Authorization` header's value.
    pub fn header(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password.expose());
        format!("Basic {}", base64(raw.as_bytes()))
    }
}

impl Wire {
    /// Reads and checks the TLS and auth options. `amqp_url` is the (secret) AMQP URL,
    /// `pushgateway` the validated Pushgateway URL if pushing is on.
    pub fn from_args(
        args: &SecuritySettings,
        amqp_url: &str,
        pushgateway: Option<&str>,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Failure> {
        let amqp_ca = tls_roots(
            args.amqp_ca_file.as_deref(),
            "--amqp-ca-file / ACASO_MAIL_AMQP_CA_FILE",
            ("the RabbitMQ URL", amqp_url, "amqps://"),
        )?;
        let Some(pg) = pushgateway else {
            // No push: the Pushgateway's options are not used.
            return Ok(Wire {
                amqp_ca,
                ..Wire::default()
            });
        };
        let pushgateway_ca = tls_roots(
            args.pushgateway_ca_file.as_deref(),
            "--pushgateway-ca-file / PUSHGATEWAY_CA_FILE",
            ("the Pushgateway URL", pg, "https://"),
        )?;
        let user = args.pushgateway_user.clone().filter(|u| !u.is_empty());
        let password = secrets::read(secrets::Which::PushgatewayPassword, None, args, env)?;
        let pushgateway_auth = match (user, password) {
            (None, None) => None,
            (Some(user), Some(password)) => {
                if user.contains(':') || user.chars().any(char::is_control) {
                    return Err(Failure::Usage(
                        "invalid --pushgateway-user / PUSHGATEWAY_USER: it must not contain ':'"
                            .into(),
                    ));
                }
                if !pg.starts_with("https://") && !is_loopback_url(pg) {
                    return Err(Failure::Usage(format!(
                        "the Pushgateway password would cross the network in clear to {pg}: use an https:// URL"
                    )));
                }
                Some(BasicAuth { user, password })
            }
            (Some(_), None) => {
                return Err(Failure::Usage(
                    "--pushgateway-user / PUSHGATEWAY_USER is set but no password: set PUSHGATEWAY_PASSWORD, PUSHGATEWAY_PASSWORD_FILE, --pushgateway-password-file or the pushgateway-password credential"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err(Failure::Usage(
                    "a Pushgateway password is set (PUSHGATEWAY_PASSWORD, PUSHGATEWAY_PASSWORD_FILE, --pushgateway-password-file or the pushgateway-password credential) but no user: set --pushgateway-user / PUSHGATEWAY_USER"
                        .into(),
                ));
            }
        };
        Ok(Wire {
            amqp_ca,
            pushgateway_ca,
            pushgateway_auth,
        })
    }
}

/// Reads a PEM file that must hold at least one certificate.
/// The CA file given with `option`, read, for a URL `(name, url, scheme)` that must
/// then use TLS.
fn tls_roots(
    path: Option<&Path>,
    option: &str,
    (name, url, scheme): (&str, &str, &str),
) -> Result<Option<CaFile>, Failure> {
    let Some(path) = path else {
        return Ok(None);
    };
    let ca = read_ca(path, option)?;
    if !url.starts_with(scheme) {
        return Err(Failure::Usage(format!(
            "{option} is for TLS: {name} must start with {scheme}"
        )));
    }
    Ok(Some(ca))
}

pub(crate) fn read_ca(path: &Path, what: &str) -> Result<CaFile, Failure> {
    let fail =
        |why: String| Failure::Usage(format!("cannot use {} as {what}: {why}", path.display()));
    let pem = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let certs = ureq::tls::parse_pem(pem.as_bytes())
        .filter(|i| matches!(i, Ok(ureq::tls::PemItem::Certificate(_))))
        .count();
    if certs == 0 {
        return Err(fail(
            "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(CaFile {
        path: path.to_path_buf(),
        pem,
    })
}

/// Refuses a plain `http://` Brevo URL off loopback: the API key would cross the network
/// in clear. `http://` stays fine for a local stand-in on 127.0.0.1 or localhost.
pub fn require_tls_off_loopback(url: &str, what: &str) -> Result<(), Failure> {
    if url.starts_with("http://") && !is_loopback_url(url) {
        return Err(Failure::Usage(format!(
            "invalid {what} {url:?}: the API key would cross the network in clear; use https:// (http:// only for 127.0.0.1 or localhost)"
        )));
    }
    Ok(())
}

/// Whether an http(s) URL's host is a loopback address or `localhost`.
pub fn is_loopback_url(url: &str) -> bool {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Standard base64 with padding (for the basic-auth header).
fn base64(bytes: &[u8]) -> String {
    ::base64::Engine::encode(&::base64::engine::general_purpose::STANDARD, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
        let auth = BasicAuth {
            user: "Aladdin".into(),
            password: Secret::new("open sesame"),
        };
        assert_eq!(auth.header(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(!format!("{auth:?}").contains("sesame"));
    }

    #[test]
    fn loopback_hosts() {
        for u in [
            "http://127.0.0.1:9091",
            "http://localhost/x",
            "http://[::1]:9091",
            "http://127.1.2.3",
        ] {
            assert!(is_loopback_url(u), "{u}");
        }
        for u in [
            "http://10.0.0.1:9091",
            "http://pushgateway:9091",
            "https://example.org",
            "http://127.0.0.1.evil.example/",
        ] {
            assert!(!is_loopback_url(u), "{u}");
        }
        let brevo = "--brevo-url / SENDINBLUE_URL";
        assert!(require_tls_off_loopback("https://api.brevo.com/v3", brevo).is_ok());
        assert!(require_tls_off_loopback("http://127.0.0.1:8025/v3", brevo).is_ok());
        let err = require_tls_off_loopback("http://api.brevo.com/v3", brevo).expect_err("clear");
        assert!(err.to_string().contains("https://"), "{err}");
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn pushgateway_auth_needs_both_halves_and_tls_off_loopback() {
        let args = SecuritySettings {
            pushgateway_user: Some("acaso".into()),
            ..Default::default()
        };
        let amqp = "amqp://g:g@h/%2f";
        let pw = env_of(&[("PUSHGATEWAY_PASSWORD", "SECRET-PW")]);
        let none = env_of(&[]);
        let w = Wire::from_args(&args, amqp, Some("https://pg.example:9091"), &pw).expect("ok");
        assert_eq!(
            w.pushgateway_auth.as_ref().map(|a| a.user.as_str()),
            Some("acaso")
        );
        assert!(Wire::from_args(&args, amqp, Some("http://127.0.0.1:9091"), &pw).is_ok());
        // Without a Pushgateway URL nothing of it is read.
        assert!(Wire::from_args(&args, amqp, None, &none).is_ok());
        for (a, url, env) in [
            (&args, "http://pg.example:9091", &pw),
            (&args, "https://pg.example:9091", &none),
            (&SecuritySettings::default(), "https://pg.example:9091", &pw),
        ] {
            let err = Wire::from_args(a, amqp, Some(url), env).expect_err(url);
            assert!(matches!(err, Failure::Usage(_)));
            assert!(!err.to_string().contains("SECRET"), "{err}");
        }
    }

    #[test]
    fn ca_files_are_checked_up_front() {
        let dir = tempfile::tempdir().expect("tmp");
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate").expect("write");
        let args = SecuritySettings {
            amqp_ca_file: Some(bad),
            ..Default::default()
        };
        let err =
            Wire::from_args(&args, "amqps://g:g@h/%2f", None, &env_of(&[])).expect_err("no cert");
        assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
        let args = SecuritySettings {
            amqp_ca_file: Some(dir.path().join("missing.pem")),
            ..Default::default()
        };
        let err =
            Wire::from_args(&args, "amqps://g:g@h/%2f", None, &env_of(&[])).expect_err("missing");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
