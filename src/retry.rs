//! The one backoff every retry loop uses (peer links, accept loops): after each failure the
//! pause doubles from a minimum up to a cap, with up to a quarter of random jitter so peers do
//! not retry in lockstep; it goes back to the minimum only when the caller saw **progress**
//! (for a peer link: a page applied with records, or a round that reached the end of the
//! peer's log and stayed up), never merely because a connection opened. A peer that refuses at
//! once (`NoAccess:`), a full disk (`StorageFull:`) or a bad state is retried at the cap.

use std::time::Duration;

/// Capped exponential backoff, reset only by progress.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Pauses from `min` doubling up to `max` (`max` below `min` counts as `min`).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// A failure: the pause to wait now (with jitter); the next one doubles, up to the cap.
    pub fn fail(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        jitter(pause)
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

/// The pause with up to a quarter of random jitter.
fn jitter(pause: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    pause + pause / 4 * u32::from(byte[0]) / 255
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_double_the_pause_up_to_the_cap_and_only_progress_resets_it() {
        let (min, max) = (Duration::from_millis(50), Duration::from_millis(400));
        let mut backoff = Backoff::new(min, max);
        let pauses: Vec<_> = (0..6).map(|_| backoff.fail()).collect();
        for (pause, floor) in pauses.iter().zip([50, 100, 200, 400, 400, 400]) {
            let floor = Duration::from_millis(floor);
            assert!(*pause >= floor && *pause <= floor + floor / 4, "{pauses:?}");
        }
        backoff.progress();
        assert_eq!(backoff.next_pause(), min);
    }
}
