//! TLS to PostgreSQL: the verify-full connector (the CA file the user named, else the
//! built-in public roots), and what a refused server certificate means, in words an
//! operator can act on.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use tokio_postgres_rustls::MakeRustlsConnect;

use crate::wire::CaFile;

/// A connector that checks the server's certificate against `ca` (`None`: the built-in
/// public roots) and its name against the URL's host.
pub fn connector(ca: Option<&CaFile>) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(ca) => {
            for item in ureq::tls::parse_pem(ca.pem.as_bytes()).flatten() {
                if let ureq::tls::PemItem::Certificate(c) = item {
                    roots
                        .add(c.der().to_vec().into())
                        .map_err(|e| format!("{}: {e}", ca.path.display()))?;
                }
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(tls))
}

/// A refused server certificate in words an operator can act on, when `e` is one.
/// `ca` is the CA file the user named and the option that named it (`None`: the built-in
/// public roots).
pub fn certificate_hint(e: &(dyn Error + 'static), ca: Option<(&Path, &str)>) -> Option<String> {
    use rustls::CertificateError as C;
    let cert = rustls_error(e).and_then(|r| match r {
        rustls::Error::InvalidCertificate(c) => Some(c),
        _ => None,
    })?;
    let (trusted, option) = match ca {
        Some((path, option)) => (format!("the CA in {}", path.display()), option),
        None => (
            "a public CA (neither --state-ca-file nor sslrootcert= is set)".to_string(),
            "--state-ca-file (or sslrootcert= in the URL)",
        ),
    };
    Some(match cert {
        C::UnknownIssuer | C::BadSignature | C::UnknownRevocationStatus => format!(
            "the server's certificate is not signed by {trusted}: set {option} to the CA that signed it"
        ),
        C::Expired | C::ExpiredContext { .. } => {
            "the server's certificate has expired: renew it (or check this host's clock)".into()
        }
        C::NotValidYet | C::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet: check this host's clock".into()
        }
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "the server's certificate does not name the host in the URL: use a name it holds (hostaddr= sets the address without DNS)".into()
        }
        _ => return None,
    })
}

/// The TLS error inside a connection error: `tokio-postgres` keeps the connector's
/// `io::Error` as its source, and that wraps the one from rustls.
fn rustls_error<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        next = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError as C;
    use rustls::pki_types::UnixTime;
    use std::time::Duration;

    /// A refusal as the connector reports it: rustls's error inside an `io::Error`.
    fn refused(c: C) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(c),
        )
    }

    #[test]
    fn each_refusal_gets_words_that_say_what_to_change_and_others_get_none() {
        let at = |s| UnixTime::since_unix_epoch(Duration::from_secs(s));
        let ca = Some((Path::new("/etc/acaso/db-ca.pem"), "--state-ca-file"));
        let cases = [
            (
                C::ExpiredContext {
                    time: at(2_000_000_000),
                    not_after: at(1_900_000_000),
                },
                "has expired: renew it",
            ),
            (
                C::NotValidYetContext {
                    time: at(1_900_000_000),
                    not_before: at(2_000_000_000),
                },
                "is not valid yet: check this host's clock",
            ),
            (
                C::UnknownIssuer,
                "not signed by the CA in /etc/acaso/db-ca.pem: set --state-ca-file to the CA",
            ),
            (C::NotValidForName, "does not name the host in the URL"),
        ];
        for (c, words) in cases {
            let what = format!("{c:?}");
            let hint = certificate_hint(&refused(c), ca).unwrap_or_default();
            assert!(hint.contains(words), "{what}: {hint}");
        }
        // Not a certificate refusal, or not one with advice: the raw error stands alone.
        assert_eq!(certificate_hint(&refused(C::Revoked), ca), None);
        let other = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(certificate_hint(&other, ca), None);
    }
}
