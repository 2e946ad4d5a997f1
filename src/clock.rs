//! The node's hybrid logical clock (HLC): the [`Hlc`] reading, the [`TimeSource`] it reads
//! physical time from (the node's `Env`: [`SystemTime`] in production, [`ManualTime`] in
//! tests and simulations), and the thread-safe [`Clock`] that issues strictly increasing
//! readings, follows readings seen from peers without being dragged more than
//! [`MAX_FORWARD_DRIFT_NANOS`] into the future, and carries the skew learned from peers
//! (reference §5: physical time = system time + skew).

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime as StdSystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How far ahead of this clock's physical time a remote reading may drag the clock.
///
/// One minute: well above honest skew between peers (the reference adopts a peer's clock only
/// when they differ by more than 2 s, and refuses offsets over 1 min from rebooted peers), yet
/// small enough that one peer with a clock set far ahead (a "poison" timestamp) cannot push
/// every later local write hours into the future, where it would win every last-writer-wins
/// conflict.
pub const MAX_FORWARD_DRIFT_NANOS: i64 = 60 * 1_000_000_000;

/// A hybrid logical clock reading, ordered by (wall_nanos, logical). wall_nanos are ns since
/// the Unix epoch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Physical part: nanoseconds since the Unix epoch (skew included).
    pub wall_nanos: i64,
    /// Logical counter ordering readings that share a physical part.
    pub logical: u32,
}

impl Hlc {
    /// The smallest reading greater than this one with the same physical part, or, when the
    /// logical counter is full, the next nanosecond with counter 0. Never panics; at
    /// `i64::MAX` ns (year 2262) with a full counter it returns itself.
    pub fn successor(self) -> Hlc {
        match self.logical.checked_add(1) {
            Some(logical) => Hlc {
                wall_nanos: self.wall_nanos,
                logical,
            },
            None => Hlc {
                wall_nanos: self.wall_nanos.saturating_add(1),
                logical: if self.wall_nanos == i64::MAX {
                    u32::MAX
                } else {
                    0
                },
            },
        }
    }
}

/// Where physical time comes from: the system clock, or a test's fake.
pub trait TimeSource: Send + Sync + 'static {
    /// The current time in nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> i64;
}

/// The operating system's wall clock (`std::time::SystemTime` since `UNIX_EPOCH`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemTime;

impl TimeSource for SystemTime {
    fn now_nanos(&self) -> i64 {
        match StdSystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_nanos()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_nanos())
                .map(|nanos| -nanos)
                .unwrap_or(i64::MIN),
        }
    }
}

/// A test clock whose time only moves when told to (set/advance); cheap to clone (Arc
/// inside), and every clone shows the same time.
#[derive(Debug, Clone)]
pub struct ManualTime(Arc<AtomicI64>);

impl ManualTime {
    /// A clock standing at `start_nanos`.
    pub fn new(start_nanos: i64) -> Self {
        ManualTime(Arc::new(AtomicI64::new(start_nanos)))
    }

    /// Moves the time to `nanos` (backwards too).
    pub fn set(&self, nanos: i64) {
        self.0.store(nanos, Ordering::SeqCst);
    }

