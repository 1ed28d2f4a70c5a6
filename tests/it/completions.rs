//! The shipped completions, tried in the real shells (bash, zsh and fish, from Debian:
//! `scripts/services --test` installs them) on a subcommand's option and on option values
//! (fixed values offered, never file names): comparing them with
//! freshly generated files (it::generated) cannot see a script that completes nothing.

use std::path::Path;
use std::process::Command;

use crate::support::output_within;

fn completions() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/completions"))
}

fn run(shell: &str, args: &[&str]) -> String {
    let out = Command::new(shell)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{shell} must be installed (scripts/services --test): {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{shell}: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn bash_completes_a_subcommands_options() {
    let script = format!(
        r#"source {dir}/acaso-mail.bash
complete_words() {{
  COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}
  COMPREPLY=()
  _acaso__mail acaso-mail "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
  printf '%s\n' "${{COMPREPLY[@]}}"
}}
echo "[hourly]"; complete_words acaso-mail drain-hourly --l
echo "[replay]"; complete_words acaso-mail dead-letters replay --r
echo "[root]"; complete_words acaso-mail drain-h
"#,
        dir = completions().display()
    );
    let out = run("bash", &["--norc", "--noprofile", "-c", &script]);
    let section = |name: &str| -> Vec<String> {
        out.split(&format!("[{name}]\n"))
            .nth(1)
            .unwrap_or("")
            .split('[')
            .next()
            .unwrap_or("")
            .lines()
            .map(str::to_string)
            .collect()
    };
    let hourly = section("hourly");
    assert!(hourly.contains(&"--limit".to_string()), "{out}");
    assert!(!hourly.contains(&"--reason".to_string()), "{out}");
    assert!(section("replay").contains(&"--reason".to_string()), "{out}");
    assert_eq!(section("root"), vec!["drain-hourly".to_string()], "{out}");
}

#[test]
fn fish_completes_a_subcommands_options() {
    let script = format!(
        "source {}/acaso-mail.fish; complete -C 'acaso-mail drain-hourly --l'",
        completions().display()
    );
    let out = run("fish", &["--no-config", "-c", &script]);
    assert!(
        out.lines().any(|l| l.split('\t').next() == Some("--limit")),
        "{out}"
    );
}

#[test]
fn zsh_completes_a_subcommands_options() {
    // A real interactive zsh on a pseudo-terminal (zpty), with compinit and the shipped
    // _acaso-mail on $fpath: type the line and a TAB, read what the line became.
    let script = format!(
        r#"zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z 'PS1="%% "; fpath=({dir} $fpath); autoload -Uz compinit; compinit -u -D; setopt nobeep'
zpty -w z 'acaso-mail drain-hourly --lim'$'\t'
sleep 2
zpty -w z $'\n'
sleep 1
out=""
while zpty -r -t z line; do out+=$line; done
print -r -- "$out"
zpty -d z
"#,
        dir = completions().display()
    );
    let out = run("zsh", &["-f", "-c", &script]);
    assert!(out.contains("drain-hourly --limit"), "{out}");
}

/// A directory holding one file, `FILEMARK`: a completion that offers file names there
/// offers it.
fn dir_with_a_file() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("FILEMARK"), "").expect("file");
    dir
}

/// The values each shell must offer after an option (none: no file names either).
const VALUES: [(&str, &[&str]); 5] = [
    ("drain-hourly --limit", &[]),
    ("--timeout", &[]),
    (
        "dead-letters replay --reason",
        &["expired", "uncertain_send"],
    ),
    ("stats --color", &["auto", "always", "never"]),
    ("--color", &["auto", "always", "never"]),
];

fn check_values(shell: &str, line: &str, offered: &[String], expected: &[&str]) {
    assert!(
        !offered.iter().any(|o| o.contains("FILEMARK")),
        "{shell} offers file names after `{line}`: {offered:?}"
    );
    for e in expected {
        assert!(
            offered.iter().any(|o| o == e),
            "{shell} does not offer {e} after `{line}`: {offered:?}"
        );
    }
}

#[test]
fn bash_offers_values_not_file_names_for_fixed_values() {
    let dir = dir_with_a_file();
    let mut script = format!(
        r#"source {}/acaso-mail.bash
complete_words() {{
  COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}
  COMPREPLY=()
  _acaso__mail acaso-mail "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}" 2>/dev/null
  printf '%s\n' "${{COMPREPLY[@]}}"
}}
"#,
        completions().display()
    );
    for (i, (line, _)) in VALUES.iter().enumerate() {
        script.push_str(&format!(
            "echo '[{i}]'; complete_words acaso-mail {line} ''\n"
        ));
    }
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &script])
        .current_dir(dir.path())
        .output()
        .expect("bash must be installed (scripts/services --test)");
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    for (i, (line, expected)) in VALUES.iter().enumerate() {
        let offered: Vec<String> = out
            .split(&format!("[{i}]\n"))
            .nth(1)
            .and_then(|s| s.split("\n[").next())
            .unwrap_or("")
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        check_values("bash", line, &offered, expected);
    }
}

#[test]
fn fish_offers_values_not_file_names_for_fixed_values() {
    let dir = dir_with_a_file();
    for (line, expected) in VALUES {
        let script = format!(
            "source {}/acaso-mail.fish; complete -C 'acaso-mail {line} '",
            completions().display()
        );
        let out = Command::new("fish")
            .args(["--no-config", "-c", &script])
            .current_dir(dir.path())
            .output()
            .expect("fish must be installed (scripts/services --test)");
        let offered: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split('\t').next())
            .map(str::to_string)
            .collect();
        check_values("fish", line, &offered, expected);
    }
}

#[test]
fn zsh_offers_values_not_file_names_for_fixed_values() {
    // Each line typed with a TAB, then ^X, bound to a widget that prints the line as
    // completed (zle handles keys in order) and clears it: reading up to that print
    // reads the result, with no waiting on a clock.
    let dir = dir_with_a_file();
    let cases = [
        ("drain-hourly --limit ", "acaso-mail drain-hourly --limit "),
        ("--timeout ", "acaso-mail --timeout "),
        (
            "dead-letters replay --reason uncer",
            "acaso-mail dead-letters replay --reason uncertain_send ",
        ),
        ("stats --color alw", "acaso-mail stats --color always "),
        ("--color nev", "acaso-mail --color never "),
    ];
    let mut script = format!(
        r#"zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z 'PS1="%% "; fpath=({} $fpath); autoload -Uz compinit; compinit -u -D; setopt nobeep; cd {}'
zpty -w z 'dump() {{ zle -I; print -r -- "LI""NE<$BUFFER>"; BUFFER= }}; zle -N dump; bindkey "^X" dump'
"#,
        completions().display(),
        dir.path().display()
    );
    for (typed, _) in &cases {
        script.push_str(&format!(
            "zpty -w -n z 'acaso-mail {typed}'$'\\t\\x18'\nzpty -r z out '*LINE<*>*'\nprint -r -- \"$out\"\n"
        ));
    }
    script.push_str("zpty -d z\n");
    let out = output_within(
        Command::new("zsh").args(["-f", "-c", &script]),
        crate::support::CHILD_TIMEOUT,
    );
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = out
        .split("LINE<")
        .skip(1)
        .filter_map(|s| s.split('>').next())
        .collect();
    let expected: Vec<&str> = cases.iter().map(|c| c.1).collect();
    assert_eq!(
        lines, expected,
        "zsh's completed lines (FILEMARK: file names offered)"
    );
}
