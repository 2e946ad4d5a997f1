//! The environment a node is opened with: where it reads time, draws randomness and runs its
//! commits ([`Blocking`]). The
//! engine (`store`, `syncgroup`, `node`, `retry`'s jitter) does neither any other way, so a
//! deterministic simulation passes a [`SeededRandom`] and a virtual clock
//! ([`ManualTime`](crate::clock::ManualTime)) and replays a run from its seed; production
//! passes [`Env::system`]. `Env` is a plain struct with public fields so more effects (a
//! dialer, a spawner) join it as fields.
//!
//! Out of the environment on purpose: the CLI's client token (`token`) and the TLS keys
//! (`identity`) are secrets and always come from the operating system; the RPC layer's
//! limits, frame reader and accept loops keep real time.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::clock::{SystemTime, TimeSource};
use crate::error::{Error, Result};

/// A source of random bytes. Thread-safe; methods take `&self`.
pub trait Random: Send + Sync + 'static {
    /// Fills `bytes` with random bytes. Fails with `Internal: no randomness: ...` if the
    /// source has none to give (the operating system's generator failed).
    fn fill(&self, bytes: &mut [u8]) -> Result<()>;

    /// A random `u64`: 8 bytes from [`Random::fill`], little-endian. Errors as `fill`.
    fn next_u64(&self) -> Result<u64> {
        let mut bytes = [0u8; 8];
        self.fill(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }
}

/// The operating system's generator (`getrandom`): what a node uses in production.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, bytes: &mut [u8]) -> Result<()> {
        getrandom::fill(bytes).map_err(|e| Error::Internal(format!("no randomness: {e}")))
    }
}

/// A deterministic generator: ChaCha8 (`rand_chacha`) keyed from a `u64` seed with
/// `SeedableRng::seed_from_u64`. The same seed gives the same stream, bit for bit, on every
/// platform; the draws of all threads come from one stream in the order they take its lock.
/// Never fails.
pub struct SeededRandom {
    seed: u64,
    rng: Mutex<ChaCha8Rng>,
}

impl SeededRandom {
    /// A generator at the start of `seed`'s stream.
    pub fn new(seed: u64) -> SeededRandom {
        SeededRandom {
            seed,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// The seed it was made from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The generator, even if another thread panicked holding it (a draw either happened or
    /// did not; no state is left half updated).
    fn rng(&self) -> std::sync::MutexGuard<'_, ChaCha8Rng> {
        self.rng.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Random for SeededRandom {
    fn fill(&self, bytes: &mut [u8]) -> Result<()> {
        self.rng().fill_bytes(bytes);
        Ok(())
    }

    fn next_u64(&self) -> Result<u64> {
        Ok(self.rng().next_u64())
    }
}

impl fmt::Debug for SeededRandom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeededRandom")
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// A node's effects: its time source and random source. Cheap to clone (`Arc`s); every
/// clone shares the same sources.
#[derive(Clone)]
pub struct Env {
    /// Wall time in Unix nanoseconds; the node's hybrid logical clock is built on it.
    pub time: Arc<dyn TimeSource>,
    /// Versions, device ids, syncgroup ids, invite secrets and retry jitter are drawn here.
    pub random: Arc<dyn Random>,
    /// Where a node's commits run.
    pub blocking: Blocking,
}

/// Where a node runs its storage commits (`Node::write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    /// On tokio's blocking threads, tracked so shutdown waits for them: an fsync never stalls
    /// an RPC worker. Production.
    Threads,
    /// In the calling task, at once: the commit is done when the call returns, with no other
    /// task in between. The deterministic simulation, whose single thread must decide every
    /// interleaving itself.
    Inline,
}

impl Env {
    /// The production environment: the system wall clock and the operating system's
    /// generator.
    pub fn system() -> Env {
        Env {
            time: Arc::new(SystemTime),
            random: Arc::new(OsRandom),
            blocking: Blocking::Threads,
        }
    }

    /// A reproducible environment: `time` (usually a `ManualTime`) and a [`SeededRandom`]
    /// from `seed`; commits still run on blocking threads (set `blocking` to
    /// [`Blocking::Inline`] to run them in the calling task).
    pub fn seeded(seed: u64, time: Arc<dyn TimeSource>) -> Env {
        Env {
            time,
            random: Arc::new(SeededRandom::new(seed)),
            blocking: Blocking::Threads,
        }
    }

    /// The time source's current time, Unix nanoseconds (no HLC skew applied).
    pub fn now_nanos(&self) -> i64 {
        self.time.now_nanos()
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("now_nanos", &self.now_nanos())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualTime;

    fn draws(random: &dyn Random, count: usize) -> Vec<u64> {
        (0..count).map(|_| random.next_u64().unwrap()).collect()
    }

    #[test]
    fn seeded_random_is_stable_across_runs() {
        // Pinned: a crate upgrade or a change of algorithm that changes the stream of a seed
        // breaks every recorded simulation seed, so it must fail here first. The literals are
        // ChaCha8 (RFC 7539 rounds, 64-bit block counter from 0, stream 0) keyed by eight
        // PCG32 outputs from state 1, computed outside Rust as a cross-check.
        let first = draws(&SeededRandom::new(1), 4);
        assert_eq!(
            first,
            [
                0x6709_4cea_8ca4_0db1,
                0x1494_06d8_fc0e_8e6b,
                0x98b8_2b03_3607_0665,
                0x3825_a7dc_6308_0d42,
            ],
            "{first:#018x?}"
        );
        let mut bytes = [0u8; 8];
        SeededRandom::new(1).fill(&mut bytes).unwrap();
        assert_eq!(u64::from_le_bytes(bytes), first[0]);
    }

    #[test]
    fn the_same_seed_gives_the_same_stream_and_another_seed_another() {
        assert_eq!(
            draws(&SeededRandom::new(7), 64),
            draws(&SeededRandom::new(7), 64)
        );
        assert_ne!(
            draws(&SeededRandom::new(7), 4),
            draws(&SeededRandom::new(8), 4)
        );
        assert_eq!(SeededRandom::new(7).seed(), 7);
    }

    #[test]
    fn clones_of_a_seeded_env_share_one_stream() {
        let env = Env::seeded(3, Arc::new(ManualTime::new(0)));
        let copy = env.clone();
        let interleaved = [
            env.random.next_u64().unwrap(),
            copy.random.next_u64().unwrap(),
        ];
        assert_eq!(interleaved.as_slice(), draws(&SeededRandom::new(3), 2));
    }

    #[test]
    fn env_time_is_its_time_source() {
        let time = ManualTime::new(42);
        let env = Env::seeded(0, Arc::new(time.clone()));
        assert_eq!(env.now_nanos(), 42);
        time.advance(8);
        assert_eq!(env.now_nanos(), 50);
        assert!(format!("{env:?}").contains("50"));
    }

    #[test]
    fn the_system_env_draws_os_randomness_and_reads_the_wall_clock() {
        let env = Env::system();
        assert_ne!(draws(env.random.as_ref(), 2), draws(env.random.as_ref(), 2));
        let wall = SystemTime.now_nanos();
        assert!((env.now_nanos() - wall).abs() < 60 * 1_000_000_000);
    }
}
