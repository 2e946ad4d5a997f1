//! What each member told this node it knows of a database: the last few knowledge reports
//! per peer identity, the input of history garbage collection (`store::collect`).
//!
//! A report is a peer's knowledge as it stood at one moment, exact in every entry, its own
//! device's included: the knowledge a peer's getDeltas request carries (its knowledge raised
//! by its own generation), and the knowledge a page from it carries when it reaches the end
//! of its log (its knowledge at that snapshot), kept even when it adds nothing to this
//! node's knowledge. A live responder sends such a page whenever its knowledge changed, at
//! most every 2 s when only this node's generations changed (`sync::reports`), so a member
//! that only reads still reports within seconds. A report is only useful to collection once
//! this node's own knowledge dominates it: then everything the member had seen, its own
//! writes made before the report included, is held here too (the matrix-clock condition for
//! causal stability: a tombstone both sides have seen can be dropped only when no write
//! concurrent with it can still arrive from that member). So several reports are kept, at
//! least [`REPORT_SPACING_NANOS`] apart, and collection uses the latest one it dominates.
//!
//! Stored under `D y 0xfe <fingerprint>`, written in the commit that applied the page (or, for
//! a request, in a commit of its own when the session starts).

use serde::{Deserialize, Serialize};
use syncbase_storage::{ReadTxn, WriteTxn};

use crate::error::Result;
use crate::genvec::Knowledge;
use crate::store::keys::DbKeys;
use crate::store::records::{decode, encode, scan_decoded};

/// Reports kept per member.
pub const MAX_REPORTS: usize = 4;

/// Least wall time between two kept reports before the latest: a newer report closer than
/// this to the one before the latest replaces the latest (1 s).
pub const REPORT_SPACING_NANOS: i64 = 1_000_000_000;

/// One member's knowledge at one moment (wall time in nanoseconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub at_nanos: i64,
    pub knowledge: Knowledge,
}

/// A member's latest reports, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reports {
    pub reports: Vec<Report>,
}

impl Reports {
    /// Keeps `report` as the latest: it replaces the latest one if the one before that is
    /// under the spacing older than it, else it is added and the oldest beyond [`MAX_REPORTS`] is
    /// dropped. The spacing is measured from the report before the latest, never from the
    /// latest itself: a member reporting more often than the spacing (every page of a busy
    /// live session) would otherwise keep replacing one report for ever, and collection,
    /// which needs an older report this node's knowledge dominates, would stall.
    pub fn add(&mut self, report: Report) {
        let count = self.reports.len();
        let anchor = match count {
            0 => None,
            1 => Some(self.reports[0].at_nanos),
            _ => Some(self.reports[count - 2].at_nanos),
        };
        if count >= 2
            && anchor.is_some_and(|anchor| report.at_nanos - anchor < REPORT_SPACING_NANOS)
        {
            self.reports[count - 1] = report;
            return;
        }
        if count >= 1 && anchor.is_some_and(|anchor| report.at_nanos < anchor) {
            // A clock that went back: the newest report stands alone rather than be mixed
            // with ones dated after it.
            self.reports.clear();
        }
        self.reports.push(report);
        if self.reports.len() > MAX_REPORTS {
            self.reports.remove(0);
        }
    }

    /// When the member last reported (None: never).
    pub fn last_seen(&self) -> Option<i64> {
        self.reports.last().map(|report| report.at_nanos)
    }

    /// The latest report `is_held` accepts (the caller's knowledge dominates it).
    pub fn latest_held(&self, is_held: impl Fn(&Knowledge) -> bool) -> Option<&Report> {
        self.reports
            .iter()
            .rev()
            .find(|report| is_held(&report.knowledge))
    }
}

