//! What the sync engine asks of the node it runs in: the [`Host`] trait. The protocol
//! (`initiator`, `responder`, `syncgroups`, `link`) is written against it and never names the
//! node type, so the same code runs in a served node (`node::Node` implements it) and in the
//! deterministic simulation, where commits run inline and time is virtual.
//!
//! A host owns five things the protocol needs and must not reach around:
//! - the store, read in short snapshot reads, and its commits (the `async` methods: a served
//!   node runs them on blocking threads; each is one storage transaction, and an access
//!   check guarding one runs inside it: `apply_page` screens the page's writers there);
//! - the access policy: who may read which scope (`may_read_scope`), whose records count
//!   (`writer_check`, a [`WriterCheck`]), which syncgroups are shared with a peer and what of
//!   them it may read;
//! - the conflict resolver (`resolver()`, a [`Resolver`]; a node's is last-writer-wins),
//!   which settles every conflict `apply_page` meets, inside its commit;
//! - the peer registry, the one owner of peer status (`peers()`);
//! - the change feed: a watch channel bumped after every commit (`subscribe`), which wakes
//!   live streams (push, never poll), and the time status readings are stamped with.

use std::collections::BTreeMap;
use std::future::Future;

use crate::changes::ChangeReceiver;
use crate::error::Result;
use crate::genvec::{DeviceId, Generation, Knowledge, Scope};
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::store::{
    Applied, Epoch, Notice, Resolver, StateApplied, StateStep, Store, SyncgroupDeltas,
    SyncgroupKnowledge, SyncgroupsApplied, Taken,
};
use crate::sync::membership::{JoinReply, PublishOutcome, PublishRequest};
use crate::sync::peers::PeerRegistry;
use crate::sync::screen::{IncomingPage, Screened};
use crate::syncgroup::{
    MemberInfo, Removal, Syncgroup, SyncgroupId, SyncgroupName, SyncgroupRecord, SyncgroupView,
};

