//! Completions and man pages (from the clap definitions) and the `--json` schemas (from
//! the output types) are generated and checked in; this test regenerates them and fails
//! when the checked-in copies are stale.

use std::path::{Path, PathBuf};

use clap_complete::Shell;

const REFRESH: &str = "UPDATE_GENERATED=1 cargo test --test main generated";

fn expected() -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = acaso_mail::cli::command();
    cmd.build();
    let mut out = Vec::new();
    for (shell, file) in [
        (Shell::Bash, "acaso-mail.bash"),
        (Shell::Zsh, "_acaso-mail"),
        (Shell::Fish, "acaso-mail.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "acaso-mail", &mut buf);
        if shell == Shell::Bash {
            buf = fix_bash(buf);
        }
        if shell == Shell::Fish {
            buf = fix_fish(buf);
        }
        out.push((root.join("completions").join(file), buf));
    }
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .expect("man page");
    out.push((root.join("man/acaso-mail.1"), buf));
    // A page per subcommand, and per subcommand of those (dead-letters list, replay,
    // purge), since each page names its subcommands' pages.
    let mut pages: Vec<(Vec<String>, clap::Command)> = cmd
        .get_subcommands()
        .map(|s| (vec![s.get_name().to_string()], s.clone()))
        .collect();
    while let Some((path, sub)) = pages.pop() {
        for inner in sub.get_subcommands() {
            let mut p = path.clone();
            p.push(inner.get_name().to_string());
            pages.push((p, inner.clone()));
        }
        let name = format!("acaso-mail-{}", path.join("-"));
        let page = sub
            .name(name.clone())
            .bin_name(format!("acaso-mail {}", path.join(" ")));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut buf)
            .expect("man page");
        out.push((root.join(format!("man/{name}.1")), buf));
    }
    for (name, schema) in acaso_mail::cmd::json_schemas() {
        let mut text = serde_json::to_string_pretty(&schema).expect("schema JSON");
        text.push('\n');
        out.push((
            root.join(format!("schemas/{name}.schema.json")),
            text.into_bytes(),
        ));
    }
    out
}

/// clap_complete's bash script, for a binary name with a hyphen, dispatches to
/// `acaso__mail__subcmd__X` but labels the cases `acaso__subcmd__mail__subcmd__X`, so
/// nothing after the subcommand completes (clap-rs/clap#6421): the labels are renamed
/// to what the dispatch builds.
fn fix_bash(script: Vec<u8>) -> Vec<u8> {
    String::from_utf8(script)
        .expect("bash completion is UTF-8")
        .replace("acaso__subcmd__mail", "acaso__mail")
        .into_bytes()
}

/// clap_complete's fish script decides whether a subcommand was typed by parsing the
/// words so far with `argparse`, which fails when the last word is a global option still
/// waiting for its value (`acaso-mail --color `): no completion applies and fish offers
/// file names. The words are parsed again without that last one.
fn fix_fish(script: Vec<u8>) -> Vec<u8> {
    let parse = "    argparse -s (__fish_acaso_mail_global_optspecs) -- $cmd 2>/dev/null\n";
    let text = String::from_utf8(script).expect("fish completion is UTF-8");
    assert!(
        text.contains(parse),
        "clap_complete's fish script changed: review fix_fish"
    );
    text.replacen(
        parse,
        &format!(
            "{parse}    # The last word may be an option waiting for its value: parse without it.\n    or argparse -s (__fish_acaso_mail_global_optspecs) -- $cmd[1..-2] 2>/dev/null\n"
        ),
        1,
    )
    .into_bytes()
}

#[test]
fn schemas_keep_the_contract_constraints() {
    // Generated, but still holding what the contract promises scripts.
    let schema = |name: &str| -> serde_json::Value {
        let (_, s) = acaso_mail::cmd::json_schemas()
            .into_iter()
            .find(|(n, _)| *n == name)
            .expect("schema");
        s.to_value()
    };
    let plan = schema("drain-dry-run").to_string();
    assert!(plan.contains("already sent"), "{plan}");
    let drain = schema("drain");
    for field in ["budget", "sent", "failed", "expired", "remaining"] {
        assert!(
            drain["required"]
                .as_array()
                .is_some_and(|r| r.iter().any(|f| f == field)),
            "drain schema must require {field}: {drain}"
        );
    }
}

#[test]
fn completions_man_pages_and_schemas_are_up_to_date() {
    let update = std::env::var_os("UPDATE_GENERATED").is_some();
    let mut stale = Vec::new();
    for (path, content) in expected() {
        let current = std::fs::read(&path).ok();
        if current.as_deref() != Some(content.as_slice()) {
            if update {
                std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                std::fs::write(&path, &content).expect("write");
            } else {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated files {stale:?}; refresh them with: {REFRESH}"
    );
}

#[test]
fn the_man_page_documents_the_exit_codes() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/acaso-mail.1"))
        .expect("man page");
    for needle in [
        "Exit status",
        "130",
        "another acaso\\-mail run holds the lock",
    ] {
        assert!(page.contains(needle), "man page lacks {needle:?}");
    }
}
