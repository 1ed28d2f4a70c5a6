//! Secrets (the API key, the AMQP password) reach no output, whatever fails.

use crate::support::*;

#[test]
fn secrets_never_reach_any_output() {
    let w = World::new("secrets", 300.0);
    let key = "xkeysib-SECRETKEY-4242";
    let pass = "PW-SECRET-7777";
    let runs: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["drain-eod"],
            format!("amqp://guest:{pass}@127.0.0.1:1/%2f"),
        ),
        (vec!["--json", "credits"], AMQP.to_string()),
        (vec!["--amqp-url", "http://nope", "stats"], AMQP.to_string()),
        (
            vec!["--tz", "Nowhere/Place", "credits"],
            format!("amqp://guest:{pass}@127.0.0.1:5672/%2f"),
        ),
        (
            vec!["--help"],
            format!("amqp://guest:{pass}@127.0.0.1:5672/%2f"),
        ),
        (
            vec!["drain-hourly", "--help"],
            format!("amqp://guest:{pass}@127.0.0.1:5672/%2f"),
        ),
        (
            vec!["--amqp-url", "amqp://u:PW-SECRET-7777@", "stats"],
            AMQP.to_string(),
        ),
    ];
    for (args, url) in runs {
        let out = w
            .cmd()
            .env("SENDINBLUE_API_KEY", key)
            .env("QUEUE_SERVICE_URL", &url)
            .env("RUST_BACKTRACE", "1")
            .args(&args)
            .output()
            .expect("run");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains("SECRETKEY") && !all.contains(pass),
            "{args:?} leaked: {all}"
        );
    }
}
