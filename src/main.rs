//! The `syncbase` binary: parses the command line and runs it; an error (a bad argument
//! included) prints one line to stderr and exits non-zero.

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
            eprintln!("syncbase: {} (see --help)", first.join(" "));
            return ExitCode::from(2);
        }
    };
    match syncbase::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("syncbase: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
