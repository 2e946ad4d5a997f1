//! What history collection has to show: a pass run on demand with the store's usage around
//! it ([`Node::collect_now`], `syncbase gc DB`), and per database the live data and the
//! members whose knowledge reports hold the cut back ([`Node::collection_status`],
//! `syncbase status`). It reads what `node::collect` decides with (`Node::scope_members`,
//! `Store::member_reports`, the horizon) and changes nothing but what the pass collects.

use std::collections::BTreeMap;

use super::Node;
use crate::error::{Error, Result};
use crate::genvec::{DeviceId, GenVector, Scope};
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::store::{Collected, LiveData, Mutation, Reports};
use syncbase_storage::Usage;

use super::collect::Pass;

/// A collection pass run on demand, with the store's size figures before and after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDemand {
    pub pass: Pass,
    pub before: Usage,
    pub after: Usage,
}

/// What collection in one database waits for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectionStatus {
    /// The database's live rows and their tables', keys' and values' bytes.
    pub live: LiveData,
    /// Each member holding back the cut of a shared scope, by scope then member.
    pub held_back: Vec<HeldBack>,
}

/// One member whose latest usable knowledge report holds back the cut of one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBack {
    pub scope: Scope,
    pub member: Fingerprint,
    /// When it last reported, Unix nanoseconds; None: it never reported any knowledge (it
    /// holds back everything in the scope until it does, or for the horizon).
    pub last_seen_nanos: Option<i64>,
    /// Generations (commits) this node holds and the member's report lacks, summed over
    /// devices: the generation vectors' gap under the scope, which counts a device's commits
    /// anywhere in the database, not only the scope's.
    pub generations_behind: u64,
    /// The device it lags most on, and by how many generations (None if it never reported).
    pub most_behind: Option<(DeviceId, u64)>,
}

/// Collection passes a delete that did not fit may run, each followed by a retry.
const DELETE_ROUNDS: usize = 3;

impl Node {
    /// Runs one collection pass over `db` now ([`Node::collect`]) and reads the storage's
    /// usage before and after it. Errors: `NoExist:` for a database this node does not
    /// have; the pass's and the storage's (`Internal:` from a backend with no size figures).
    pub async fn collect_now(&self, db: &DbName) -> Result<OnDemand> {
        self.existing(db)?;
        let before = self.store().usage()?;
        let pass = self.collect(db).await?;
        let after = self.store().usage()?;
        Ok(OnDemand {
            pass,
            before,
            after,
        })
    }

    /// What collection in `db` waits for: for every shared scope (`Node::shared_scopes`),
    /// each member that may read it (`Node::scope_members`) whose report is within the
    /// horizon and lacks some generation this node holds of the scope, or that never
    /// reported; and the live data (`Store::live_data`: one scan over the database's row
    /// heads). Reads only. Errors: `NoExist:` for a database this node does not have.
    pub fn collection_status(&self, db: &DbName) -> Result<CollectionStatus> {
        self.existing(db)?;
        let store = self.store();
        let own = store.knowledge(db)?;
        let own_generation = store.state(db)?.own_generation();
        let reports: BTreeMap<String, Reports> = store.member_reports(db)?.into_iter().collect();
        let since = self.env().now_nanos() - nanos(self.collect_settings().horizon);
        let mut held_back = Vec::new();
        for scope in self.shared_scopes(db)? {
            let mut mine = own.bound_for(&scope);
            mine.raise(store.device(), own_generation);
            for member in self.scope_members(db, &scope)? {
                let reports = reports.get(member.as_str());
                if let Some(held) = holding_back(&scope, &mine, member, reports, since) {
                    held_back.push(held);
                }
            }
        }
        Ok(CollectionStatus {
            live: store.live_data(db)?,
            held_back,
        })
    }

    /// Commits a batch of only deletes; if the store is full even for them (they add
    /// tombstones, and may use the reserve ordinary writes leave, but a small row's delete
    /// adds more than it frees, so deleting many rows can use it up), runs a collection
    /// pass over `db` ([`Node::collect`]: the history of earlier deletes every member has
    /// seen goes) and, if it freed anything, commits once more. Errors: `Node::commit`'s
    /// (`StorageFull:` when the passes freed nothing, or after [`DELETE_ROUNDS`] rounds).
    pub(super) async fn delete_collecting(
        &self,
        db: DbName,
        mutations: Vec<Mutation>,
    ) -> Result<Vec<bool>> {
        // First as an ordinary write: the reserve stays for the collection that makes room.
        let mut outcome = self
            .commit_once_as(db.clone(), mutations.clone(), false)
            .await;
        if matches!(outcome, Err(Error::StorageFull(_))) && self.collect(&db).await.is_ok() {
            outcome = self
                .commit_once_as(db.clone(), mutations.clone(), false)
                .await;
        }
        if matches!(outcome, Err(Error::StorageFull(_))) {
            outcome = self.commit_once(db.clone(), mutations.clone()).await;
        }
        // LMDB reuses the pages a commit frees only a couple of transactions later, and a
        // pass may stop at the very top of the store after freeing some: a few rounds.
        for _ in 0..DELETE_ROUNDS {
            let Err(Error::StorageFull(message)) = &outcome else {
                return outcome;
            };
            match self.collect(&db).await {
                Ok(pass) if pass.collected == Collected::default() => return outcome,
                Ok(pass) => tracing::info!(
                    db = db.as_str(),
                    ?pass.collected,
                    "the store was full for a delete: collected history and trying again"
                ),
                Err(error) => {
                    tracing::warn!(%error, %message, "collecting history for a delete failed");
                }
            }
            outcome = self.commit_once(db.clone(), mutations.clone()).await;
        }
        outcome
    }

