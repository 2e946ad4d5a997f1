//! Logs a failure that repeats (every commit failing on a full disk) once, then again only
//! with a count at 2, 4, 8, ... repeats, and once more when the operation succeeds again, so a
//! failing loop cannot flood the log and no failure goes unlogged.
//!
//! A small local helper; the shared log-once helper of issue 10 (item 5) may replace it.

use std::sync::{Mutex, PoisonError};

/// The repeat state of one kind of failure (`what`: "storage commit").
pub struct RepeatLog {
    what: &'static str,
    last: Mutex<Option<Repeat>>,
}

struct Repeat {
    message: String,
    count: u64,
}

/// What [`RepeatLog::failed`] logged.
#[derive(Debug, PartialEq, Eq)]
pub enum Logged {
    /// A failure new here (or different from the last one).
    First,
    /// The same failure again, this many times in a row.
    Repeated(u64),
    /// Nothing: a repeat between two powers of two.
    Nothing,
}

impl RepeatLog {
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            last: Mutex::new(None),
        }
    }

    /// Records a failure with `message`, logging it as [`Logged`] says.
    pub fn failed(&self, message: &str) -> Logged {
        let what = self.what;
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(repeat) = last.as_mut().filter(|repeat| repeat.message == message) {
            repeat.count += 1;
            if !repeat.count.is_power_of_two() {
                return Logged::Nothing;
            }
            tracing::warn!(count = repeat.count, "{what} failed again: {message}");
            return Logged::Repeated(repeat.count);
        }
        if let Some(previous) = last.take() {
            summarise(what, &previous);
        }
        tracing::warn!("{what} failed: {message}");
        *last = Some(Repeat {
            message: message.to_owned(),
            count: 1,
        });
        Logged::First
    }

    /// Records a success: a failure streak ends, with its total count logged.
    pub fn succeeded(&self) {
        let previous = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(previous) = previous {
            summarise(self.what, &previous);
            tracing::info!("{} succeeds again", self.what);
        }
    }
}

fn summarise(what: &str, repeat: &Repeat) {
    if repeat.count > 1 {
        tracing::warn!(
            count = repeat.count,
            "{what} failed {} times in a row: {}",
            repeat.count,
            repeat.message
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_failure_is_logged_once_then_with_counts_at_powers_of_two() {
        let log = RepeatLog::new("storage commit");
        let logged: Vec<Logged> = (0..9).map(|_| log.failed("StorageFull: x")).collect();
        use Logged::*;
        assert_eq!(
            logged,
            [
                First,
                Repeated(2),
                Nothing,
                Repeated(4),
                Nothing,
                Nothing,
                Nothing,
                Repeated(8),
                Nothing
            ]
        );
        assert_eq!(log.failed("Internal: y"), First, "another failure");
        log.succeeded();
        assert_eq!(log.failed("Internal: y"), First, "a new streak");
    }
}
