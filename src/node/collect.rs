//! History garbage collection for the node: what every member that counts has seen in a
//! database (the [`Cut`], from the members' knowledge reports, `store::members`) and passes
//! of bounded steps removing it (`store::collect`), in the background and on demand
//! (`syncbase gc DB`). ARCHITECTURE.md, "History garbage collection", has the rule and its
//! proof sketch.
//!
//! The cut of a shared scope is the element-wise minimum of this node's own knowledge of it
//! (raised by its own generation) and, for every peer that may read the scope and reported
//! within the horizon, the latest report this node's knowledge dominates. The members of a
//! scope are the declared peers sharing it and the creator and joiners of the held
//! syncgroups containing it (an entry `...` admits identities nobody can list: they do not
//! count). A member that never reported is given an empty report when first seen, so it holds
//! collection back until it reports, or for the horizon. A member whose latest report is
//! older than the horizon no longer holds collection back; when it returns below the floor,
//! it catches up by state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::Node;
use crate::error::Result;
use crate::genvec::{GenVector, Knowledge, Scope};
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::store::{CollectCursor, Collected, Cut, Reports};

/// How a node collects history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectSettings {
    /// A member silent for longer no longer holds collection back (default 7 days).
    pub horizon: Duration,
    /// Pause between background passes (zero, the default: no background collection).
    pub interval: Duration,
    /// Log entries (and then watch-feed changes) one step examines in one write
    /// transaction (default 1,000): what bounds how long collection holds the writer.
    pub step_entries: usize,
}

impl Default for CollectSettings {
    fn default() -> Self {
        CollectSettings {
            horizon: Duration::from_secs(7 * 24 * 3600),
            interval: Duration::ZERO,
            step_entries: 1_000,
        }
    }
}

/// What one pass over a database did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    pub collected: Collected,
    /// Steps (write transactions) it took.
    pub steps: u64,
    /// The cut it collected below.
    pub cut: Cut,
}

impl Node {
    /// The cut of `db` now: what every member that counts has seen (see the module doc).
    /// A member with no report yet gets an empty one, dated now: it holds collection of its
    /// scopes back until it reports, or for the horizon.
    pub async fn collection_cut(&self, db: &DbName) -> Result<Cut> {
        let scopes = self.shared_scopes(db)?;
        let mut members = BTreeMap::new();
        for scope in &scopes {
            members.insert(scope.clone(), self.scope_members(db, scope)?);
        }
        self.first_sight(db, members.values().flatten()).await?;
        let store = self.store();
        let own = store.knowledge(db)?;
        let own_generation = store.state(db)?.own_generation();
        let device = store.device();
        let reports: BTreeMap<String, Reports> = store.member_reports(db)?.into_iter().collect();
        let since = self.env().now_nanos() - nanos(self.collect_settings().horizon);
        let mut cut = Cut::default();
        for (scope, members) in members {
            let mut mine = own.bound_for(&scope);
            mine.raise(device, own_generation);
            let vector = scope_cut(&scope, mine, &members, &reports, since);
            cut.shared.insert(scope, vector);
        }
        cut.unshared = own;
        cut.own = (device, own_generation);
        Ok(cut)
    }

    /// The identities `scope` of `db` is shared with: declared peers with the scope, and
    /// the creator and joiners of every syncgroup containing it that this node still syncs
    /// (held, not left, not lost to an admin's eject or revoke) that may read it (not this
    /// node). A syncgroup this node lost holds nothing back: it no longer serves its members.
    pub fn scope_members(&self, db: &DbName, scope: &Scope) -> Result<BTreeSet<Fingerprint>> {
        let mut members: BTreeSet<Fingerprint> = self
            .peers()
            .declared()
            .into_iter()
            .map(|peer| peer.fingerprint)
            .filter(|peer| self.peers().declared_allows(peer, db.as_str(), scope))
            .collect();
        let synced = self
            .store()
            .syncgroups(db)?
            .into_iter()
            .filter(|view| !view.local.left && view.local.removed.is_none());
        for sg in synced.map(|view| view.record.sg) {
            if sg.spec.contains(scope) {
                members.extend(sg.joiners.keys().cloned());
                members.insert(sg.creator.clone());
            }
        }
        members.remove(self.identity().fingerprint());
        let mut readers = BTreeSet::new();
        for member in members {
            if self.may_read_scope(&member, db, scope)? {
                readers.insert(member);
            }
        }
        Ok(readers)
    }