/// Adds a report of `peer`'s knowledge at `at_nanos` to those kept.
pub fn note(
    txn: &mut dyn WriteTxn,
    keys: &DbKeys,
    peer: &str,
    knowledge: &Knowledge,
    at_nanos: i64,
) -> Result<()> {
    let key = keys.member(peer);
    let mut reports = of(&*txn, keys, peer)?;
    reports.add(Report {
        at_nanos,
        knowledge: knowledge.clone(),
    });
    txn.put(&key, &encode(&reports)?)?;
    Ok(())
}

/// `peer`'s reports (none kept: empty).
pub fn of(txn: &dyn ReadTxn, keys: &DbKeys, peer: &str) -> Result<Reports> {
    match txn.get(&keys.member(peer))? {
        Some(bytes) => decode(&bytes, "member reports"),
        None => Ok(Reports::default()),
    }
}

/// Every member's reports, by fingerprint.
pub fn all(txn: &dyn ReadTxn, keys: &DbKeys) -> Result<Vec<(String, Reports)>> {
    let prefix = keys.member_prefix();
    let end = syncbase_storage::prefix_end(&prefix);
    let (members, _) = scan_decoded(txn, &prefix, end.as_deref(), usize::MAX, "member reports")?;
    Ok(members
        .into_iter()
        .map(|(key, reports)| {
            (
                String::from_utf8_lossy(&key[prefix.len()..]).into_owned(),
                reports,
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(at_secs: i64) -> Report {
        Report {
            at_nanos: at_secs * REPORT_SPACING_NANOS,
            knowledge: Knowledge::new(),
        }
    }

    #[test]
    fn reports_closer_than_the_spacing_to_the_one_before_the_latest_replace_the_latest() {
        let mut reports = Reports::default();
        reports.add(report(10));
        for extra in [1, 2] {
            reports.add(Report {
                at_nanos: 10 * REPORT_SPACING_NANOS + extra,
                ..report(0)
            });
        }
        assert_eq!(reports.reports.len(), 2);
        assert_eq!(reports.reports[0].at_nanos, 10 * REPORT_SPACING_NANOS);
        assert_eq!(reports.last_seen(), Some(10 * REPORT_SPACING_NANOS + 2));
    }

    /// Found by the soak: pages every few milliseconds each replaced the latest report, so
    /// no report ever aged into one this node's knowledge dominates and collection stalled.
    #[test]
    fn reports_more_often_than_the_spacing_still_keep_one_each_spacing() {
        let mut reports = Reports::default();
        let step = REPORT_SPACING_NANOS / 10;
        for i in 0..35 {
            reports.add(Report {
                at_nanos: i * step,
                ..report(0)
            });
        }
        let kept: Vec<i64> = reports.reports.iter().map(|r| r.at_nanos).collect();
        assert_eq!(kept.len(), MAX_REPORTS, "{kept:?}");
        assert_eq!(*kept.last().unwrap(), 34 * step, "the latest is kept");
        for pair in kept.windows(2) {
            assert!(pair[1] > pair[0], "{kept:?}");
        }
        assert!(
            kept[kept.len() - 1] - kept[kept.len() - 2] >= step,
            "{kept:?}"
        );
        assert!(
            34 * step - kept[kept.len() - 2] <= 2 * REPORT_SPACING_NANOS,
            "an older report at most two spacings old: {kept:?}"
        );
    }

    #[test]
    fn only_the_latest_few_reports_are_kept() {
        let mut reports = Reports::default();
        for at in 0..10 {
            reports.add(report(at * 2));
        }
        assert_eq!(reports.reports.len(), MAX_REPORTS);
        assert_eq!(reports.reports[0].at_nanos, 12 * REPORT_SPACING_NANOS);
    }

    #[test]
    fn the_latest_report_the_caller_holds_is_chosen() {
        let mut reports = Reports::default();
        for at in 0..3 {
            reports.add(report(at * 2));
        }
        let held = reports.latest_held(|_| true).map(|report| report.at_nanos);
        assert_eq!(held, Some(4 * REPORT_SPACING_NANOS));
        assert!(reports.latest_held(|_| false).is_none());
    }
}