/// The node a sync session runs in (see the module doc).
pub trait Host: 'static {
    /// The store, for snapshot reads.
    fn store(&self) -> &Store;

    /// The peer registry: declared and derived peers, and every peer's status.
    fn peers(&self) -> &PeerRegistry;

    /// The rule conflicts are settled by. It must be the same rule on every node sharing a
    /// database, or their resolutions never converge (`store::resolve`).
    fn resolver(&self) -> &dyn Resolver;

    /// A receiver that changes after every commit.
    fn subscribe(&self) -> ChangeReceiver;

    /// Wall time in nanoseconds since the Unix epoch, for status readings (from the host's
    /// environment, never read from the system directly).
    fn now_nanos(&self) -> i64;

    /// Whether the authenticated `peer` may read `scope` of `db` (a declared scope, or Read in
    /// a held syncgroup covering it).
    fn may_read_scope(&self, peer: &Fingerprint, db: &DbName, scope: &Scope) -> Result<bool>;

    /// Whose records of `db` a page from `peer` may carry.
    fn writer_check(&self, peer: &Fingerprint, db: &DbName) -> Result<WriterCheck>;

    /// For `peer`: the versions it lacks of the syncgroups in `wanted` it may read, and this
    /// node's knowledge of them (`NoAccess:` if it may read none).
    fn syncgroup_deltas(
        &self,
        peer: &Fingerprint,
        db: &DbName,
        wanted: &SyncgroupKnowledge,
    ) -> Result<SyncgroupDeltas>;

    /// For `peer`, which asked for the syncgroups in `wanted`: how it lost each one it may no
    /// longer read, among those where this node (not removed itself, settled) holds Admin.
    fn syncgroup_removals(
        &self,
        peer: &Fingerprint,
        db: &DbName,
        wanted: &SyncgroupKnowledge,
    ) -> Result<BTreeMap<SyncgroupId, Removal>>;

    /// Takes removal notices from the authenticated `sender`: each for a syncgroup of `db`
    /// held here (not left) where `sender` holds Admin in this node's copy is recorded
    /// (`LocalState::removed`); the others are ignored.
    fn take_removals(
        &self,
        db: DbName,
        sender: Fingerprint,
        removals: BTreeMap<SyncgroupId, Removal>,
    ) -> impl Future<Output = Result<()>>;

    /// What to ask `peer` for in `db`: the held syncgroups it reads, with this node's knowledge.
    fn syncgroups_shared_with(&self, peer: &Fingerprint, db: &DbName)
    -> Result<SyncgroupKnowledge>;

    /// Applies one data page from the responder `from` (and its knowledge, when it ended the
    /// responder's log) in one commit, with the resume cursor kept for the peer. Inside that
    /// commit's transaction it builds the [`WriterCheck`] (the held syncgroups as read there,
    /// the peer's declared scopes) and runs [`IncomingPage::screen`] with it, so no syncgroup
    /// change can commit between the check and the write. Every conflict the page leaves is
    /// settled there by [`Host::resolver`]. Returns what was applied and what the screen
    /// refused.
    fn apply_page(
        &self,
        db: DbName,
        from: DeviceId,
        page: IncomingPage,
    ) -> impl Future<Output = Result<(Applied, Screened)>>;

    /// Keeps `knowledge` as a report of what `peer` knows of `db` now (its getDeltas
    /// request's knowledge), for history collection (`store::members`), in a commit of its
    /// own.
    fn note_member_knowledge(
        &self,
        db: DbName,
        peer: &Fingerprint,
        knowledge: Knowledge,
    ) -> impl Future<Output = Result<()>>;

    /// Applies one step of a catch-up by state from `peer` (`store::state`) in one commit,
    /// conflicts settled by [`Host::resolver`]; each fetched head's writer is checked inside
    /// that commit's transaction by the [`WriterCheck`] `apply_page` uses (`NoAccess:` for a
    /// head it refuses: nothing is committed).
    fn apply_state(
        &self,
        db: DbName,
        peer: &Fingerprint,
        step: StateStep,
    ) -> impl Future<Output = Result<StateApplied>>;

    /// Takes the epoch notices the responder `announcer` (authenticated as `peer`) sent, if it
    /// may speak for their devices.
    fn take_notices(
        &self,
        db: DbName,
        peer: &Fingerprint,
        announcer: DeviceId,
        notices: Vec<Notice>,
    ) -> impl Future<Output = Result<Taken>>;

    /// Moves this node to a fresh device id unless it already left `expected`.
    fn start_epoch(
        &self,
        expected: DeviceId,
        reason: String,
        clash: Option<(DbName, Generation)>,
    ) -> impl Future<Output = Result<Option<Epoch>>>;

    /// This node's identity (its key's fingerprint).
    fn fingerprint(&self) -> &Fingerprint;

    /// This node as a syncgroup member: device, server or not, advertised address.
    fn member_info(&self) -> MemberInfo;

    /// Takes an admin's answer to this node's join: holds the syncgroup, pending until its
    /// knowledge reaches the checkpoint.
    fn join_reply(&self, reply: JoinReply) -> impl Future<Output = Result<SyncgroupView>>;

    /// Lists the publishee `host` (its member info as it answered) as a member and an admin of
    /// `name`, before publishing there.
    fn admit_host(
        &self,
        name: SyncgroupName,
        host: Fingerprint,
        info: MemberInfo,
    ) -> impl Future<Output = Result<SyncgroupView>>;

    /// Records how the publish at `host` ended (a failure undoes the creation).
    fn publish_reply(
        &self,
        name: SyncgroupName,
        host: Fingerprint,
        outcome: Result<PublishOutcome>,
    ) -> impl Future<Output = Result<SyncgroupView>>;

    /// Serves a join by the authenticated `joiner` (this node an admin of `name`).
    fn join_at_admin(
        &self,
        joiner: Fingerprint,
        name: SyncgroupName,
        info: MemberInfo,
        invite_secret: Option<String>,
    ) -> impl Future<Output = Result<JoinReply>>;

    /// Serves a publish by the authenticated `request.publisher`.
    fn accept_publish(
        &self,
        request: PublishRequest,
    ) -> impl Future<Output = Result<PublishOutcome>>;

    /// Applies syncgroup versions and knowledge relayed by the authenticated `sender`.
    fn apply_syncgroups(
        &self,
        db: DbName,
        sender: Fingerprint,
        records: Vec<SyncgroupRecord>,
        knowledge: SyncgroupKnowledge,
    ) -> impl Future<Output = Result<SyncgroupsApplied>>;
}

/// Decides which records of one database a peer's page may carry: a record's writer (its
/// device) must be bound to a member holding Write in a syncgroup covering the row, unless the
/// peer was declared with that scope (declared peers are trusted for what they share).
/// Two checks are equal when they decide alike (same syncgroups, same declared scopes).
#[derive(Debug, Clone, PartialEq)]
pub struct WriterCheck {
    /// The peer the records come from, as authenticated.
    sender: Fingerprint,
    syncgroups: Vec<Syncgroup>,
    declared: Vec<Scope>,
}

impl WriterCheck {
    /// The rule of these held syncgroups and the scopes declared with `sender`, for records
    /// `sender` hands over.
    pub fn new(
        sender: Fingerprint,
        syncgroups: Vec<Syncgroup>,
        declared: Vec<Scope>,
    ) -> WriterCheck {
        WriterCheck {
            sender,
            syncgroups,
            declared,
        }
    }

    /// Whether `device` may have written its record at `generation` for row `row` of
    /// `table`.
    pub fn allows(&self, device: DeviceId, generation: Generation, table: &str, row: &str) -> bool {
        self.declared.iter().any(|scope| scope.covers(table, row))
            || self.syncgroups.iter().any(|sg| {
                sg.spec.covers(table, row) && sg.device_may_write(device, generation, &self.sender)
            })
    }
}
