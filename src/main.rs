//! The `syncbase` binary: parses the command line and runs it; an error prints one line to
//! stderr and exits non-zero, except a bad command line, which clap reports as it renders it
//! (its tips included: `-- -5` for a negative value, a similar verb for a typo; the help when
//! no verb is given), with exit status 2. A closed stdout is not an error:
//! the verb stops and the process exits 0 without a word (`syncbase::cli::output`).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match syncbase::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // A closed stderr (or stdout, for --help) leaves only the exit status.
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    match syncbase::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if syncbase::cli::output::is_closed_stdout(&error) => ExitCode::SUCCESS,
        Err(error) => {
            report(&format!("syncbase: error: {error:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Writes one line to stderr; a closed stderr leaves only the exit status (never a panic).
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
