//! A change counter many tasks wait on: the node's commit feed and the peer registry's
//! changes, which wake live peer streams, watchers and link loops (push, never poll).
//!
//! Waiters are woken in a fixed order (tokio's `Notify` keeps them in a list), so a seeded
//! simulation replays exactly which task runs first after a commit. tokio's `watch` channel,
//! which this replaces, spreads its waiters over several lists picked at random and wakes them
//! in an order no seed fixes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The sending side: [`Changes::bump`] after each change. Clones send to the same receivers;
/// once every clone is dropped, waiting receivers see [`Closed`].
pub struct Changes {
    shared: Arc<Shared>,
}

struct Shared {
    count: AtomicU64,
    senders: AtomicUsize,
    notify: tokio::sync::Notify,
}

/// Every sender is gone: nothing will change any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// One waiter's view: the count it has seen.
pub struct ChangeReceiver {
    shared: Arc<Shared>,
    seen: u64,
}

impl Default for Changes {
    fn default() -> Changes {
        Changes::new()
    }
}

impl Changes {
    /// A feed that has counted no change.
    pub fn new() -> Changes {
        Changes {
            shared: Arc::new(Shared {
                count: AtomicU64::new(0),
                senders: AtomicUsize::new(1),
                notify: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Counts one change and wakes every waiting receiver.
    pub fn bump(&self) {
        self.shared.count.fetch_add(1, Ordering::SeqCst);
        self.shared.notify.notify_waiters();
    }

    /// Changes counted so far.
    pub fn count(&self) -> u64 {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// A receiver that has seen every change so far.
    pub fn subscribe(&self) -> ChangeReceiver {
        ChangeReceiver {
            shared: self.shared.clone(),
            seen: self.count(),
        }
    }
}

impl Clone for Changes {
    fn clone(&self) -> Changes {
        self.shared.senders.fetch_add(1, Ordering::SeqCst);
        Changes {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.shared.notify.notify_waiters();
        }
    }
}

impl ChangeReceiver {
    /// Marks every change so far as seen; returns the count.
    pub fn mark_seen(&mut self) -> u64 {
        self.seen = self.shared.count.load(Ordering::SeqCst);
        self.seen
    }

    /// Whether a change this receiver has not seen was counted.
    pub fn has_changed(&self) -> bool {
        self.shared.count.load(Ordering::SeqCst) != self.seen
    }

    /// Resolves once a change this receiver has not seen was counted (and marks it seen);
    /// `Err(Closed)` once every sender is gone and nothing is unseen.
    pub async fn changed(&mut self) -> Result<(), Closed> {
        loop {
            // Registered before the count is read, so a bump in between is not missed.
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.shared.count.load(Ordering::SeqCst);
            if now != self.seen {
                self.seen = now;
                return Ok(());
            }
            if self.shared.senders.load(Ordering::SeqCst) == 0 {
                return Err(Closed);
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn a_receiver_sees_each_change_once_and_closes_with_its_senders() {
        let changes = Changes::new();
        let mut receiver = changes.subscribe();
        assert!(
            receiver.changed().now_or_never().is_none(),
            "nothing changed yet"
        );
        changes.bump();
        changes.bump();
        assert_eq!(receiver.changed().now_or_never(), Some(Ok(())));
        assert!(
            receiver.changed().now_or_never().is_none(),
            "both were seen at once"
        );
        let clone = changes.clone();
        drop(changes);
        clone.bump();
        drop(clone);
        assert_eq!(
            receiver.changed().now_or_never(),
            Some(Ok(())),
            "unseen before closed"
        );
        assert_eq!(receiver.changed().now_or_never(), Some(Err(Closed)));
    }

    #[tokio::test]
    async fn waiters_wake_in_the_order_they_started_waiting_every_time() {
        let mut orders = Vec::new();
        for _ in 0..20 {
            let changes = Changes::new();
            let woken = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let local = tokio::task::LocalSet::new();
            for waiter in 0..16 {
                let mut receiver = changes.subscribe();
                let woken = woken.clone();
                local.spawn_local(async move {
                    receiver.changed().await.unwrap();
                    woken.borrow_mut().push(waiter);
                });
            }
            local
                .run_until(async {
                    tokio::task::yield_now().await;
                    changes.bump();
                })
                .await;
            local.await;
            orders.push(woken.borrow().clone());
        }
        assert_eq!(orders[0].len(), 16);
        assert!(orders.iter().all(|order| order == &orders[0]), "{orders:?}");
    }
}
