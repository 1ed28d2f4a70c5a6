//! The variables acaso-mail reads, as the code reads them, against the configuration
//! table (docs/configuration.md) and `--help`: a variable added to one and not the others fails.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;

use crate::config::{Config, Settings};

/// Every variable the code reads: those clap reads for a flag, those `Config`, the
/// secrets and the hourly limit ask for (recorded by asking), and any read with
/// `std::env::var("NAME")` anywhere in `src/`.
fn variables_in_code() -> BTreeSet<String> {
    let mut vars: BTreeSet<String> = super::all_args(&super::command())
        .iter()
        .filter_map(|a| a.get_env()?.to_str().map(str::to_string))
        .collect();
    let asked = RefCell::new(BTreeSet::new());
    let env = |k: &str| {
        asked.borrow_mut().insert(k.to_string());
        (k == "HOME").then(|| "/home/op".to_string())
    };
    let plain = Settings {
        timeout: 10,
        ..Settings::default()
    };
    // With a Pushgateway and a user, the password is looked for too (and missing).
    let mut pushing = plain.clone();
    pushing.pushgateway = Some("http://127.0.0.1:9091".into());
    pushing.security.pushgateway_user = Some("ops".into());
    assert!(Config::new(&plain, env).is_ok());
    assert!(Config::new(&pushing, env).is_err());
    assert!(crate::config::hourly_limit(None, env).is_ok());
    vars.extend(asked.into_inner());
    let mut files = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(f) = files.pop() {
        if f.is_dir() {
            files.extend(
                std::fs::read_dir(&f)
                    .expect("src")
                    .map(|e| e.expect("entry").path()),
            );
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("source");
        for piece in text.split("env::var").skip(1) {
            let name = piece
                .trim_start_matches("_os")
                .strip_prefix("(\"")
                .and_then(|r| r.split('"').next());
            if let Some(n) = name.filter(|n| is_variable(n)) {
                vars.insert(n.to_string());
            }
        }
    }
    vars
}

fn is_variable(s: &str) -> bool {
    s.len() > 2
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The configuration table (docs/configuration.md): (names in its environment column,
/// names anywhere in it).
fn readme_table() -> (BTreeSet<String>, BTreeSet<String>) {
    let doc = include_str!("../../docs/configuration.md");
    let section = doc
        .split("\n## Configuration\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/configuration.md has a Configuration section");
    let names = |text: &str| -> Vec<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| is_variable(w))
            .map(str::to_string)
            .collect()
    };
    let (mut column, mut anywhere) = (BTreeSet::new(), BTreeSet::new());
    for row in section.lines().filter(|l| l.starts_with('|')) {
        if let Some(env) = row.split('|').nth(2) {
            column.extend(names(env));
        }
        anywhere.extend(names(row));
    }
    (column, anywhere)
}

#[test]
fn the_readme_table_lists_every_variable_the_code_reads_and_no_other() {
    let code = variables_in_code();
    let (column, anywhere) = readme_table();
    let unlisted: Vec<&String> = code.difference(&anywhere).collect();
    assert!(
        unlisted.is_empty(),
        "read by the code, not in docs/configuration.md's table: {unlisted:?}"
    );
    let unread: Vec<&String> = column.difference(&code).collect();
    assert!(
        unread.is_empty(),
        "in docs/configuration.md's table, never read: {unread:?}"
    );
}

#[test]
fn help_lists_every_variable_the_code_reads() {
    let help = super::command().render_long_help().to_string();
    let missing: Vec<String> = variables_in_code()
        .into_iter()
        .filter(|v| !["HOME", "XDG_STATE_HOME", "HOSTNAME"].contains(&v.as_str()))
        .filter(|v| !help.contains(v.as_str()))
        .collect();
    assert!(missing.is_empty(), "not in --help: {missing:?}");
}

/// The numbers in `text` that look like HTTP statuses (401, 403, ...).
fn statuses(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|w| w.len() == 3 && w.starts_with('4'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_exit_codes_in_help_and_readme_agree() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("\n## Exit codes\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has an Exit codes section");
    let mut in_readme = Vec::new();
    for row in section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("code"))
    {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        for code in cells[1].split(", ") {
            in_readme.push((code.to_string(), statuses(cells[2])));
        }
    }
    let mut in_help = Vec::new();
    for line in crate::error::EXIT_CODES_HELP.lines().skip(1) {
        let line = line.trim_start();
        let (code, meaning) = line.split_once(' ').unwrap_or((line, ""));
        if code.parse::<u8>().is_ok() {
            in_help.push((code.to_string(), statuses(meaning)));
        }
    }
    in_readme.sort();
    in_help.sort();
    assert_eq!(in_readme, in_help, "README's exit codes, then --help's");
    // Exit 5 is what Brevo's refusals of the key give (both 401 and 403).
    assert!(in_help.contains(&("5".into(), vec!["401".into(), "403".into()])));
}

#[test]
fn the_env_file_mode_is_the_same_everywhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).expect(p);
    let mode = |text: &str, near: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(near))
            .flat_map(|l| {
                l.split(|c: char| !c.is_ascii_digit())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter(|w| w.len() == 4 && w.starts_with('0'))
            .collect()
    };
    let unit = read("deploy/systemd/acaso-mail@.service");
    let unit_comment: String = unit
        .split("\nEnvironmentFile=")
        .next()
        .map(|head| {
            head.lines()
                .rev()
                .take_while(|l| l.starts_with('#'))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let env_file = read("deploy/acaso-mail.env");
    let env_head: String = env_file.lines().take(3).collect::<Vec<_>>().join(" ");
    let places = [
        ("the unit's comment", mode(&unit_comment, "mode")),
        ("deploy/acaso-mail.env", mode(&env_head, "mode")),
        (
            "deploy/acaso-mail-run",
            mode(&read("deploy/acaso-mail-run"), "acaso-mail.env (it must be"),
        ),
        (
            "docs/scheduling.md's install line",
            mode(
                include_str!("../../docs/scheduling.md"),
                "deploy/acaso-mail.env /etc/",
            ),
        ),
    ];
    for (what, modes) in &places {
        assert_eq!(modes, &vec!["0640".to_string()], "{what}");
    }
}

#[test]
fn the_readme_never_puts_a_secret_in_dokku_config_set() {
    // The Dokku steps, and Security's Dokku paragraph.
    let docs = [
        include_str!("../../docs/dokku.md"),
        include_str!("../../docs/security.md"),
    ]
    .concat();
    // Each `config:set` command, its continuation lines joined.
    let joined = docs.replace("\\\n", " ");
    let secrets = [
        "SENDINBLUE_API_KEY=",
        "BREVO_API_KEY=",
        "PUSHGATEWAY_PASSWORD=",
    ];
    let mut seen = 0;
    for line in joined.lines().filter(|l| l.contains("config:set")) {
        seen += 1;
        for s in secrets {
            assert!(!line.contains(s), "a secret in a variable: {line}");
        }
    }
    assert!(seen >= 2, "docs/dokku.md's steps use config:set");
}
