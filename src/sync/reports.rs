//! When a live responder's knowledge goes out as a knowledge report (`store::members`): the
//! pace of its knowledge-only pages that change only in the initiator's own generations.
//!
//! A live responder sends a page that reaches the end of its log when it carries records or
//! knowledge that is news to the initiator (`sync::responder`). Knowledge that changed only in
//! the initiator's own generations tells the initiator nothing it can sync, but it is the
//! responder's report of having seen the initiator's writes: without it a member that only
//! reads never tells a writer that it holds the writer's records, and the writer's history
//! waits for the horizon (issue 12). So such a page goes out too, at most once per
//! [`REPORT_INTERVAL`] per call, the last change held back until the interval has passed;
//! knowledge the last such page already carried is never sent again.

use std::time::Duration;

use tokio::time::Instant;

use crate::genvec::Knowledge;

/// Least time between two knowledge-only pages of one call that only report (2 s): a
/// member's knowledge reaches the other side of a live call within this while it changes.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(2);

/// What to do with a page that reached the end of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Send it now.
    Now,
    /// Hold it: the knowledge is a report due at this instant (send the page read then).
    At(Instant),
    /// Nothing to report: the initiator already has this knowledge.
    None,
}

/// The knowledge reports one call sent: the last knowledge and when it went out.
#[derive(Debug, Clone, Default)]
pub struct Pace {
    sent: Option<(Knowledge, Instant)>,
}

impl Pace {
    /// What to do at `now` with a page that ends the log carrying `knowledge` and no news
    /// for the initiator: send it if it differs from the last knowledge sent and
    /// [`REPORT_INTERVAL`] has passed since, hold it until then if it has not, else nothing.
    pub fn report(&self, knowledge: &Knowledge, now: Instant) -> Report {
        match &self.sent {
            None => Report::Now,
            Some((sent, _)) if sent == knowledge => Report::None,
            Some((_, at)) if now >= *at + REPORT_INTERVAL => Report::Now,
            Some((_, at)) => Report::At(*at + REPORT_INTERVAL),
        }
    }

    /// Notes that a page carrying `knowledge` went out at `now`.
    pub fn sent(&mut self, knowledge: &Knowledge, now: Instant) {
        self.sent = Some((knowledge.clone(), now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genvec::{DeviceId, GenVector, Generation, Scope};

    fn knowledge(generation: u64) -> Knowledge {
        let vector: GenVector = [(DeviceId(1), Generation::new(generation))]
            .into_iter()
            .collect();
        let mut knowledge = Knowledge::new();
        knowledge.insert(Scope::new("t", ""), vector);
        knowledge
    }

    #[test]
    fn a_changed_knowledge_goes_out_at_most_once_per_interval() {
        let start = Instant::now();
        let mut pace = Pace::default();
        assert_eq!(pace.report(&knowledge(1), start), Report::Now);
        pace.sent(&knowledge(1), start);
        let soon = start + REPORT_INTERVAL / 2;
        assert_eq!(
            pace.report(&knowledge(2), soon),
            Report::At(start + REPORT_INTERVAL)
        );
        let later = start + REPORT_INTERVAL;
        assert_eq!(pace.report(&knowledge(2), later), Report::Now);
    }

    #[test]
    fn knowledge_already_sent_is_not_sent_again() {
        let start = Instant::now();
        let mut pace = Pace::default();
        pace.sent(&knowledge(3), start);
        let later = start + 10 * REPORT_INTERVAL;
        assert_eq!(pace.report(&knowledge(3), later), Report::None);
    }
}
