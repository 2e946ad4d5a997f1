//! The one backoff every retry loop uses (peer links, accept loops): after each failure the
//! pause doubles from a minimum up to a cap, with up to a quarter of random jitter so peers do
//! not retry in lockstep; it goes back to the minimum only when the caller saw **progress**
//! (for a peer link: a page applied with records, or a round that reached the end of the
//! peer's log and stayed up), never merely because a connection opened. A peer that refuses at
//! once (`NoAccess:`), a full disk (`StorageFull:`) or a bad state is retried at the cap.
//! The jitter is drawn from the random source it is given (a node's `Env`), so a seeded
//! simulation retries at the same moments on every run.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::env::Random;

/// Capped exponential backoff, reset only by progress.
#[derive(Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    random: Arc<dyn Random>,
}

impl Backoff {
    /// Pauses from `min` doubling up to `max` (`max` below `min` counts as `min`), jittered
    /// with draws from `random`.
    pub fn new(min: Duration, max: Duration, random: Arc<dyn Random>) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
            random,
        }
    }

    /// A failure: the pause to wait now (with jitter); the next one doubles, up to the cap.
    pub fn fail(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        jitter(pause, self.random.as_ref())
    }

    /// Progress was made: the next failure waits the minimum again.
    pub fn progress(&mut self) {
        self.next = self.min;
    }

    /// The pause (before jitter) the next failure will wait.
    pub fn next_pause(&self) -> Duration {
        self.next
    }
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("min", &self.min)
            .field("max", &self.max)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// The pause plus up to a quarter of it: `pause / 4 * b / 255` for `b`, the top byte of one
/// draw from `random`. A source that fails (no randomness) adds no jitter: a retry loop still
/// waits its backoff.
fn jitter(pause: Duration, random: &dyn Random) -> Duration {
    let byte = random.next_u64().map_or(0, |draw| (draw >> 56) as u32);
    pause + pause / 4 * byte / 255
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{OsRandom, SeededRandom};
    use crate::error::{Error, Result};

    #[test]
    fn failures_double_the_pause_up_to_the_cap_and_only_progress_resets_it() {
        let (min, max) = (Duration::from_millis(50), Duration::from_millis(400));
        let mut backoff = Backoff::new(min, max, Arc::new(OsRandom));
        let pauses: Vec<_> = (0..6).map(|_| backoff.fail()).collect();
        for (pause, floor) in pauses.iter().zip([50, 100, 200, 400, 400, 400]) {
            let floor = Duration::from_millis(floor);
            assert!(*pause >= floor && *pause <= floor + floor / 4, "{pauses:?}");
        }
        backoff.progress();
        assert_eq!(backoff.next_pause(), min);
    }

    #[test]
    fn jitter_is_drawn_from_the_given_random_source() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(10));
        let pauses = |seed| {
            let mut backoff = Backoff::new(min, max, Arc::new(SeededRandom::new(seed)));
            (0..8).map(|_| backoff.fail()).collect::<Vec<_>>()
        };
        assert_eq!(pauses(11), pauses(11));
        let draws = SeededRandom::new(11);
        let first = draws.next_u64().unwrap();
        let byte = (first >> 56) as u32;
        assert_eq!(pauses(11)[0], min + min / 4 * byte / 255);
        assert_ne!(pauses(11), pauses(12));
    }

    struct NoRandomness;

    impl Random for NoRandomness {
        fn fill(&self, _bytes: &mut [u8]) -> Result<()> {
            Err(Error::Internal("no randomness: test".into()))
        }
    }

    #[test]
    fn a_failing_random_source_adds_no_jitter() {
        let min = Duration::from_millis(50);
        let mut backoff = Backoff::new(min, min * 4, Arc::new(NoRandomness));
        assert_eq!(backoff.fail(), min);
        assert_eq!(backoff.fail(), min * 2);
        assert!(format!("{backoff:?}").contains("next"));
    }
}
