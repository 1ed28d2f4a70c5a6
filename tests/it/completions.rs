//! The shipped completions, tried in the real shells (bash, zsh and fish, from Debian:
//! `scripts/services --test` installs them) on a subcommand's option: comparing them with
//! freshly generated files (it::generated) cannot see a script that completes nothing.

use std::path::Path;
use std::process::Command;

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
