//! Alert rules (promtool), the Prometheus config, and the docker-compose stack, tested as
//! far as a machine without a Docker engine allows: files parse, every mounted file
//! exists, services and ports agree with the configs naming them, and the dashboard asks
//! only for metrics acaso-mail exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_norway::Value;

use crate::support::{CHILD_TIMEOUT, output_within, require_tool};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn promtool(args: &[&str]) {
    require_tool("promtool", "prometheus");
    let out = output_within(
        std::process::Command::new("promtool")
            .args(args)
            .current_dir(root().join("monitoring")),
        CHILD_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_check_and_pass_their_unit_tests() {
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts.test.yml"]);
    promtool(&["check", "config", "prometheus.yml"]);
}

fn yaml(path: &Path) -> Value {
    serde_norway::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
}

/// Container ports each compose service publishes.
fn services(compose: &Value) -> Vec<(String, BTreeSet<u16>)> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(name, svc)| {
            let ports = svc["ports"]
                .as_sequence()
                .map(|ps| {
                    ps.iter()
                        .filter_map(|p| p.as_str())
                        .filter_map(|p| p.rsplit(':').next().and_then(|c| c.parse().ok()))
                        .collect()
                })
                .unwrap_or_default();
            (name.as_str().expect("name").to_string(), ports)
        })
        .collect()
}

#[test]
fn the_compose_stack_is_consistent() {
    let compose = yaml(&root().join("docker-compose.yaml"));
    let svcs = services(&compose);
    let port_of = |svc: &str, port: u16| svcs.iter().any(|(n, ps)| n == svc && ps.contains(&port));

    // Every mounted host file exists (named volumes, declared at the top, are not files).
    let named = compose["volumes"].as_mapping();
    for (name, svc) in compose["services"].as_mapping().expect("services") {
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let host = v
                .as_str()
                .expect("volume")
                .split(':')
                .next()
                .expect("host path");
            if named.is_some_and(|n| n.contains_key(host)) {
                continue;
            }
            assert!(root().join(host).exists(), "{name:?} mounts missing {host}");
        }
    }
    // acaso-mail's defaults and the demo reach the stack on these published ports.
    for (svc, port) in [
        ("rabbitmq", 5672),
        ("rabbitmq", 15672),
        ("pushgateway", 9091),
        ("grafana", 3000),
    ] {
        assert!(port_of(svc, port), "{svc} does not publish {port}");
    }
    // Prometheus scrapes and alerts to services that exist, on the ports they listen on.
    let prom = yaml(&root().join("monitoring/prometheus.yml"));
    let mut targets: Vec<String> = Vec::new();
    for job in prom["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
    {
        for sc in job["static_configs"].as_sequence().expect("static_configs") {
            targets.extend(
                sc["targets"]
                    .as_sequence()
                    .expect("targets")
                    .iter()
                    .filter_map(|t| t.as_str().map(String::from)),
            );
        }
        if job["job_name"] == "pushgateway" {
            assert_eq!(
                job["honor_labels"],
                Value::Bool(true),
                "pushed labels would be overwritten"
            );
        }
    }
    for am in prom["alerting"]["alertmanagers"]
        .as_sequence()
        .expect("alertmanagers")
    {
        for sc in am["static_configs"].as_sequence().expect("static_configs") {
            targets.extend(
                sc["targets"]
                    .as_sequence()
                    .expect("targets")
                    .iter()
                    .filter_map(|t| t.as_str().map(String::from)),
            );
        }
    }
    assert!(targets.len() >= 3);
    for t in &targets {
        let (svc, port) = t.split_once(':').expect("host:port");
        assert!(
            port_of(svc, port.parse().expect("port")),
            "prometheus.yml names {t}, which the compose file does not serve"
        );
    }
    // The rule file Prometheus loads is mounted beside its config.
    let mounts = compose["services"]["prometheus"]["volumes"]
        .as_sequence()
        .expect("volumes");
    for rule in prom["rule_files"].as_sequence().expect("rule_files") {
        let rule = rule.as_str().expect("rule file");
        assert!(
            mounts.iter().any(|m| m
                .as_str()
                .is_some_and(|m| m.ends_with(&format!("/etc/prometheus/{rule}:ro")))),
            "{rule} not mounted"
        );
    }
    // Grafana's datasource points at the prometheus service.
    let ds = yaml(&root().join("monitoring/grafana/provisioning/datasources/prometheus.yml"));
    let url = ds["datasources"][0]["url"].as_str().expect("url");
    let hostport = url.trim_start_matches("http://");
    let (svc, port) = hostport.split_once(':').expect("host:port");
    assert!(
        port_of(svc, port.parse().expect("port")),
        "datasource {url}"
    );
    // The provisioned dashboard folder is the one mounted.
    let prov = yaml(&root().join("monitoring/grafana/provisioning/dashboards/acaso-mail.yml"));
    let path = prov["providers"][0]["options"]["path"]
        .as_str()
        .expect("path");
    let gmounts = compose["services"]["grafana"]["volumes"]
        .as_sequence()
        .expect("volumes");
    assert!(
        gmounts
            .iter()
            .any(|m| m.as_str().is_some_and(|m| m.contains(&format!(":{path}"))))
    );
}

/// Metric names in a PromQL expression (identifiers followed by `{`, `[` or the end,
/// that are not functions or keywords).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            i += 1;
            continue;
        }
        if chars[i].is_ascii_alphabetic() || chars[i] == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
            let keyword = [
                "by",
                "on",
                "and",
                "or",
                "unless",
                "without",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&word.as_str());
            if next != Some('(') && !keyword && word.contains('_') {
                names.push(word);
            }
            continue;
        }
        if chars[i] == '{' {
            // Skip label matchers.
            while i < chars.len() && chars[i] != '}' {
                i += 1;
            }
        }
        i += 1;
    }
    names
}

#[test]
fn dashboard_and_alerts_use_only_exported_metrics() {
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("monitoring/grafana/dashboards/acaso-mail.json"))
            .expect("dashboard"),
    )
    .expect("dashboard JSON");
    let mut exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(String::from))
        .collect();
    assert!(exprs.len() >= 5);
    let rules = yaml(&root().join("monitoring/alerts.yml"));
    for r in rules["groups"][0]["rules"].as_sequence().expect("rules") {
        exprs.push(r["expr"].as_str().expect("expr").to_string());
    }
    for e in &exprs {
        for name in metric_names(e) {
            let ok = acaso_mail::metrics::EXPORTED.contains(&name.as_str())
                || name.starts_with("rabbitmq_");
            assert!(ok, "{name} (in {e}) is not a metric acaso-mail exports");
        }
    }
    // The panels the issue asks for.
    let all = exprs.join("\n");
    for m in [
        "mails_sent_total",
        "mails_fails_total",
        "acaso_mail_queue_ready_by_urgency",
        "acaso_mail_brevo_credits",
        "acaso_mail_last_success_timestamp_seconds",
    ] {
        assert!(all.contains(m), "no panel or rule uses {m}");
    }
    assert_eq!(
        metric_names(r#"sum by (band) (increase(mails_sent_total{job="a_b"}[1d])) > time()"#),
        ["mails_sent_total"]
    );
}
