//! The command line's one way to write its results to stdout, and what a write failure means.
//!
//! Rule: **a closed stdout ends the CLI quietly.** When the reader goes away (`syncbase status
//! | true`, `syncbase scan ... | head -1`), the verb stops at its next write and the process
//! exits with status 0 and no message, as ripgrep does: the reader took what it wanted. Any
//! other write failure (a full disk behind a redirect) is an error that names stdout. No verb
//! prints with `println!` (it panics on a closed pipe); `clippy::print_stdout` is denied in
//! `cli` to keep it so, and every line goes through [`outln!`].
//!
//! Callbacks the node calls (the scan and watch sinks) cannot return this error through the
//! RPC: what they raise travels to the node and comes back as a remote exception. They keep
//! the local cause in a [`LocalFailure`], and the verb reports that instead of the call's
//! outcome, so a local I/O error never reads as "remote".
//!
//! It also owns how things look, the same for every verb: [`shown`] (keys and values, the
//! one escaping rule), [`count`] (pluralised counts), [`Columns`] (aligned columns) and
//! [`json_line`] (`--json`: one JSON object per line) with [`bytes_field`] (a value in JSON).

use std::cell::RefCell;
use std::fmt;
use std::io::{ErrorKind, Write};
use std::rc::Rc;

use unicode_width::UnicodeWidthStr;

use crate::names::is_hidden;
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

/// `println!` through [`write`]: evaluates to `Result<(), OutputError>`.
macro_rules! outln {
    () => {
        $crate::cli::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use outln;

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

/// A key, value or name as the human output shows it (every name that may come from another
/// node prints through it). UTF-8 text prints as it is unless it has a control character, a
/// hidden one (`names::is_hidden`: a bidi override such as U+202E, a zero-width character,
/// U+2028), starts or ends with whitespace, or starts with `"`; anything else prints as a
/// double-quoted string with Rust's escapes (`\t`, `\n`, `\"`, `\\`, `\0`, `\u{1b}`,
/// `\u{202e}`) and `\xNN` for each byte that is not UTF-8. So the text `0x0001ff` and the
/// bytes 00 01 ff never look alike (`0x0001ff` and `"\0\u{1}\xff"`), and no name can pass
/// for another by reordering or hiding what follows it.
pub fn shown(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if is_plain(text) => text.to_owned(),
        _ => quoted(bytes),
    }
}

fn is_plain(text: &str) -> bool {
    !text.starts_with('"')
        && text.trim() == text
        && !text.chars().any(|c| c.is_control() || is_hidden(c))
}

fn quoted(bytes: &[u8]) -> String {
    let mut quoted = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\'' => quoted.push(c),
                c if is_hidden(c) => quoted.extend(c.escape_unicode()),
                c => quoted.extend(c.escape_debug()),
            }
        }
        for byte in chunk.invalid() {
            quoted.push_str(&format!("\\x{byte:02x}"));
        }
    }
    quoted.push('"');
    quoted
}

/// `n` and the noun in the number it takes: "1 record", "2 records", "0 records".
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Puts `bytes` in `object` as `name` (a JSON string) if it is UTF-8, else as `name_hex`
/// (lowercase hex digits): one of the two is always there.
pub fn bytes_field(
    object: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    bytes: &[u8],
) {
    match std::str::from_utf8(bytes) {
        Ok(text) => object.insert(name.to_owned(), text.into()),
        Err(_) => object.insert(format!("{name}_hex"), hex::encode(bytes).into()),
    };
}

/// Prints `value` as one line of JSON (`--json`).
pub fn json_line(value: &serde_json::Value) -> Result<(), OutputError> {
    outln!("{value}")
}

/// Rows printed as aligned columns: two spaces between columns, no whitespace at a line's end.
/// Cells are padded by display width (`unicode-width`: `日本` takes four columns), so names in
/// any script line up in a terminal.
#[derive(Default)]
pub struct Columns(Vec<Vec<String>>);

