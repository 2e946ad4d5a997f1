//! `Node` as the sync engine's [`Host`]: each method delegates to the node's own (its access
//! decisions in `access`, syncgroup metadata in `syncgroups`, epochs in `epoch`, commits on
//! blocking threads through `Node::write`).

use std::collections::BTreeMap;

use super::Node;
use crate::changes::ChangeReceiver;
use crate::error::Result;
use crate::genvec::{DeviceId, Generation, Knowledge, Scope};
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::store::{
    Applied, Epoch, LogRecord, Notice, Resolver, StateApplied, StateStep, Store, SyncgroupDeltas,
    SyncgroupKnowledge, SyncgroupsApplied, Taken,
};
use crate::sync::host::{Host, WriterCheck};
use crate::sync::membership::{JoinReply, PublishOutcome, PublishRequest};
use crate::sync::peers::PeerRegistry;
use crate::sync::screen::{IncomingPage, Screened};
use crate::syncgroup::{
    MemberInfo, Removal, SyncgroupId, SyncgroupName, SyncgroupRecord, SyncgroupView,
};

impl Host for Node {
    fn store(&self) -> &Store {
        Node::store(self)
    }

    fn peers(&self) -> &PeerRegistry {
        Node::peers(self)
    }

    fn resolver(&self) -> &dyn Resolver {
        Node::resolver(self)
    }

    fn subscribe(&self) -> ChangeReceiver {
        Node::subscribe(self)
    }

    fn now_nanos(&self) -> i64 {
        self.env().now_nanos()
    }

    fn may_read_scope(&self, peer: &Fingerprint, db: &DbName, scope: &Scope) -> Result<bool> {
        Node::may_read_scope(self, peer, db, scope)
    }

    fn writer_check(&self, peer: &Fingerprint, db: &DbName) -> Result<WriterCheck> {
        Node::writer_check(self, peer, db)
    }

    fn syncgroup_deltas(
        &self,
        peer: &Fingerprint,
        db: &DbName,
        wanted: &SyncgroupKnowledge,
    ) -> Result<SyncgroupDeltas> {
        Node::syncgroup_deltas(self, peer, db, wanted)
    }

    fn syncgroup_removals(
        &self,
        peer: &Fingerprint,
        db: &DbName,
        wanted: &SyncgroupKnowledge,
    ) -> Result<BTreeMap<SyncgroupId, Removal>> {
        Node::syncgroup_removals(self, peer, db, wanted)
    }

    async fn take_removals(
        &self,
        db: DbName,
        sender: Fingerprint,
        removals: BTreeMap<SyncgroupId, Removal>,
    ) -> Result<()> {
        Node::take_removals(self, db, sender, removals).await
    }

    fn syncgroups_shared_with(
        &self,
        peer: &Fingerprint,
        db: &DbName,
    ) -> Result<SyncgroupKnowledge> {
        Node::syncgroups_shared_with(self, peer, db)
    }

    async fn apply_page(
        &self,
        db: DbName,
        from: DeviceId,
        page: IncomingPage,
    ) -> Result<(Applied, Screened)> {
        Node::apply_page(self, db, from, page).await
    }

    async fn note_member_knowledge(
        &self,
        db: DbName,
        peer: &Fingerprint,
        knowledge: Knowledge,
    ) -> Result<()> {
        let peer = peer.to_string();
        self.write(move |store| store.note_member_knowledge(&db, &peer, &knowledge))
            .await
    }

    async fn apply_state(
        &self,
        db: DbName,
        peer: &Fingerprint,
        step: StateStep,
    ) -> Result<StateApplied> {
        let (peers, resolver, peer) = (self.peers.clone(), self.resolver.clone(), peer.clone());
        self.write(move |store| {
            store.apply_state(&db, resolver.as_ref(), &step, |held| {
                let declared = peers.declared_scopes(&peer, db.as_str());
                let check = WriterCheck::new(peer.clone(), held.to_vec(), declared);
                move |record: &LogRecord| {
                    check.allows(
                        record.device(),
                        record.generation(),
                        &record.table,
                        &record.row,
                    )
                }
            })
        })
        .await
    }

    async fn take_notices(
        &self,
        db: DbName,
        peer: &Fingerprint,
        announcer: DeviceId,
        notices: Vec<Notice>,
    ) -> Result<Taken> {
        Node::take_notices(self, db, peer, announcer, notices).await
    }

    async fn start_epoch(
        &self,
        expected: DeviceId,
        reason: String,
        clash: Option<(DbName, Generation)>,
    ) -> Result<Option<Epoch>> {
        Node::start_epoch(self, expected, reason, clash).await
    }

    fn fingerprint(&self) -> &Fingerprint {
        self.identity().fingerprint()
    }

    fn member_info(&self) -> MemberInfo {
        Node::member_info(self)
    }

    async fn join_reply(&self, reply: JoinReply) -> Result<SyncgroupView> {
        Node::join_reply(self, reply).await
    }

    async fn admit_host(
        &self,
        name: SyncgroupName,
        host: Fingerprint,
        info: MemberInfo,
    ) -> Result<SyncgroupView> {
        Node::admit_host(self, name, host, info).await
    }

    async fn publish_reply(
        &self,
        name: SyncgroupName,
        host: Fingerprint,
        outcome: Result<PublishOutcome>,
    ) -> Result<SyncgroupView> {
        Node::publish_reply(self, name, host, outcome).await
    }

    async fn join_at_admin(
        &self,
        joiner: Fingerprint,
        name: SyncgroupName,
        info: MemberInfo,
        invite_secret: Option<String>,
    ) -> Result<JoinReply> {
        Node::join_at_admin(self, joiner, name, info, invite_secret).await
    }

    async fn accept_publish(&self, request: PublishRequest) -> Result<PublishOutcome> {
        Node::accept_publish(self, request).await
    }

    async fn apply_syncgroups(
        &self,
        db: DbName,
        sender: Fingerprint,
        records: Vec<SyncgroupRecord>,
        knowledge: SyncgroupKnowledge,
    ) -> Result<SyncgroupsApplied> {
        Node::apply_syncgroups(self, db, sender, records, knowledge).await
    }
}
