//! The `syncbase` binary: parses the command line and runs it; an error prints one line to
//! stderr and exits non-zero.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = syncbase::cli::Cli::parse();
    match syncbase::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("syncbase: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
