//! What the command line refuses, said so that the user knows what to fix: the value
//! parsers say what they expect, and a value clap refuses that came from an environment
//! variable is reported as that variable's (clap would name the flag the user never
//! typed).

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// A value parser for a whole number from `lo` to `hi` whose error says what is
/// expected: `what` is the kind of number ("a number of seconds").
pub fn whole<T>(
    lo: u64,
    hi: u64,
    what: &'static str,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    move |s: &str| {
        s.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| {
                if hi >= u64::from(u32::MAX) {
                    format!("expected {what}, {lo} or more")
                } else {
                    format!("expected {what} from {lo} to {hi}")
                }
            })
    }
}

/// The message for a command line clap refused (clap's own, unless the refused value
/// came from a variable).
pub fn explain(err: &clap::Error) -> String {
    let args: Vec<OsString> = std::env::args_os().collect();
    explain_with(err, &super::command(), &args, &|k| std::env::var_os(k))
}

/// [`explain`] for a given command line and environment.
pub fn explain_with(
    err: &clap::Error,
    cmd: &clap::Command,
    args: &[OsString],
    env: &dyn Fn(&str) -> Option<OsString>,
) -> String {
    let rendered = err.render().to_string();
    if !matches!(
        err.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return rendered;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        err.get(ContextKind::InvalidArg),
        err.get(ContextKind::InvalidValue),
    ) else {
        return rendered;
    };
    let Some((var, flag)) = from_variable(cmd, arg, value, args, env) else {
        return rendered;
    };
    let why = match err.kind() {
        ErrorKind::InvalidValue => match err.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(valid)) => format!("expected one of {}", valid.join(", ")),
            _ => "not one of the values it takes".to_string(),
        },
        _ => std::error::Error::source(err)
            .map_or_else(|| "refused".to_string(), ToString::to_string),
    };
    format!(
        "error: invalid value '{value}' for {var} (from the environment): {why}\n\n\
         Fix or unset {var} ({flag} on the command line wins over it); see 'acaso-mail --help'.\n"
    )
}

/// The variable a refused value came from, and the flag it stands for: the argument
/// clap names (`--timeout <SECONDS>`) has a variable holding exactly that value, and the
/// flag is not on the command line.
fn from_variable(
    cmd: &clap::Command,
    arg: &str,
    value: &str,
    args: &[OsString],
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Option<(String, String)> {
    let found = all_args(cmd).into_iter().find(|a| {
        a.get_long().is_some_and(|l| {
            let flag = format!("--{l}");
            arg == flag
                || arg.starts_with(&format!("{flag} "))
                || arg.starts_with(&format!("{flag}="))
        })
    })?;
    let long = format!("--{}", found.get_long()?);
    let var = found.get_env()?.to_str()?.to_string();
    if env(&var).as_deref() != Some(std::ffi::OsStr::new(value)) {
        return None;
    }
    let short = found.get_short().map(|c| format!("-{c}"));
    let typed = args
        .iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .take_while(|a| *a != "--")
        .any(|a| {
            a == long
                || a.starts_with(&format!("{long}="))
                || short.as_deref().is_some_and(|s| a.starts_with(s))
        });
    (!typed).then_some((var, long))
}

/// Every argument of `cmd` and of its subcommands, at any depth.
pub fn all_args(cmd: &clap::Command) -> Vec<clap::Arg> {
    let mut out: Vec<clap::Arg> = cmd.get_arguments().cloned().collect();
    for sub in cmd.get_subcommands() {
        out.extend(all_args(sub));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's refusal of `parsed`, explained as if the command line had been `typed`
    /// with the variables `env` set (clap reads the real environment, which a test
    /// must not change: the refused value is given on the command line instead).
    fn refusal(parsed: &[&str], typed: &[&str], env: &[(&str, &str)]) -> String {
        let cmd = super::super::command();
        let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let env: Vec<(String, OsString)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let err = cmd
            .clone()
            .try_get_matches_from(argv(parsed))
            .expect_err("refused");
        explain_with(&err, &cmd, &argv(typed), &lookup)
    }

    #[test]
    fn a_value_from_a_variable_is_the_variables() {
        let env = [("ACASO_MAIL_TIMEOUT", "ten")];
        let parsed = ["acaso-mail", "--timeout", "ten", "stats"];
        let msg = refusal(&parsed, &["acaso-mail", "stats"], &env);
        assert!(
            msg.starts_with("error: invalid value 'ten' for ACASO_MAIL_TIMEOUT (from the environment): expected a number of seconds from 1 to 600"),
            "{msg}"
        );
        assert!(!msg.contains("--timeout <"), "{msg}");
        // Typed on the command line, it is the flag's, whatever the variable holds.
        let msg = refusal(&parsed, &parsed, &env);
        assert!(msg.contains("'--timeout <SECONDS>'"), "{msg}");
        assert!(
            msg.contains("expected a number of seconds from 1 to 600"),
            "{msg}"
        );
        let msg = refusal(
            &["acaso-mail", "--color", "red", "stats"],
            &["acaso-mail", "stats"],
            &[],
        );
        assert!(msg.contains("'--color <WHEN>'"), "{msg}");
    }

    #[test]
    fn whole_numbers_say_their_range() {
        let p = whole::<u16>(1, 256, "a number of sends");
        assert_eq!(p("32"), Ok(32));
        assert_eq!(p(" 7 "), Ok(7));
        for bad in ["0", "257", "-1", "x", "", "99999999999999999999999"] {
            assert_eq!(
                p(bad),
                Err("expected a number of sends from 1 to 256".into()),
                "{bad}"
            );
        }
        let p = whole::<u32>(0, u64::from(u32::MAX), "a number of credits");
        assert_eq!(
            p("4294967296"),
            Err("expected a number of credits, 0 or more".into())
        );
    }
}
