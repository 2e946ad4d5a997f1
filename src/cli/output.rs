//! The command line's one way to write its results to stdout, and what a write failure means.
//!
//! Rule: **a closed stdout ends the CLI quietly.** When the reader goes away (`syncbase status
//! | true`, `syncbase scan ... | head -1`), the verb stops at its next write and the process
//! exits with status 0 and no message, as ripgrep does: the reader took what it wanted. Any
//! other write failure (a full disk behind a redirect) is an error that names stdout. No verb
//! prints with `println!` (it panics on a closed pipe); `clippy::print_stdout` is denied in
//! `cli` to keep it so, and every line goes through [`outln!`] / [`out!`].
//!
//! Callbacks the node calls (the scan and watch sinks) cannot return this error through the
//! RPC: what they raise travels to the node and comes back as a remote exception. They keep
//! the local cause in a [`LocalFailure`], and the verb reports that instead of the call's
//! outcome, so a local I/O error never reads as "remote".

use std::cell::RefCell;
use std::fmt;
use std::io::{ErrorKind, Write};
use std::rc::Rc;

use crate::rpc::client::remote_error;

/// Why a write to stdout failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader closed its end (`EPIPE`): the CLI ends quietly with status 0.
    #[error("stdout is closed")]
    Closed,
    /// Any other failure writing stdout (the cause is in the message, not also a source, so
    /// an error chain names it once).
    #[error("writing to stdout: {0}")]
    Failed(std::io::Error),
}

impl From<std::io::Error> for OutputError {
    fn from(error: std::io::Error) -> Self {
        match error.kind() {
            ErrorKind::BrokenPipe => OutputError::Closed,
            _ => OutputError::Failed(error),
        }
    }
}

/// Writes `args` to stdout and flushes, so a closed reader is noticed at this line.
pub fn write(args: fmt::Arguments<'_>) -> Result<(), OutputError> {
    write_bytes(args.to_string().as_bytes())
}

/// Writes raw bytes to stdout and flushes.
pub fn write_bytes(bytes: &[u8]) -> Result<(), OutputError> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(())
}

/// Whether `error` (anywhere in its chain) is a closed stdout, which ends the CLI quietly.
pub fn is_closed_stdout(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| matches!(cause.downcast_ref(), Some(OutputError::Closed)))
}

/// `print!` through [`write`]: evaluates to `Result<(), OutputError>`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!($($arg)*))
    };
}

/// `println!` through [`write`]: evaluates to `Result<(), OutputError>`.
macro_rules! outln {
    () => {
        $crate::cli::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};

/// The local failure of a callback the node calls, kept beside the call (see the module doc).
#[derive(Clone, Default)]
pub struct LocalFailure(Rc<Inner>);

#[derive(Default)]
struct Inner {
    error: RefCell<Option<OutputError>>,
    /// Wakes [`LocalFailure::run`]: the call may never end by itself (a live watch).
    recorded: tokio::sync::Notify,
}

impl LocalFailure {
    /// Keeps `error` and returns the exception that stops the node's stream.
    pub fn record(&self, error: OutputError) -> capnp::Error {
        let message = format!("the client stopped reading: {error}");
        *self.0.error.borrow_mut() = Some(error);
        self.0.recorded.notify_one();
        capnp::Error::failed(message)
    }

    /// Awaits `call` until it ends or a callback fails locally, whichever comes first, and
    /// returns its [`outcome`](Self::outcome). A call left behind is cancelled when dropped.
    pub async fn run<T>(
        &self,
        call: impl std::future::Future<Output = capnp::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::select! {
            result = call => self.outcome(result),
            () = self.0.recorded.notified() => {
                self.outcome(Err(capnp::Error::failed("stopped by a local failure".into())))
            }
        }
    }

    /// The call's outcome, unless a callback failed locally: then that local failure.
    pub fn outcome<T>(&self, result: capnp::Result<T>) -> anyhow::Result<T> {
        match self.0.error.borrow_mut().take() {
            Some(local) => Err(local.into()),
            None => result.map_err(remote_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_a_closed_stdout_and_other_errors_name_stdout() {
        let closed = OutputError::from(std::io::Error::from(ErrorKind::BrokenPipe));
        assert!(is_closed_stdout(
            &anyhow::Error::from(closed).context("printing rows")
        ));
        let full = OutputError::from(std::io::Error::from_raw_os_error(28));
        assert!(full.to_string().starts_with("writing to stdout: "));
        assert!(!is_closed_stdout(&full.into()));
    }

    #[test]
    fn a_local_failure_replaces_the_remote_exception_it_caused() {
        let failure = LocalFailure::default();
        let thrown = failure.record(OutputError::Closed);
        let remote = capnp::Error::failed(format!("remote exception: {}", thrown.extra));
        let error = failure.outcome::<()>(Err(remote)).unwrap_err();
        assert!(is_closed_stdout(&error));
        assert!(!error.to_string().contains("remote"), "{error}");
        let later = failure.outcome::<()>(Err(capnp::Error::failed("NoAccess: x".into())));
        assert_eq!(later.unwrap_err().to_string(), "NoAccess: x");
    }

    #[tokio::test]
    async fn a_local_failure_ends_a_call_that_would_never_end_by_itself() {
        let failure = LocalFailure::default();
        failure.record(OutputError::Closed);
        let endless = std::future::pending::<capnp::Result<()>>();
        let error = failure.run(endless).await.unwrap_err();
        assert!(is_closed_stdout(&error));
    }
}