    /// Moves the time by `nanos` (negative moves it backwards); wraps on overflow.
    pub fn advance(&self, nanos: i64) {
        self.0.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl TimeSource for ManualTime {
    fn now_nanos(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the clock's lock guards.
#[derive(Debug, Default)]
struct State {
    /// The last reading issued or observed.
    last: Hlc,
    /// Added to the source's time to get the physical part of readings.
    skew_nanos: i64,
}

/// The node's HLC. Thread-safe (a Mutex inside; methods take &self).
pub struct Clock {
    source: Arc<dyn TimeSource>,
    state: Mutex<State>,
}

impl Clock {
    /// A clock reading physical time from `source`, with no skew and no reading yet.
    pub fn new(source: Arc<dyn TimeSource>) -> Self {
        Clock {
            source,
            state: Mutex::new(State::default()),
        }
    }

    /// The skew added to the source's time: physical part of readings = source time + skew
    /// (skew learned from peers later; starts 0).
    pub fn skew_nanos(&self) -> i64 {
        self.lock().skew_nanos
    }

    /// Replaces the skew. Readings stay strictly increasing even if this moves physical time
    /// backwards.
    pub fn set_skew_nanos(&self, skew: i64) {
        self.lock().skew_nanos = skew;
    }

    /// A reading strictly greater than every reading this clock issued or observed (standard
    /// HLC send/local event rule): the physical time with counter 0 if that is ahead of the
    /// last reading, else the last reading with its counter bumped.
    pub fn now(&self) -> Hlc {
        let mut state = self.lock();
        let physical = self.physical(&state);
        let next = if physical > state.last.wall_nanos {
            Hlc {
                wall_nanos: physical,
                logical: 0,
            }
        } else {
            state.last.successor()
        };
        state.last = next;
        next
    }

    /// Advances the clock past a remote reading (HLC receive rule), so later local readings
    /// sort after it.
    ///
    /// A remote wall time more than [`MAX_FORWARD_DRIFT_NANOS`] ahead of this clock's physical
    /// time is capped at physical + MAX_FORWARD_DRIFT for the purpose of advancing the clock
    /// (the record keeps its timestamp; the clock just refuses to be dragged far into the
    /// future). Returns whether it was capped; later local readings are then above the cap
    /// but not necessarily above `remote`.
    pub fn observe(&self, remote: Hlc) -> bool {
        let mut state = self.lock();
        let ceiling = self
            .physical(&state)
            .saturating_add(MAX_FORWARD_DRIFT_NANOS);
        let capped = remote.wall_nanos > ceiling;
        let effective = if capped {
            Hlc {
                wall_nanos: ceiling,
                logical: 0,
            }
        } else {
            remote
        };
        state.last = state.last.max(effective);
        capped
    }

    /// Makes sure future readings are greater than `floor` (used at startup with the last
    /// reading persisted before a restart). The floor is trusted: it is not capped.
    pub fn restore(&self, floor: Hlc) {
        let mut state = self.lock();
        state.last = state.last.max(floor);
    }

    /// The last reading issued or observed (for persisting).
    pub fn last(&self) -> Hlc {
        self.lock().last
    }

    /// The physical part for a new reading: source time + skew.
    /// Physical time now, Unix nanoseconds (the source's time plus the skew), without an HLC
    /// reading: what a GetTime exchange compares between two nodes.
    pub fn physical_nanos(&self) -> i64 {
        let state = self.lock();
        self.physical(&state)
    }

    fn physical(&self, state: &State) -> i64 {
        self.source.now_nanos().saturating_add(state.skew_nanos)
    }

    /// The state, even if another thread panicked holding it (no method leaves it half
    /// updated: each update is one assignment).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Clock")
            .field("last", &state.last)
            .field("skew_nanos", &state.skew_nanos)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: i64 = 1_000_000_000;
    const START: i64 = 1_700_000_000 * SECOND;

    fn manual_clock() -> (ManualTime, Clock) {
        let time = ManualTime::new(START);
        let clock = Clock::new(Arc::new(time.clone()));
        (time, clock)
    }

    fn hlc(wall_nanos: i64, logical: u32) -> Hlc {
        Hlc {
            wall_nanos,
            logical,
        }
    }

    #[test]
    fn readings_follow_physical_time() {
        let (time, clock) = manual_clock();
        assert_eq!(clock.now(), hlc(START, 0));
        time.advance(5);
        assert_eq!(clock.now(), hlc(START + 5, 0));
        assert_eq!(clock.last(), hlc(START + 5, 0));
    }

    #[test]
    fn monotonic_when_time_stands_still() {
        let (_time, clock) = manual_clock();
        let first = clock.now();
        let second = clock.now();
        let third = clock.now();
        assert!(first < second && second < third);
        assert_eq!(third, hlc(START, 2));
    }

    #[test]
    fn monotonic_when_time_goes_backwards() {
        let (time, clock) = manual_clock();
        let before = clock.now();
        time.advance(-10 * SECOND);
        let after = clock.now();
        assert!(after > before);
        assert_eq!(after, hlc(START, 1));
        time.set(START + SECOND);
        assert_eq!(clock.now(), hlc(START + SECOND, 0));
    }

    #[test]
    fn observe_within_drift_moves_the_clock_past_remote() {
        let (_time, clock) = manual_clock();
        let remote = hlc(START + 30 * SECOND, 7);
        assert!(!clock.observe(remote));
        assert_eq!(clock.last(), remote);
        let local = clock.now();
        assert!(local > remote);
        assert_eq!(local, hlc(START + 30 * SECOND, 8));
    }

    #[test]
    fn observe_of_older_reading_changes_nothing() {
        let (_time, clock) = manual_clock();
        let issued = clock.now();
        assert!(!clock.observe(hlc(START - SECOND, 3)));
        assert_eq!(clock.last(), issued);
    }

    #[test]
    fn poison_timestamp_is_capped() {
        let (_time, clock) = manual_clock();
        let poison = hlc(START + 3600 * SECOND, 0);
        assert!(clock.observe(poison));
        let local = clock.now();
        assert!(local < poison);
        assert!(local.wall_nanos <= START + MAX_FORWARD_DRIFT_NANOS);
        assert!(local > hlc(START + MAX_FORWARD_DRIFT_NANOS, 0));
    }

    #[test]
    fn remote_exactly_at_the_drift_limit_is_not_capped() {
        let (_time, clock) = manual_clock();
        assert!(!clock.observe(hlc(START + MAX_FORWARD_DRIFT_NANOS, 4)));
        assert!(clock.observe(hlc(START + MAX_FORWARD_DRIFT_NANOS + 1, 0)));
    }

    #[test]
    fn restore_sets_a_floor() {
        let (_time, clock) = manual_clock();
        let floor = hlc(START + 3600 * SECOND, 9);
        clock.restore(floor);
        assert_eq!(clock.last(), floor);
        assert_eq!(clock.now(), hlc(START + 3600 * SECOND, 10));
        clock.restore(hlc(START, 0));
        assert!(clock.now() > floor);
    }

    #[test]
    fn logical_overflow_bumps_wall_time() {
        let (_time, clock) = manual_clock();
        clock.restore(hlc(START, u32::MAX));
        assert_eq!(clock.now(), hlc(START + 1, 0));
        assert_eq!(clock.now(), hlc(START + 1, 1));
    }

    #[test]
    fn overflow_at_the_end_of_time_does_not_panic() {
        let (_time, clock) = manual_clock();
        clock.restore(hlc(i64::MAX, u32::MAX));
        assert_eq!(clock.now(), hlc(i64::MAX, u32::MAX));
    }

    #[test]
    fn skew_shifts_physical_time() {
        let (_time, clock) = manual_clock();
        assert_eq!(clock.skew_nanos(), 0);
        clock.set_skew_nanos(2 * SECOND);
        assert_eq!(clock.skew_nanos(), 2 * SECOND);
        assert_eq!(clock.now(), hlc(START + 2 * SECOND, 0));
        clock.set_skew_nanos(-2 * SECOND);
        assert_eq!(clock.now(), hlc(START + 2 * SECOND, 1));
    }

    #[test]
    fn drift_is_measured_from_skewed_time() {
        let (_time, clock) = manual_clock();
        clock.set_skew_nanos(30 * SECOND);
        assert!(!clock.observe(hlc(START + 80 * SECOND, 0)));
    }

    #[test]
    fn manual_time_clones_share_time() {
        let time = ManualTime::new(10);
        let copy = time.clone();
        time.advance(5);
        assert_eq!(copy.now_nanos(), 15);
        copy.set(3);
        assert_eq!(time.now_nanos(), 3);
    }

    #[test]
    fn system_clock_is_near_system_time() {
        let clock = Clock::new(Arc::new(SystemTime));
        let reading = clock.now();
        let system = SystemTime.now_nanos();
        assert!(reading.wall_nanos <= system);
        assert!(system - reading.wall_nanos < 60 * SECOND);
        assert!(clock.now() > reading);
        assert!(format!("{clock:?}").contains("last"));
    }

    #[test]
    fn clock_is_shared_across_threads() {
        let clock = Arc::new(Clock::new(Arc::new(SystemTime)));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let clock = Arc::clone(&clock);
                std::thread::spawn(move || (0..1000).map(|_| clock.now()).collect::<Vec<_>>())
            })
            .collect();
        let mut all = Vec::new();
        for handle in handles {
            let readings = handle.join().expect("thread panicked");
            assert!(readings.windows(2).all(|pair| pair[0] < pair[1]));
            all.extend(readings);
        }
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count, "two threads got the same reading");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Now,
        Observe { ahead_nanos: i64, logical: u32 },
        Advance(i64),
        Set(i64),
        Skew(i64),
        Restore { ahead_nanos: i64, logical: u32 },
    }

    fn any_op() -> impl Strategy<Value = Op> {
        let offset = prop_oneof![
            -5i64..=5,
            -120 * SECOND..=120 * SECOND,
            Just(MAX_FORWARD_DRIFT_NANOS),
            Just(MAX_FORWARD_DRIFT_NANOS + 1),
            Just(3600 * SECOND),
        ];
        let logical = prop_oneof![0u32..=3, Just(u32::MAX - 1), Just(u32::MAX)];
        prop_oneof![
            4 => Just(Op::Now),
            3 => (offset.clone(), logical.clone())
                .prop_map(|(ahead_nanos, logical)| Op::Observe { ahead_nanos, logical }),
            2 => (-10 * SECOND..=10 * SECOND).prop_map(Op::Advance),
            1 => (START - 100 * SECOND..=START + 100 * SECOND).prop_map(Op::Set),
            1 => (-5 * SECOND..=5 * SECOND).prop_map(Op::Skew),
            1 => (offset, logical)
                .prop_map(|(ahead_nanos, logical)| Op::Restore { ahead_nanos, logical }),
        ]
    }

    proptest! {
        #[test]
        fn readings_strictly_increase_and_pass_observed(
            ops in prop::collection::vec(any_op(), 1..60)
        ) {
            let (time, clock) = manual_clock();
            let physical = |time: &ManualTime, clock: &Clock| time.now_nanos() + clock.skew_nanos();
            let mut previous: Option<Hlc> = None;
            let mut floor: Option<Hlc> = None;
            // Highest wall time the clock may reach: physical times plus drift at observes,
            // restored floors, and logical-overflow bumps.
            let mut ceiling = i64::MIN;
            for op in ops {
                match op {
                    Op::Now => {
                        let reading = clock.now();
                        if let Some(previous) = previous {
                            prop_assert!(reading > previous, "{:?} after {:?}", reading, previous);
                        }
                        if let Some(floor) = floor {
                            prop_assert!(reading > floor, "{:?} not above {:?}", reading, floor);
                        }
                        ceiling = ceiling.max(physical(&time, &clock));
                        prop_assert!(reading.wall_nanos <= ceiling + 1, "{:?} over {}", reading, ceiling);
                        ceiling = ceiling.max(reading.wall_nanos);
                        previous = Some(reading);
                    }
                    Op::Observe { ahead_nanos, logical } => {
                        let now = physical(&time, &clock);
                        let remote = hlc(now + ahead_nanos, logical);
                        let capped = clock.observe(remote);
                        prop_assert_eq!(capped, ahead_nanos > MAX_FORWARD_DRIFT_NANOS);
                        ceiling = ceiling.max(now + MAX_FORWARD_DRIFT_NANOS);
                        if !capped {
                            floor = floor.max(Some(remote));
                        }
                    }
                    Op::Restore { ahead_nanos, logical } => {
                        let restored = hlc(physical(&time, &clock) + ahead_nanos, logical);
                        clock.restore(restored);
                        ceiling = ceiling.max(restored.wall_nanos);
                        floor = floor.max(Some(restored));
                    }
                    Op::Advance(nanos) => time.advance(nanos),
                    Op::Set(nanos) => time.set(nanos),
                    Op::Skew(skew) => clock.set_skew_nanos(skew),
                }
            }
        }
    }
}
