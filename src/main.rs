//! The `acaso-mail` binary: parse, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = acaso_mail::cli::Cli::parse();
    match acaso_mail::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) if acaso_mail::output::is_stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            acaso_mail::output::stderr::error(&e);
            ExitCode::from(acaso_mail::error::exit_code_of(&e))
        }
    }
}
