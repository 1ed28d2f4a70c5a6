//! The shape of `-h`, `--help` and the usage lines, applied to the derived command:
//! `-h` lists a command's own options (the global ones are behind `acaso-mail --help`),
//! `--help` everything; no usage line shows an option a variable set as if required.

use clap::{Command, ValueHint};

/// The line `-h` ends with, in place of the global options.
pub const GLOBAL_OPTIONS_LINE: &str =
    "Global options (--queue, --amqp-url, --json, -q, ...): acaso-mail --help";

/// The derived command as `main` parses it (see [`super::command`]).
pub fn shape(cmd: Command) -> Command {
    let cmd = cmd.mut_args(|a| {
        if a.is_global_set() {
            a.hide_short_help(true)
        } else {
            a
        }
    });
    let cmd = tune(cmd);
    fixed_usages(cmd)
}

/// Every command at any depth: values hidden, value hints, and `-h`'s last line.
fn tune(c: Command) -> Command {
    let c = c
        .mut_args(|a| {
            // A value that is not a path: no shell may offer file names for it.
            let free = a.get_action().takes_values()
                && a.get_value_hint() == ValueHint::Unknown
                && a.get_possible_values().is_empty();
            let a = a.hide_env_values(true);
            if free {
                a.value_hint(ValueHint::Other)
            } else {
                a
            }
        })
        .after_help(GLOBAL_OPTIONS_LINE);
    let c = if c.get_after_long_help().is_none() {
        c.after_long_help(super::after_help())
    } else {
        c
    };
    each_subcommand(c, tune)
}

/// clap's usage line in an error lists the options present, and an option a variable
/// sets is present: `acaso-mail dead-letters replay --queue <NAME> --state-dir <DIR>
/// <--all|...>`, as if they were required. Each command's usage is fixed to the one
/// clap builds with nothing set.
fn fixed_usages(cmd: Command) -> Command {
    let mut built = cmd.clone();
    built.build();
    apply_usages(cmd, &built)
}

fn apply_usages(c: Command, built: &Command) -> Command {
    let usage = built.clone().render_usage().to_string();
    let usage = usage
        .strip_prefix("Usage: ")
        .unwrap_or(&usage)
        .trim()
        .to_string();
    let c = c.override_usage(usage);
    let subs: Vec<String> = c
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    subs.iter()
        .fold(c, |c, name| match built.find_subcommand(name) {
            Some(b) => c.mut_subcommand(name, |s| apply_usages(s, b)),
            None => c,
        })
}

/// The command for `-h`: each option's one-line summary, without the variable and the
/// default `--help` shows after it (parsing is unchanged: `hide_env` only hides).
pub fn short(c: Command) -> Command {
    let c = c.mut_args(|a| {
        if a.get_action().takes_values() {
            a.hide_env(true)
                .hide_default_value(true)
                .hide_possible_values(true)
        } else {
            a
        }
    });
    each_subcommand(c, short)
}

/// `c` with `f` applied to each of its subcommands.
fn each_subcommand(c: Command, f: fn(Command) -> Command) -> Command {
    let subs: Vec<String> = c
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    subs.iter().fold(c, |c, name| c.mut_subcommand(name, f))
}