impl Columns {
    /// Adds a row (rows may have fewer cells than others).
    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.0.push(cells.into_iter().map(Into::into).collect());
    }

    /// The rows as lines, each with `indent` before it.
    pub fn lines(&self, indent: &str) -> Vec<String> {
        let mut widths: Vec<usize> = Vec::new();
        for row in &self.0 {
            for (i, cell) in row.iter().enumerate() {
                let width = cell.width();
                match widths.get_mut(i) {
                    Some(max) => *max = (*max).max(width),
                    None => widths.push(width),
                }
            }
        }
        let line = |row: &Vec<String>| {
            let mut line = indent.to_owned();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.width() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            line.trim_end().to_owned()
        };
        self.0.iter().map(line).collect()
    }

    /// Prints [`Columns::lines`].
    pub fn print(&self, indent: &str) -> Result<(), OutputError> {
        self.lines(indent)
            .iter()
            .try_for_each(|line| outln!("{line}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_looks_like_hex_and_binary_never_print_alike() {
        assert_eq!(shown(b"0x0001ff"), "0x0001ff");
        assert_eq!(shown(&[0, 1, 0xff]), r#""\0\u{1}\xff""#);
        assert_eq!(shown(b"hello world"), "hello world");
        assert_eq!(shown("caf\u{e9} it's".as_bytes()), "caf\u{e9} it's");
        assert_eq!(shown(b"a\tb"), r#""a\tb""#);
        assert_eq!(shown(br#""quoted""#), r#""\"quoted\"""#);
        assert_eq!(shown(b" padded"), r#"" padded""#);
        assert_eq!(shown(br"C:\dir"), r"C:\dir");
        assert_eq!(shown(b""), "");
    }

    #[test]
    fn hidden_characters_print_escaped_so_no_name_passes_for_another() {
        assert_eq!(shown("abc\u{202e}fed".as_bytes()), r#""abc\u{202e}fed""#);
        assert_eq!(shown("a\u{2028}b".as_bytes()), r#""a\u{2028}b""#);
        assert_eq!(
            shown("zero\u{200b}width".as_bytes()),
            r#""zero\u{200b}width""#
        );
        assert_eq!(shown("\u{200d}".as_bytes()), r#""\u{200d}""#);
        assert_eq!(shown("日本".as_bytes()), "日本");
    }

    #[test]
    fn columns_pad_by_display_width() {
        let mut columns = Columns::default();
        columns.row(["DATABASE", "TABLES"]);
        columns.row(["日本", "1"]);
        columns.row(["café", "2"]);
        assert_eq!(
            columns.lines(""),
            ["DATABASE  TABLES", "日本      1", "café      2"]
        );
    }

    #[test]
    fn counts_take_the_noun_in_their_number() {
        assert_eq!(count(1, "record", "records"), "1 record");
        assert_eq!(count(0, "record", "records"), "0 records");
        assert_eq!(count(2, "entry", "entries"), "2 entries");
    }

    #[test]
    fn columns_align_and_no_line_ends_in_whitespace() {
        let mut columns = Columns::default();
        columns.row(["NAME", "STATUS", "MEMBERS"]);
        columns.row(["long-name", "running", "1 member"]);
        columns.row(["x", "publish-pending"]);
        columns.row(["y", "running", ""]);
        assert_eq!(
            columns.lines(""),
            [
                "NAME       STATUS           MEMBERS",
                "long-name  running          1 member",
                "x          publish-pending",
                "y          running",
            ]
        );
    }

    #[test]
    fn bytes_in_json_are_a_string_or_hex() {
        let mut object = serde_json::Map::new();
        bytes_field(&mut object, "value", b"0x6869");
        bytes_field(&mut object, "key", &[0xff]);
        assert_eq!(
            serde_json::Value::Object(object).to_string(),
            r#"{"key_hex":"ff","value":"0x6869"}"#
        );
    }

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
