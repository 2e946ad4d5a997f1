//! The gate that keeps an LMDB map still while a transaction of this process uses it.
//!
//! `mdb_env_set_mapsize` may run only while no transaction of the process is active. Every
//! transaction (read or write) holds a [`Pass`], a shared guard on the gate, from before it
//! begins until after it ends; a resize takes the gate exclusively ([`Gate::exclusive`]).
//!
//! The lock is `parking_lot`'s fair `RwLock`: once a resize waits, new transactions queue
//! behind it, so a steady stream of readers cannot starve it. A thread that already holds a
//! pass of this gate (one thread may hold several transactions) re-enters without queueing
//! (`read_recursive`), else it would wait for a resize that waits for it. For the same
//! reason a thread holding a pass never resizes, and a resize waits at most [`RESIZE_WAIT`]
//! (a transaction held that long, or a thread blocked on another that waits at the gate,
//! delays the resize instead of deadlocking).

use std::cell::RefCell;
use std::time::Duration;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The longest a resize waits for the transactions in flight to end.
pub(super) const RESIZE_WAIT: Duration = Duration::from_secs(10);

thread_local! {
    /// The passes this thread holds: (gate address, count), one entry per gate.
    static HELD: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
}

/// The gate of one environment.
#[derive(Debug, Default)]
pub(super) struct Gate {
    lock: RwLock<()>,
}

/// A transaction's shared hold on the gate; released on drop (on the thread that took it:
/// a pass is not `Send`).
pub(super) struct Pass<'g> {
    gate: &'g Gate,
    _guard: RwLockReadGuard<'g, ()>,
}

impl Gate {
    /// Takes a pass, waiting while a resize runs or waits (unless this thread holds one).
    pub(super) fn enter(&self) -> Pass<'_> {
        let guard = if self.held_here() {
            self.lock.read_recursive()
        } else {
            self.lock.read()
        };
        self.count(1);
        Pass {
            gate: self,
            _guard: guard,
        }
    }

    /// The gate alone, once every pass is returned; `None` if this thread holds a pass or
    /// the passes in flight were not all returned within [`RESIZE_WAIT`].
    pub(super) fn exclusive(&self) -> Option<RwLockWriteGuard<'_, ()>> {
        if self.held_here() {
            return None;
        }
        self.lock.try_write_for(RESIZE_WAIT)
    }

    /// Whether this thread holds a pass of this gate.
    pub(super) fn held_here(&self) -> bool {
        let id = self.id();
        HELD.with(|held| held.borrow().iter().any(|&(gate, _)| gate == id))
    }

    fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Adds `delta` (+1 or -1) to this thread's count of passes of this gate.
    fn count(&self, delta: isize) {
        let id = self.id();
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            match held.iter().position(|&(gate, _)| gate == id) {
                Some(at) => {
                    let count = held[at].1.wrapping_add_signed(delta);
                    if count == 0 {
                        held.swap_remove(at);
                    } else {
                        held[at].1 = count;
                    }
                }
                None => held.push((id, 1)),
            }
        });
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.gate.count(-1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_holding_a_pass_reenters_and_never_resizes() {
        let gate = Gate::default();
        let first = gate.enter();
        let second = gate.enter();
        assert!(
            gate.exclusive().is_none(),
            "a pass holder must not wait for itself"
        );
        drop(first);
        assert!(gate.held_here(), "one pass is still held");
        drop(second);
        assert!(!gate.held_here());
        assert!(gate.exclusive().is_some());
    }

    #[test]
    fn a_resize_waits_for_passes_on_other_threads() {
        let gate = Gate::default();
        let (entered, leave) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let _pass = gate.enter();
                entered.wait();
                leave.wait();
                std::thread::sleep(Duration::from_millis(50));
            });
            entered.wait();
            assert!(gate.lock.try_write().is_none(), "a pass is out");
            leave.wait();
            let started = std::time::Instant::now();
            assert!(gate.exclusive().is_some());
            assert!(started.elapsed() >= Duration::from_millis(40));
        });
    }
}
