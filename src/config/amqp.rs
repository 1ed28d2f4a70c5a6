//! `--amqp-url` checked before any I/O, read the way lapin (amq-protocol-uri) reads it.

use crate::error::Failure;

use super::DEFAULT_AMQP_URL;

/// Checks an AMQP URL and returns it with the password masked. The error never
/// echoes the URL, which may carry a password.
pub(super) fn validate_amqp_url(url: &str) -> Result<String, Failure> {
    let bad = |why: &str| {
        Failure::Usage(format!(
            "invalid --amqp-url / QUEUE_SERVICE_URL / RABBITMQ_URL ({why}): expected amqp://USER:PASSWORD@HOST:PORT/VHOST, e.g. {DEFAULT_AMQP_URL}"
        ))
    };
    if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
        return Err(bad("scheme must be amqp or amqps"));
    }
    // Read as lapin reads it (amq-protocol-uri): a missing user is guest, a missing port
    // the scheme's, the vhost the path after its first slash ("/" when there is none).
    let uri = url::Url::parse(url).map_err(|_| bad("not a URL"))?;
    let host = uri.host_str().unwrap_or_default();
    if uri.cannot_be_a_base() || host.is_empty() {
        return Err(bad("no host"));
    }
    let (scheme, default_port) = if url.starts_with("amqps://") {
        ("amqps", 5671)
    } else {
        ("amqp", 5672)
    };
    let decoded = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| bad("not UTF-8 once decoded"))
    };
    // The query lapin reads: numbers of their size, and a SASL mechanism it knows.
    for (k, v) in uri.query_pairs() {
        let ok = match k.as_ref() {
            "frame_max" => v.parse::<u32>().is_ok(),
            "channel_max" | "heartbeat" => v.parse::<u16>().is_ok(),
            "connection_timeout" => v.parse::<u64>().is_ok(),
            "auth_mechanism" => {
                let m = v.to_lowercase();
                [
                    "amqplain",
                    "anonymous",
                    "external",
                    "plain",
                    "rabbit-cr-demo",
                ]
                .contains(&m.as_str())
            }
            _ => true,
        };
        if !ok {
            return Err(bad(&format!(
                "{k}={v} is not a value RabbitMQ's client takes"
            )));
        }
    }
    let user = match uri.username() {
        "" => "guest".to_string(),
        u => decoded(u)?,
    };
    let vhost = decoded(uri.path().get(1..).unwrap_or("/"))?;
    Ok(format!(
        "{scheme}://{user}:***@{host}:{}/{vhost}",
        uri.port().unwrap_or(default_port)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_amqp_url_is_read_as_the_client_reads_it_and_its_query_checked() {
        let ok = |u: &str| validate_amqp_url(u).expect(u);
        assert_eq!(ok("amqp://h"), "amqp://guest:***@h:5672//");
        assert_eq!(
            ok("amqps://u%40x:p@10.0.0.5/v%2Fh"),
            "amqps://u@x:***@10.0.0.5:5671/v/h"
        );
        assert_eq!(
            ok("amqp://u:p@h:5673/?heartbeat=30&auth_mechanism=PLAIN"),
            "amqp://u:***@h:5673/"
        );
        for bad in [
            "amqp://u:p@h/?heartbeat=abc",
            "amqp://u:p@h/?channel_max=70000",
            "amqp://u:p@h/?auth_mechanism=x",
            "amqp://u%FF:p@h/",
            "http://h/",
        ] {
            let e = validate_amqp_url(bad).expect_err(bad).to_string();
            assert!(e.contains("--amqp-url") && !e.contains(":p@"), "{bad}: {e}");
        }
    }
}
