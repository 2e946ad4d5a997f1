//! Many seeds at once: each seed is one [`run`] on its own thread's runtime, `jobs` threads
//! taking the next seed as they finish, so a sweep of thousands of seeds uses every core.

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::world::{Failure, SimConfig, run};

/// What a sweep found.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub passed: u64,
    /// The seeds that failed, in seed order.
    pub failures: Vec<Failure>,
    /// Wall time the sweep took.
    pub elapsed: Duration,
}

impl Sweep {
    /// Seeds run per minute of wall time.
    pub fn seeds_per_minute(&self) -> f64 {
        let seeds = self.passed + self.failures.len() as u64;
        seeds as f64 * 60.0 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs every seed of `seeds` under `config` on `jobs` threads (at least one).
pub fn sweep(seeds: Range<u64>, config: &SimConfig, jobs: usize) -> Sweep {
    let started = Instant::now();
    let next = AtomicU64::new(seeds.start);
    let passed = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    // Never wraps: the counter stops at the end of the range.
                    let taken = next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |seed| {
                        (seed < seeds.end).then_some(seed + 1)
                    });
                    let Ok(seed) = taken else {
                        break;
                    };
                    match run(seed, config) {
                        Ok(_) => {
                            passed.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(failure) => failures
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(failure),
                    }
                }
            });
        }
    });
    let mut failures = failures
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    failures.sort_by_key(|failure| failure.seed);
    Sweep {
        passed: passed.into_inner(),
        failures,
        elapsed: started.elapsed(),
    }
}
