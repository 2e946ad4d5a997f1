//! The live watches of a node: where each one reads the watch feed of its database, so
//! history collection (`node::collect`) never removes a row head's change a live watcher has
//! yet to read (`store::collect::Cut::feed_keep`). A watcher that registered reads nothing
//! below its position; one registered before its first read holds every change back until
//! it says where it starts. In memory only: a watch ends with its connection.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The positions of the live watches, per database.
#[derive(Debug, Default)]
pub struct Watchers {
    /// (database, watch id) -> the next feed sequence the watch reads.
    positions: Arc<Mutex<BTreeMap<(String, u64), u64>>>,
    next_id: Mutex<u64>,
}

impl Watchers {
    /// Registers a watch of `db` at sequence 0 (holding every change back until
    /// [`WatchPosition::set`] moves it); it is forgotten when the guard drops.
    pub fn register(&self, db: &str) -> WatchPosition {
        let id = {
            let mut next = lock(&self.next_id);
            *next += 1;
            *next
        };
        let key = (db.to_owned(), id);
        lock(&self.positions).insert(key.clone(), 0);
        WatchPosition {
            positions: self.positions.clone(),
            key,
        }
    }

    /// The lowest feed sequence a live watch of `db` reads from; None without one.
    pub fn lowest(&self, db: &str) -> Option<u64> {
        lock(&self.positions)
            .iter()
            .filter(|((watched, _), _)| watched == db)
            .map(|(_, position)| *position)
            .min()
    }
}

/// One live watch's place in its database's feed; unregisters on drop.
#[derive(Debug)]
pub struct WatchPosition {
    positions: Arc<Mutex<BTreeMap<(String, u64), u64>>>,
    key: (String, u64),
}

impl WatchPosition {
    /// The watch reads on from feed sequence `next`.
    pub fn set(&self, next: u64) {
        lock(&self.positions).insert(self.key.clone(), next);
    }
}

impl Drop for WatchPosition {
    fn drop(&mut self) {
        lock(&self.positions).remove(&self.key);
    }
}

/// The map even if a holder panicked (its entries stay valid: each write is one insert).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_position_is_the_slowest_live_watch_of_the_database() {
        let watchers = Watchers::default();
        assert_eq!(watchers.lowest("db"), None);
        let (slow, fast, other) = (
            watchers.register("db"),
            watchers.register("db"),
            watchers.register("other"),
        );
        assert_eq!(
            watchers.lowest("db"),
            Some(0),
            "registered: holds everything"
        );
        slow.set(5);
        fast.set(9);
        other.set(1);
        assert_eq!(watchers.lowest("db"), Some(5));
        drop(slow);
        assert_eq!(watchers.lowest("db"), Some(9));
        drop(fast);
        assert_eq!(watchers.lowest("db"), None);
    }
}