    /// Gives each of `members` with no report yet an empty one, dated now.
    async fn first_sight(
        &self,
        db: &DbName,
        members: impl Iterator<Item = &Fingerprint>,
    ) -> Result<()> {
        let reported: BTreeSet<String> = self
            .store()
            .member_reports(db)?
            .into_iter()
            .map(|(peer, _)| peer)
            .collect();
        let unseen: BTreeSet<String> = members
            .map(|member| member.to_string())
            .filter(|member| !reported.contains(member))
            .collect();
        for member in unseen {
            let db = db.clone();
            self.write(move |store| store.note_member_knowledge(&db, &member, &Knowledge::new()))
                .await?;
        }
        Ok(())
    }

    /// Every scope `db` is shared under: its declared peers' scopes and its held
    /// syncgroups' prefixes.
    pub fn shared_scopes(&self, db: &DbName) -> Result<Vec<Scope>> {
        let mut scopes: Vec<Scope> = self
            .peers()
            .declared()
            .iter()
            .filter_map(|peer| peer.databases.get(db.as_str()))
            .flatten()
            .cloned()
            .collect();
        for sg in self.held_syncgroups(db)? {
            scopes.extend(sg.spec.prefixes.iter().cloned());
        }
        scopes.sort();
        scopes.dedup();
        Ok(scopes)
    }

    /// One whole collection pass over `db`: the cut, then steps of at most
    /// `step_entries` entries each, each its own write transaction run off the async threads,
    /// until the log and the watch feed are examined.
    pub async fn collect(&self, db: &DbName) -> Result<Pass> {
        let cut = self.collection_cut(db).await?;
        let step_entries = self.collect_settings().step_entries.max(1);
        let mut pass = Pass {
            cut,
            ..Pass::default()
        };
        let mut cursor = CollectCursor::default();
        while !cursor.done {
            let mut cut = pass.cut.clone();
            cut.feed_keep = self.watchers.lowest(db.as_str());
            let db = db.clone();
            let step = move |store: &crate::store::Store| {
                store.collect_step(&db, &cut, cursor, step_entries)
            };
            let (next, collected) = self.write(step).await?;
            cursor = next;
            pass.collected.add(&collected);
            pass.steps += 1;
            tokio::task::yield_now().await;
        }
        tracing::debug!(
            db = db.as_str(),
            ?pass.collected,
            steps = pass.steps,
            cut = ?pass.cut.shared,
            "collected history"
        );
        Ok(pass)
    }

    /// Collects every database, one pass each.
    pub async fn collect_all(&self) -> Result<Collected> {
        let mut total = Collected::default();
        for db in self.store().list_databases()? {
            total.add(&self.collect(&DbName::parse(&db)?).await?.collected);
        }
        Ok(total)
    }

    /// Runs [`Node::collect_all`] every `interval` until `stop` resolves; a failed pass is
    /// logged and tried again at the next interval.
    pub async fn collect_in_background(&self, stop: impl std::future::Future<Output = ()>) {
        let interval = self.collect_settings().interval;
        if interval.is_zero() {
            return;
        }
        tokio::pin!(stop);
        loop {
            tokio::select! {
                biased;
                () = &mut stop => return,
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(error) = self.collect_all().await {
                tracing::warn!(%error, "history collection failed; trying again later");
            }
        }
    }
}

/// The cut of one shared scope: `mine` met with, for every member reported within the
/// horizon (`since`), its latest report `mine` dominates; empty if such a member has none.
fn scope_cut(
    scope: &Scope,
    mine: GenVector,
    members: &BTreeSet<Fingerprint>,
    reports: &BTreeMap<String, Reports>,
    since: i64,
) -> GenVector {
    let mut cut = mine.clone();
    for member in members {
        let Some(reports) = reports.get(member.as_str()) else {
            return GenVector::new();
        };
        if reports.last_seen().is_none_or(|seen| seen < since) {
            continue;
        }
        let held = reports.latest_held(|knowledge| mine.dominates(&knowledge.bound_for(scope)));
        match held {
            Some(report) => cut = cut.meet(&report.knowledge.bound_for(scope)),
            None => {
                tracing::debug!(
                    %member,
                    %scope,
                    reports = ?reports.reports.iter().map(|r| (r.at_nanos, r.knowledge.bound_for(scope))).collect::<Vec<_>>(),
                    ?mine,
                    "no report of this member is held here yet: collection of the scope waits"
                );
                return GenVector::new();
            }
        }
    }
    cut
}

fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}
