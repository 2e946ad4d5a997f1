//! The `syncbase` binary: parses the command line and runs it; an error (a bad argument
//! included) prints one line to stderr and exits non-zero. A closed stdout is not an error:
//! the verb stops and the process exits 0 without a word (`syncbase::cli::output`).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match syncbase::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            let rendered = error.render().to_string();
            let first: Vec<&str> = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            report(&format!("syncbase: {} (see --help)", first.join(" ")));
            return ExitCode::from(2);
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
