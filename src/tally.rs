//! Log lines that repeat: the one helper that keeps an event anyone (or a refusing peer) can
//! cause over and over from filling a node's log. [`Tally`] counts events over a period: the
//! first of a period is logged in full, the rest are summed up in one line when the period is
//! over. [`Repeats`] does the same for a warning whose text may change (a link's failure): an
//! identical warning is logged once, then as "... (repeated N times in the last 60 s)"; a
//! different one first closes the count of the previous one. [`RepeatLog`] is for a failure
//! shared by every task of a node (every commit failing on a full disk): logged once, then
//! with a count at 2, 4, 8, ... repeats, and once more when the operation succeeds again.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Events counted over a period: logged once, then summed up.
#[derive(Debug)]
pub struct Tally {
    period: Duration,
    count: usize,
    since: Option<Instant>,
}

impl Tally {
    /// Sums events up at most once per `period`.
    pub fn new(period: Duration) -> Tally {
        Tally {
            period,
            count: 0,
            since: None,
        }
    }

    /// Counts one event; whether it opens a period (the caller logs it in full).
    pub fn note(&mut self) -> bool {
        self.count += 1;
        let first = self.since.is_none();
        if first {
            self.since = Some(Instant::now());
        }
        first
    }

    /// Events counted since the last summary.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The events of a period that is over (and starts the next), if any.
    pub fn summary(&mut self) -> Option<(usize, Duration)> {
        let since = self.since?;
        if since.elapsed() < self.period {
            return None;
        }
        if self.count == 0 {
            self.since = None;
            return None;
        }
        let count = std::mem::take(&mut self.count);
        self.since = Some(Instant::now());
        Some((count, since.elapsed()))
    }

    /// The events counted so far, whether or not the period is over; the tally starts afresh.
    pub fn take(&mut self) -> Option<(usize, Duration)> {
        let since = self.since.take()?;
        let count = std::mem::take(&mut self.count);
        (count > 0).then(|| (count, since.elapsed()))
    }
}

/// A warning that may repeat word for word: [`Repeats::note`] says what to log now.
#[derive(Debug)]
pub struct Repeats {
    tally: Tally,
    /// The warning being counted (already logged once).
    current: Option<String>,
}

impl Repeats {
    /// Sums identical warnings up at most once per `period`.
    pub fn new(period: Duration) -> Repeats {
        Repeats {
            tally: Tally::new(period),
            current: None,
        }
    }

    /// Counts `warning`; returns the lines to log now: the warning itself when it is new (after
    /// the summary of the one it replaces), a summary when its period is over, else nothing.
    pub fn note(&mut self, warning: &str) -> Vec<String> {
        let mut lines = Vec::new();
        if self.current.as_deref() != Some(warning) {
            lines.extend(self.flush());
            self.current = Some(warning.to_owned());
            self.tally.note();
            lines.push(warning.to_owned());
            // The line just logged is not a repeat.
            self.tally.count = 0;
            return lines;
        }
        self.tally.count += 1;
        if let Some(line) = self.tally.summary().map(|s| self.summary_line(s)) {
            lines.push(line);
        }
        lines
    }

    /// The summary of the repeats not logged yet, if any; the next warning is logged in full.
    pub fn flush(&mut self) -> Option<String> {
        let summary = self.tally.take();
        let line = summary.map(|s| self.summary_line(s));
        self.current = None;
        line
    }

    /// Repeats counted and not logged yet.
    pub fn pending(&self) -> usize {
        self.tally.count()
    }

    fn summary_line(&self, (count, period): (usize, Duration)) -> String {
        format!(
            "{} (repeated {count} times in the last {} s)",
            self.current.as_deref().unwrap_or_default(),
            period.as_secs().max(1)
        )
    }
}

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
    fn an_identical_warning_is_logged_once_then_with_its_count() {
        let mut repeats = Repeats::new(Duration::from_millis(200));
        assert_eq!(repeats.note("NoAccess: refused"), vec!["NoAccess: refused"]);
        for _ in 0..37 {
            assert!(repeats.note("NoAccess: refused").is_empty());
        }
        assert_eq!(repeats.pending(), 37);
        std::thread::sleep(Duration::from_millis(250));
        let lines = repeats.note("NoAccess: refused");
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("NoAccess: refused (repeated 38 times in the last "),
            "{lines:?}"
        );
        assert_eq!(repeats.pending(), 0);
    }

    #[test]
    fn a_different_warning_closes_the_count_of_the_previous_one() {
        let mut repeats = Repeats::new(Duration::from_secs(60));
        repeats.note("ConnFail: refused");
        repeats.note("ConnFail: refused");
        repeats.note("ConnFail: refused");
        let lines = repeats.note("StorageFull: map full");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("ConnFail: refused (repeated 2 times in the last "));
        assert_eq!(lines[1], "StorageFull: map full");
    }

    #[test]
    fn a_warning_seen_once_has_no_summary() {
        let mut repeats = Repeats::new(Duration::from_secs(60));
        repeats.note("ConnFail: refused");
        assert_eq!(repeats.flush(), None);
        assert_eq!(repeats.note("ConnFail: refused"), vec!["ConnFail: refused"]);
    }

    #[test]
    fn a_tally_sums_up_only_after_its_period() {
        let mut tally = Tally::new(Duration::from_millis(100));
        assert!(tally.note());
        assert!(!tally.note());
        assert_eq!(tally.summary(), None);
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(tally.summary().map(|(count, _)| count), Some(2));
        assert_eq!(tally.count(), 0);
    }

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
