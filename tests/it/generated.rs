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
    out.push((root.join("man/acaso-mail.1"), man_page(cmd.clone())));
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
        out.push((root.join(format!("man/{name}.1")), man_page(page)));
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

/// A man page: clap_mangen's sections, then ENVIRONMENT and EXIT STATUS as tagged
/// paragraphs (clap_mangen would put `--help`'s closing text in an EXTRA section, where
/// man fills its aligned columns into one paragraph).
fn man_page(cmd: clap::Command) -> Vec<u8> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut buf = Vec::new();
    man.render_title(&mut buf).expect("title");
    man.render_name_section(&mut buf).expect("name");
    man.render_synopsis_section(&mut buf).expect("synopsis");
    man.render_description_section(&mut buf)
        .expect("description");
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut buf).expect("options");
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut buf)
            .expect("subcommands");
    }
    let env = acaso_mail::cli::ENVIRONMENT_HELP;
    let (env_intro, env_rows) = env.split_once('\n').expect("a heading line");
    buf.extend(tagged_section("ENVIRONMENT", env_intro, env_rows).into_bytes());
    let codes = acaso_mail::error::EXIT_CODES_HELP;
    let (_, code_rows) = codes.split_once('\n').expect("a heading line");
    buf.extend(tagged_section("EXIT STATUS", "", code_rows).into_bytes());
    if cmd.get_version().is_some() {
        man.render_version_section(&mut buf).expect("version");
    }
    // clap_mangen breaks a line right after an empty one (a paragraph break already):
    // mandoc -T lint warns "skipping paragraph macro".
    String::from_utf8(buf)
        .expect("man page is UTF-8")
        .replace("\n\n.br\n", "\n\n")
        .replace("\n.br\n\n", "\n\n")
        .into_bytes()
}

/// A man section of tagged paragraphs from `--help`'s aligned rows: a row is two spaces,
/// the tag, two or more spaces, the text; a deeper-indented line continues the text.
fn tagged_section(title: &str, intro: &str, rows: &str) -> String {
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in rows.lines() {
        let body = line.strip_prefix("  ").unwrap_or(line);
        if body.starts_with(' ') {
            if let Some(last) = entries.last_mut() {
                last.1.push(' ');
                last.1.push_str(body.trim());
            }
            continue;
        }
        let (tag, text) = body.split_once("  ").unwrap_or((body, ""));
        entries.push((tag.trim().to_string(), text.trim().to_string()));
    }
    let mut roff = format!(".SH \"{title}\"\n");
    if !intro.is_empty() {
        roff.push_str(&format!("{}\n", roff_text(intro.trim_end_matches(':'))));
    }
    for (tag, text) in entries {
        let tag: Vec<String> = tag
            .split(", ")
            .map(|t| format!("\\fB{}\\fR", roff_text(t)))
            .collect();
        roff.push_str(&format!(".TP\n{}\n{}\n", tag.join(", "), roff_text(&text)));
    }
    roff
}

/// Text as roff reads it literally: backslashes and hyphens escaped, no control
/// character at the start of a line.
fn roff_text(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
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
        ".SH \"EXIT STATUS\"",
        "130",
        "another acaso\\-mail run holds the lock",
    ] {
        assert!(page.contains(needle), "man page lacks {needle:?}");
    }
}

fn man_pages() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("man/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "1"))
        .collect();
    pages.sort();
    pages
}

#[test]
fn every_man_page_names_its_options_variables_and_has_environment_and_exit_status() {
    let cmd = acaso_mail::cli::command();
    for page in man_pages() {
        let text = std::fs::read_to_string(&page).expect("page");
        for section in [".SH \"ENVIRONMENT\"", ".SH \"EXIT STATUS\"", ".SH OPTIONS"] {
            assert!(text.contains(section), "{}: no {section}", page.display());
        }
        // The command the page is about: acaso-mail-dead-letters-replay.1 is
        // `dead-letters replay`.
        let name = page.file_stem().and_then(|n| n.to_str()).expect("name");
        let mut sub = &cmd;
        let mut rest = name.strip_prefix("acaso-mail").unwrap_or(name);
        while let Some(r) = rest.strip_prefix('-') {
            let next = sub
                .get_subcommands()
                .filter(|s| r.starts_with(s.get_name()))
                .max_by_key(|s| s.get_name().len())
                .unwrap_or_else(|| panic!("{name}: no such command"));
            rest = &r[next.get_name().len()..];
            sub = next;
        }
        let mut built = cmd.clone();
        built.build();
        let args: Vec<String> = acaso_mail::cli::all_args(&built)
            .iter()
            .filter(|a| sub.get_arguments().any(|b| b.get_id() == a.get_id()) || a.is_global_set())
            .filter_map(|a| a.get_env().and_then(|v| v.to_str()).map(str::to_string))
            .collect();
        assert!(!args.is_empty());
        for var in args {
            let said = format!("May also be specified with the \\fB{var}\\fR environment variable");
            assert!(
                text.contains(&said),
                "{}: {var} not named with its option",
                page.display()
            );
        }
    }
}

#[test]
fn the_man_pages_pass_mandoc_lint() {
    crate::support::require_tool("mandoc", "mandoc");
    let out = std::process::Command::new("mandoc")
        .args(["-T", "lint", "-W", "warning"])
        .args(man_pages())
        .output()
        .expect("mandoc");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // The pages carry no date, so that regenerating them never depends on the day.
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("cannot parse date"))
        .collect();
    assert!(
        problems.is_empty(),
        "mandoc -T lint:\n{}",
        problems.join("\n")
    );
}

#[test]
fn man_shows_one_variable_entry_per_row_of_the_help() {
    crate::support::require_tool("man", "man-db");
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/acaso-mail.1");
    let out = std::process::Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "")
        .env("PAGER", "cat")
        .output()
        .expect("man");
    // Plain text: no bold by overstrike.
    let text: String = String::from_utf8_lossy(&out.stdout)
        .split('\u{8}')
        .enumerate()
        .map(|(i, s)| if i == 0 { s } else { s.get(1..).unwrap_or("") })
        .collect();
    let env = text
        .split("\nENVIRONMENT\n")
        .nth(1)
        .and_then(|s| s.split("\nEXIT STATUS\n").next())
        .unwrap_or_else(|| panic!("no ENVIRONMENT section in:\n{text}"));
    let starts: Vec<&str> = env.lines().map(str::trim_start).collect();
    for row in acaso_mail::cli::ENVIRONMENT_HELP.lines().skip(1) {
        let Some(tag) = row.strip_prefix("  ").filter(|r| !r.starts_with(' ')) else {
            continue;
        };
        let tag = tag.split("  ").next().unwrap_or(tag).trim();
        assert!(
            starts.contains(&tag),
            "{tag:?} is not an entry of its own in man's ENVIRONMENT:\n{env}"
        );
    }
}
