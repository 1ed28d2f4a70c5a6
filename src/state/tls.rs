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
pub fn certificate_hint(e: &postgres::Error, ca: Option<(&Path, &str)>) -> Option<String> {
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
fn rustls_error(e: &postgres::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn Error + 'static)> = e.source();
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
