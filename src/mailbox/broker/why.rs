//! What a failed connection to RabbitMQ means, in words that say what to check.

use std::time::Duration;

use crate::config::Config;

/// A clear message for a connection refused because of RabbitMQ's certificate, if
/// that is what `err` is.
pub(super) fn explain_amqp_error(cfg: &Config, err: &lapin::Error) -> Option<String> {
    let text = error_text(err);
    if !text.to_ascii_lowercase().contains("certificate") {
        return None;
    }
    let fix = match &cfg.wire.amqp_ca {
        Some(ca) => format!(
            "it is not signed by a CA in {} (--amqp-ca-file / ACASO_MAIL_AMQP_CA_FILE), or it does not name the host of the URL",
            ca.path.display()
        ),
        None => "if a private CA signed it, give that CA's PEM file with --amqp-ca-file / ACASO_MAIL_AMQP_CA_FILE".into(),
    };
    Some(format!(
        "the TLS certificate of RabbitMQ at {} was not trusted ({text}): {fix}",
        cfg.amqp_display
    ))
}

/// An error and its sources, one line.
pub(super) fn error_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = s.source();
    }
    text
}

pub(super) const RUNNING_HINT: &str = "is it running? (rabbitmq-server -detached)";

/// What to check when something other than RabbitMQ holds the port.
pub(super) const NOT_AMQP_HINT: &str = "check the host and port of --amqp-url / QUEUE_SERVICE_URL (RabbitMQ listens on 5672 for amqp://, 5671 for amqps://; 15672 is its web UI, 9091 a Pushgateway)";

/// The URL's `host:port`, for messages (the URL was checked when the configuration was
/// built; the password is not part of it).
pub(super) fn host_port(cfg: &Config) -> String {
    use std::str::FromStr;
    lapin::uri::AMQPUri::from_str(cfg.amqp_url.expose())
        .map(|u| format!("{}:{}", u.authority.host, u.authority.port))
        .unwrap_or_else(|_| cfg.amqp_display.clone())
}

/// Whether a lapin error says the peer's bytes were not AMQP.
pub(super) fn is_not_amqp(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.contains("failed to parse") || e.contains("parsing error") || e.contains("invalid protocol")
}

/// Why a connection that timed out got no AMQP answer: whether anything accepts TCP
/// connections at the URL's address (asked once, within a second).
pub(super) fn silent_peer_message(cfg: &Config) -> String {
    use std::net::ToSocketAddrs;
    let at = host_port(cfg);
    let secs = cfg.timeout.as_secs();
    let accepted = at.to_socket_addrs().ok().is_some_and(|mut addrs| {
        addrs.any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
    });
    if accepted {
        format!(
            "something at {at} accepted the connection but sent no AMQP answer within {secs}s: it does not speak AMQP 0-9-1, or RabbitMQ is starting or overloaded; {NOT_AMQP_HINT}"
        )
    } else {
        format!(
            "RabbitMQ at {} did not answer within {secs}s; {RUNNING_HINT}, and can this host reach {at} (firewall)?",
            cfg.amqp_display
        )
    }
}

/// What to do about a refused connection, from the broker's or the system's words:
/// "is it running?" only when nothing answered.
pub(in crate::mailbox) fn connect_hint(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    if e.contains("access_refused") || e.contains("access-refused") || e.contains("auth") {
        "RabbitMQ refused the user or password in the URL: check them (rabbitmqctl authenticate_user USER PASSWORD; see docs/scheduling.md, \"RabbitMQ user\")"
    } else if e.contains("not_allowed") || e.contains("vhost") || e.contains("virtual host") {
        "the vhost in the URL does not exist or the user has no permission on it (rabbitmqctl list_vhosts; rabbitmqctl list_user_permissions USER)"
    } else if e.contains("lookup")
        || e.contains("resolve")
        || e.contains("name or service not known")
        || e.contains("nodename")
    {
        "the host name in the URL does not resolve: check it (getent hosts HOST)"
    } else {
        RUNNING_HINT
    }
}
