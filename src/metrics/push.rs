//! Pushing a run's metrics to the Pushgateway (with its TLS roots and basic auth), as
//! the group job / instance (host) / subcommand, replacing that group's last push.

use anyhow::Result;

use super::{JOB, RunGauges, record_success, render};
use crate::config::Config;
use crate::state::Store;

/// This host's name, for the `instance` grouping label.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Pushes everything `subcommand` reports after a run: its stored totals, its last
/// success time (when this run succeeded), and this run's gauges.
pub fn push_run(cfg: &Config, base: &str, subcommand: &str, gauges: &RunGauges) -> Result<()> {
    let now = chrono::Utc::now().timestamp() as f64;
    let store = Store::open(cfg.state()).ok();
    if let (Some(store), true) = (&store, gauges.success) {
        record_success(store, subcommand, now)?;
    }
    let body = render(store.as_ref(), subcommand, gauges, now)?;
    push(cfg, base, subcommand, body)
}

/// An agent with the configured TLS roots of the Pushgateway and `--timeout`.
fn agent(cfg: &Config) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(cfg.timeout));
    if let Some(ca) = &cfg.wire.pushgateway_ca {
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(ca.pem.as_bytes())
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build(),
        );
    }
    ureq::Agent::new_with_config(config.build())
}

/// What went wrong with a request to the Pushgateway, said with the fix for an
/// untrusted certificate.
fn unreachable(url: &str, e: &ureq::Error, timeout: std::time::Duration) -> anyhow::Error {
    let mut msg = format!("pushing metrics to {url}: {e}");
    if let Some(why) = not_a_pushgateway(url, e, timeout) {
        msg.push_str(&format!(": {why}"));
    }
    if msg.to_ascii_lowercase().contains("certificate") {
        msg.push_str(
            ": the Pushgateway's TLS certificate was not trusted; if a private CA signed it, give that CA's PEM file with --pushgateway-ca-file / PUSHGATEWAY_CA_FILE",
        );
    }
    anyhow::anyhow!(msg)
}

/// PUTs a metrics body to the Pushgateway, with the configured TLS roots and basic auth.
fn put_metrics(cfg: &Config, url: &str, body: &str) -> Result<ureq::http::Response<ureq::Body>> {
    let mut req = agent(cfg)
        .put(url)
        .header("content-type", "text/plain; version=0.0.4");
    if let Some(auth) = &cfg.wire.pushgateway_auth {
        req = req.header("authorization", auth.header());
    }
    req.send(body.as_bytes())
        .map_err(|e| unreachable(url, &e, cfg.timeout))
}

/// What `doctor` found at the Pushgateway.
#[derive(Debug)]
pub enum GatewayCheck {
    /// A test group was pushed and deleted.
    Ok,
    /// Nothing answered, or not over TLS as configured.
    Unreachable(String),
    /// It refused the credentials (401, 403).
    Refused(String),
    /// It answered something else.
    Failed(String),
}

/// Pushes a test group (job acaso-mail, this host, subcommand doctor) and deletes it:
/// proves the Pushgateway is reachable and takes the configured auth.
pub fn check(cfg: &Config, base: &str) -> GatewayCheck {
    let url = format!(
        "{base}/metrics/job/{JOB}/instance/{}/subcommand/doctor",
        hostname()
    );
    let body = "# TYPE acaso_mail_doctor_check gauge\nacaso_mail_doctor_check 1\n";
    let status = |resp: Result<ureq::http::Response<ureq::Body>>| match resp {
        Err(e) => Err(GatewayCheck::Unreachable(format!("{e:#}"))),
        Ok(r) => Ok(r.status().as_u16()),
    };
    let put = status(put_metrics(cfg, &url, body));
    let put = match put {
        Err(e) => return e,
        Ok(s) => s,
    };
    let judge = |verb: &str, s: u16| match s {
        200..=299 => None,
        401 | 403 => Some(GatewayCheck::Refused(format!("{verb} {url} answered {s}"))),
        _ => Some(GatewayCheck::Failed(format!("{verb} {url} answered {s}"))),
    };
    if let Some(bad) = judge("PUT", put) {
        return bad;
    }
    let mut req = agent(cfg).delete(&url);
    if let Some(auth) = &cfg.wire.pushgateway_auth {
        req = req.header("authorization", auth.header());
    }
    match status(req.call().map_err(|e| unreachable(&url, &e, cfg.timeout))) {
        Err(e) => e,
        Ok(s) => judge("DELETE", s).unwrap_or(GatewayCheck::Ok),
    }
}

/// What a push error says about the peer, when it says the peer is not (or not
/// acting as) a Pushgateway: silent, not speaking HTTP, or hanging up.
fn not_a_pushgateway(url: &str, err: &ureq::Error, timeout: std::time::Duration) -> Option<String> {
    let at = url
        .split_once("://")
        .and_then(|(_, r)| r.split('/').next())
        .unwrap_or(url);
    let check = "check that --pushgateway / PUSHGATEWAY_URL names a Pushgateway (http://HOST:9091 by default)";
    match err {
        ureq::Error::Timeout(_) => Some(format!(
            "no HTTP answer from {at} within {}s (nothing reachable there, or something that does not speak HTTP); {check}",
            timeout.as_secs()
        )),
        ureq::Error::Protocol(_) => Some(format!(
            "something answered at {at} but not in HTTP; {check}"
        )),
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            Some(format!(
                "something at {at} hung up without an HTTP answer; {check}"
            ))
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => Some(format!(
            "nothing listens at {at}: is the Pushgateway running? {check}"
        )),
        _ => None,
    }
}

/// PUTs `body` as the group job/instance/subcommand (replacing the group's last push).
pub fn push(cfg: &Config, base: &str, subcommand: &str, body: String) -> Result<()> {
    let url = format!(
        "{base}/metrics/job/{JOB}/instance/{}/subcommand/{subcommand}",
        hostname()
    );
    // Security hook: TLS roots and basic auth of the Pushgateway (crate::wire).
    let mut resp = put_metrics(cfg, &url, &body)?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        anyhow::bail!(
            "the Pushgateway at {url} answered {status}: {}",
            text.trim()
        );
    }
    Ok(())
}