    /// Fails with `NoExist:` unless this node has `db` (a read that must create nothing:
    /// `syncbase gc`, `get`, `scan`).
    pub fn existing(&self, db: &DbName) -> Result<()> {
        if self.store().has_database(db)? {
            Ok(())
        } else {
            Err(Error::NoExist(format!(
                "database {:?} does not exist on this node",
                db.as_str()
            )))
        }
    }
}

/// Whether `member`, with `reports`, holds back the cut of `scope` below `mine`: never
/// reported (no report, or only the empty one given at first sight), or its latest report
/// within the horizon (`since`) lacks generations `mine` holds. A member silent past the
/// horizon holds nothing back.
fn holding_back(
    scope: &Scope,
    mine: &GenVector,
    member: Fingerprint,
    reports: Option<&Reports>,
    since: i64,
) -> Option<HeldBack> {
    let never = HeldBack {
        scope: scope.clone(),
        member: member.clone(),
        last_seen_nanos: None,
        generations_behind: mine.iter().map(|(_, generation)| generation.get()).sum(),
        most_behind: None,
    };
    let Some(reports) = reports else {
        return Some(never);
    };
    let last_seen = reports.last_seen()?;
    if last_seen < since {
        return None;
    }
    let reported = reports
        .reports
        .iter()
        .rev()
        .find(|report| !report.knowledge.is_empty());
    let Some(report) = reported else {
        return Some(never);
    };
    let theirs = report.knowledge.bound_for(scope);
    let lags: Vec<(DeviceId, u64)> = mine
        .iter()
        .map(|(device, generation)| {
            let lag = generation.get().saturating_sub(theirs.get(device).get());
            (device, lag)
        })
        .filter(|(_, lag)| *lag > 0)
        .collect();
    let most_behind = lags.iter().copied().max_by_key(|(_, lag)| *lag)?;
    Some(HeldBack {
        scope: scope.clone(),
        member,
        last_seen_nanos: Some(last_seen),
        generations_behind: lags.iter().map(|(_, lag)| lag).sum(),
        most_behind: Some(most_behind),
    })
}

/// Whether `mutations` are all deletes (a batch [`Node::delete_collecting`] commits).
pub(super) fn deletes_only(mutations: &[Mutation]) -> bool {
    mutations
        .iter()
        .all(|mutation| matches!(mutation, Mutation::Delete { .. }))
}

fn nanos(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genvec::{Generation, Knowledge};
    use crate::store::Report;

    fn member() -> Fingerprint {
        Fingerprint::parse(&"ab".repeat(32)).unwrap()
    }

    fn vector(entries: &[(u64, u64)]) -> GenVector {
        entries
            .iter()
            .map(|(device, generation)| (DeviceId(*device), Generation::new(*generation)))
            .collect()
    }

    fn reports(at_nanos: i64, vector: GenVector) -> Reports {
        let mut knowledge = Knowledge::new();
        if !vector.is_empty() {
            knowledge.insert(Scope::new("t", ""), vector);
        }
        Reports {
            reports: vec![Report {
                at_nanos,
                knowledge,
            }],
        }
    }

    #[test]
    fn a_member_behind_is_named_with_its_lag_and_the_device_it_lags_most_on() {
        let scope = Scope::new("t", "");
        let mine = vector(&[(1, 10), (2, 5)]);
        let reports = reports(100, vector(&[(1, 3), (2, 4)]));
        let held = holding_back(&scope, &mine, member(), Some(&reports), 50).unwrap();
        assert_eq!(held.last_seen_nanos, Some(100));
        assert_eq!(held.generations_behind, 8);
        assert_eq!(held.most_behind, Some((DeviceId(1), 7)));
    }

    #[test]
    fn a_member_that_never_reported_holds_back_everything() {
        let scope = Scope::new("t", "");
        let mine = vector(&[(1, 10), (2, 5)]);
        let first_sight = reports(100, GenVector::new());
        for reports in [None, Some(&first_sight)] {
            let held = holding_back(&scope, &mine, member(), reports, 50).unwrap();
            assert_eq!(held.last_seen_nanos, None);
            assert_eq!(held.generations_behind, 15);
        }
    }

    #[test]
    fn a_member_caught_up_or_past_the_horizon_holds_nothing_back() {
        let scope = Scope::new("t", "");
        let mine = vector(&[(1, 10)]);
        let caught_up = reports(100, vector(&[(1, 10)]));
        assert_eq!(
            holding_back(&scope, &mine, member(), Some(&caught_up), 50),
            None
        );
        let away = reports(10, vector(&[(1, 1)]));
        assert_eq!(holding_back(&scope, &mine, member(), Some(&away), 50), None);
    }
}
