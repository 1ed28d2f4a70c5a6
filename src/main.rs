//! The `acaso-mail` binary: parse, run, map the outcome to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match acaso_mail::cli::parse() {
        Ok(cli) => cli,
        // --help and --version print on stdout and exit 0, as clap does.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            acaso_mail::warn::usage_error(&acaso_mail::cli::explain(&e));
            return ExitCode::from(acaso_mail::error::EXIT_USAGE);
        }
    };
    match acaso_mail::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) if acaso_mail::output::is_stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            acaso_mail::warn::error(&e);
            ExitCode::from(acaso_mail::error::exit_code_of(&e))
        }
    }
}
