//! The `Sync` capability a peer holds on one authenticated link, and the `SyncgroupAdmin`
//! capabilities it can obtain there. Both are bound to the peer's proven identity (its
//! certificate key's fingerprint) and hand out only what that identity is entitled to, checked
//! on every call against the current permissions, so a revocation makes the next call fail
//! with `NoAccess:`. ARCHITECTURE.md has the table of who may call what. The methods are thin:
//! decode with `rpc::wire` / `rpc::syncgroup_wire`, call the node or `sync`, encode.

use std::rc::Rc;
use std::sync::Arc;

use crate::error::Error;
use crate::genvec::{DeviceId, Generation};
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::node::{Node, PublishOutcome, PublishRequest};
use crate::paging;
use crate::rpc::limits::ConnectionBudget;
use crate::rpc::push::{PageRoom, WindowedPush};
use crate::rpc::syncgroup_wire::{
    identity, read_member_info, read_spec, read_syncgroup, read_syncgroup_knowledge,
    write_removals, write_syncgroup, write_syncgroup_knowledge, write_syncgroup_record,
};
use crate::rpc::wire::{self, read_vector, write_vector};
use crate::schema::sync_capnp::{delta_sink, sync, syncgroup_admin};
use crate::schema::types_capnp::data_delta_req;
use crate::store::{Page, Version};
use crate::sync::responder::{DeltaRequest, MAX_MARKS, PageSink, Responder};
use crate::sync::syncgroups::{SyncgroupPage, SyncgroupSink, respond};
use crate::syncgroup::SyncgroupName;
use crate::syncgroup::invite::InviteToken;

/// Pushes in flight to a peer's sink before waiting for acknowledgements.
const PUSH_WINDOW: usize = 8;
/// The room reserved before reading a data page (`paging::DATA`): the page limit plus one
/// largest record, plus every record's overhead (about 6.8 MiB, well under the connection's
/// 16 MiB, so pages pipeline). A page keeping an app batch whole can be bigger (at most
/// `paging::DATA.room()`): it grows its reservation before it is sent.
const DATA_PAGE_ROOM: usize = paging::DATA.usual_room();
/// The room reserved before reading a syncgroup metadata page (small; a larger page grows its
/// reservation before it is sent, up to `paging::SYNCGROUPS.room()`).
const SYNCGROUP_PAGE_ROOM: usize = 256 << 10;

/// Serves `Sync` to one authenticated peer.
pub struct SyncImpl {
    node: Arc<Node>,
    peer: Fingerprint,
    /// The connection's limits: every push to the peer's sinks takes room here.
    budget: Rc<ConnectionBudget>,
}

impl SyncImpl {
    /// `Sync` for `peer` on the connection whose limits are `budget`.
    pub fn new(node: Arc<Node>, peer: Fingerprint, budget: Rc<ConnectionBudget>) -> SyncImpl {
        SyncImpl { node, peer, budget }
    }

    /// Caller names in arguments must be empty or the authenticated identity.
    fn check_claimed(&self, claimed: &str) -> Result<(), Error> {
        if claimed.is_empty() || claimed == self.peer.as_str() {
            Ok(())
        } else {
            Err(Error::NoAccess(format!(
                "caller claims to be {claimed} but authenticated as {}",
                self.peer
            )))
        }
    }

    /// GetTime and the blob methods need membership of a syncgroup here (or a declared peer).
    fn check_member(&self, method: &str) -> Result<(), Error> {
        if self.node.is_member(&self.peer)? {
            Ok(())
        } else {
            Err(Error::NoAccess(format!(
                "{method} needs membership of a syncgroup here; {} has none",
                self.peer
            )))
        }
    }

    async fn data_deltas(
        &self,
        data: data_delta_req::Reader<'_>,
        sink: delta_sink::Client,
    ) -> capnp::Result<()> {
        let request = decode_request(data)?;
        let mut sink = CapnpPageSink {
            sink,
            pusher: WindowedPush::ramped(self.budget.clone(), PUSH_WINDOW)?,
            device: self.node.store().device(),
        };
        Responder::new(self.node.clone(), self.peer.clone())
            .run(&request, &mut sink)
            .await?;
        sink.pusher.finish().await
    }

    async fn syncgroup_deltas(
        &self,
        db: DbName,
        known: crate::store::SyncgroupKnowledge,
        live: bool,
        sink: delta_sink::Client,
    ) -> capnp::Result<()> {
        let mut sink = CapnpSyncgroupSink {
            sink,
            pusher: WindowedPush::new(self.budget.clone(), PUSH_WINDOW)?,
            device: self.node.store().device(),
        };
        // A call refused after pushing removal notices still waits for them to be taken.
        let responded = respond(&*self.node, &self.peer, &db, known, live, &mut sink).await;
        let finished = sink.pusher.finish().await;
        responded?;
        finished
    }
}

fn unbuilt(method: &str) -> capnp::Error {
    capnp::Error::unimplemented(format!("Unimplemented: {method} is not built yet"))
}

fn syncgroup_name(reader: capnp::Result<capnp::text::Reader<'_>>) -> Result<SyncgroupName, Error> {
    SyncgroupName::parse(wire::text(reader)?)
}

impl sync::Server for SyncImpl {
    async fn get_deltas(
        self: Rc<Self>,
        params: sync::GetDeltasParams,
        _: sync::GetDeltasResults,
    ) -> capnp::Result<()> {
        use crate::schema::types_capnp::delta_req;
        let params = params.get()?;
        self.check_claimed(wire::text(params.get_initiator())?)?;
        let sink = params.get_sink()?;
        match params.get_req()?.which()? {
            delta_req::Data(data) => self.data_deltas(data?, sink).await,
            delta_req::Sgs(sgs) => {
                let sgs = sgs?;
                let db = DbName::parse(wire::text(sgs.get_db_name())?)?;
                let known = read_syncgroup_knowledge(sgs.get_init_vec()?)?;
                self.syncgroup_deltas(db, known, sgs.get_live(), sink).await
            }
        }
    }

    async fn device_info(
        self: Rc<Self>,
        _: sync::DeviceInfoParams,
        mut results: sync::DeviceInfoResults,
    ) -> capnp::Result<()> {
        let mut results = results.get();
        results.set_device_id(self.node.store().device().0);
        results.set_identity(self.node.identity().fingerprint().as_str());
        Ok(())
    }

    async fn get_time(
        self: Rc<Self>,
        params: sync::GetTimeParams,
        mut results: sync::GetTimeResults,
    ) -> capnp::Result<()> {
        // Physical time, not an HLC reading: a reading dragged ahead by a peer's fast clock
        // would hide the very offset the caller measures.
        let received = self.node.store().clock().physical_nanos();
        let params = params.get()?;
        self.check_claimed(wire::text(params.get_initiator())?)?;
        self.check_member("GetTime")?;
        let mut response = results.get().init_resp();
        response.set_orig_ts(params.get_req()?.get_send_ts());
        response.set_recv_ts(received);
        response.set_send_ts(self.node.store().clock().physical_nanos());
        Ok(())
    }

    async fn publish_syncgroup(
        self: Rc<Self>,
        params: sync::PublishSyncgroupParams,
        mut results: sync::PublishSyncgroupResults,
    ) -> capnp::Result<()> {
        let params = params.get()?;
        self.check_claimed(wire::text(params.get_publisher())?)?;
        let invite_secret = match wire::text(params.get_invite())? {
            "" => None,
            secret => Some(InviteToken::check_secret(secret)?),
        };
        let request = PublishRequest {
            publisher: self.peer.clone(),
            sg: read_syncgroup(params.get_sg()?)?,
            version: Version::from_hex(wire::text(params.get_version())?)?,
            checkpoint: read_vector(params.get_genvec()?)?,
            invite_secret,
        };
        let outcome = self.node.accept_publish(request).await?;
        let mut results = results.get();
        results.set_publishee(self.node.identity().fingerprint().as_str());
        results.set_proposed(outcome == PublishOutcome::Proposed);
        Ok(())
    }

    async fn join_syncgroup_at_admin(
        self: Rc<Self>,
        params: sync::JoinSyncgroupAtAdminParams,
        mut results: sync::JoinSyncgroupAtAdminResults,
    ) -> capnp::Result<()> {
        let params = params.get()?;
        self.check_claimed(wire::text(params.get_joiner_name())?)?;
        let name = syncgroup_name(params.get_sg_name())?;
        let info = read_member_info(params.get_my_info()?)?;
        let invite = match wire::text(params.get_invite())? {
            "" => None,
            secret => Some(InviteToken::check_secret(secret)?),
        };
        let reply = self
            .node
            .join_at_admin(self.peer.clone(), name, info, invite)
            .await?;
        let mut results = results.get();
        write_syncgroup(&reply.sg, results.reborrow().init_sg());
        results.set_version(reply.version.to_hex().as_str());
        write_vector(&reply.checkpoint, results.init_genvec());
        Ok(())
    }

    async fn syncgroup_admin(
        self: Rc<Self>,
        params: sync::SyncgroupAdminParams,
        mut results: sync::SyncgroupAdminResults,
    ) -> capnp::Result<()> {
        let name = syncgroup_name(params.get()?.get_sg_name())?;
        self.node.check_admin(&self.peer, &name)?;
        let admin = SyncgroupAdminImpl {
            node: self.node.clone(),
            peer: self.peer.clone(),
            name,
        };
        results
            .get()
            .set_admin(capnp_rpc::new_client::<syncgroup_admin::Client, _>(admin));
        Ok(())
    }

    async fn reconcile_state(
        self: Rc<Self>,
        params: sync::ReconcileStateParams,
        mut results: sync::ReconcileStateResults,
    ) -> capnp::Result<()> {
        crate::rpc::peer_state::serve_reconcile_state(
            &self.node,
            &self.peer,
            &self.budget,
            params.get()?,
            results.get(),
        )?;
        Ok(())
    }

    async fn have_blob(
        self: Rc<Self>,
        _: sync::HaveBlobParams,
        _: sync::HaveBlobResults,
    ) -> capnp::Result<()> {
        self.check_member("HaveBlob")?;
        Err(unbuilt("HaveBlob"))
    }

    async fn fetch_blob(
        self: Rc<Self>,
        _: sync::FetchBlobParams,
        _: sync::FetchBlobResults,
    ) -> capnp::Result<()> {
        self.check_member("FetchBlob")?;
        Err(unbuilt("FetchBlob"))
    }

    async fn fetch_blob_recipe(
        self: Rc<Self>,
        _: sync::FetchBlobRecipeParams,
        _: sync::FetchBlobRecipeResults,
    ) -> capnp::Result<()> {
        self.check_member("FetchBlobRecipe")?;
        Err(unbuilt("FetchBlobRecipe"))
    }

    async fn fetch_chunks(
        self: Rc<Self>,
        _: sync::FetchChunksParams,
        _: sync::FetchChunksResults,
    ) -> capnp::Result<()> {
        self.check_member("FetchChunks")?;
        Err(unbuilt("FetchChunks"))
    }
}

/// One syncgroup's Admin capability, held by `peer`; every call re-checks that it still is
/// an admin.
struct SyncgroupAdminImpl {
    node: Arc<Node>,
    peer: Fingerprint,
    name: SyncgroupName,
}

impl syncgroup_admin::Server for SyncgroupAdminImpl {
    async fn get_syncgroup(
        self: Rc<Self>,
        _: syncgroup_admin::GetSyncgroupParams,
        mut results: syncgroup_admin::GetSyncgroupResults,
    ) -> capnp::Result<()> {
        let view = self.node.check_admin(&self.peer, &self.name)?;
        let mut results = results.get();
        write_syncgroup(&view.record.sg, results.reborrow().init_sg());
        results.set_version(view.record.stamp.version.to_hex().as_str());
        Ok(())
    }

    async fn set_spec(
        self: Rc<Self>,
        params: syncgroup_admin::SetSpecParams,
        mut results: syncgroup_admin::SetSpecResults,
    ) -> capnp::Result<()> {
        let params = params.get()?;
        let spec = read_spec(params.get_spec()?)?;
        let version = wire::text(params.get_version())?.to_owned();
        let view = self
            .node
            .set_spec(self.peer.clone(), self.name.clone(), spec, version)
            .await?;
        results
            .get()
            .set_version(view.record.sg.spec_version.as_str());
        Ok(())
    }

    async fn eject(
        self: Rc<Self>,
        params: syncgroup_admin::EjectParams,
        _: syncgroup_admin::EjectResults,
    ) -> capnp::Result<()> {
        let member = identity(wire::text(params.get()?.get_member())?)?;
        self.node
            .eject(self.peer.clone(), self.name.clone(), member)
            .await?;
        Ok(())
    }
}

fn decode_request(data: data_delta_req::Reader<'_>) -> Result<DeltaRequest, capnp::Error> {
    let db = DbName::parse(wire::text(data.get_db_name())?)?;
    let knowledge = wire::read_knowledge(data.get_init_vec()?)?;
    let mark_at: Vec<Generation> = data
        .get_mark_generations()?
        .iter()
        .map(Generation::new)
        .collect();
    if mark_at.len() > MAX_MARKS {
        return Err(Error::invalid(format!("more than {MAX_MARKS} mark generations")).into());
    }
    let device = data.get_initiator_device();
    if device == 0 {
        return Err(Error::invalid("initiatorDevice is 0").into());
    }
    Ok(DeltaRequest {
        db,
        initiator_device: DeviceId(device),
        knowledge,
        live: data.get_live(),
        resume: wire::read_resume_token(data.get_resume())?,
        mark_at,
        floor: match data.has_init_floor() {
            true => wire::read_knowledge(data.get_init_floor()?)?,
            false => crate::genvec::Knowledge::new(),
        },
    })
}

/// A fresh `push` call on a peer's `DeltaSink`, naming this node's device.
fn push_request(
    sink: &delta_sink::Client,
    device: DeviceId,
    remaining: u64,
) -> capnp::capability::StreamingRequest<delta_sink::push_params::Owned> {
    let mut request = sink.push_request();
    request.get().set_remaining(remaining);
    request.get().set_responder_device(device.0);
    request
}

fn pushed(error: capnp::Error) -> Error {
    Error::Internal(format!("pushing to the peer: {}", error.extra))
}

/// Sends data pages to a peer's `DeltaSink`.
struct CapnpPageSink {
    sink: delta_sink::Client,
    pusher: WindowedPush,
    /// This node's device id, named in every push.
    device: DeviceId,
}

impl PageSink for CapnpPageSink {
    type Room = PageRoom;

    async fn room(&mut self) -> crate::error::Result<PageRoom> {
        self.pusher.room(DATA_PAGE_ROOM).await.map_err(pushed)
    }

    async fn send(&mut self, room: PageRoom, page: Page) -> crate::error::Result<()> {
        let mut request = push_request(&self.sink, self.device, page.remaining);
        write_page(&page, request.get());
        self.pusher.send(room, request).await.map_err(pushed)
    }
}

/// Fills a push's parameters with a data page: its resume token, marks and epoch notices, its
/// records, then its knowledge if any.
pub(crate) fn write_page(page: &Page, mut params: delta_sink::push_params::Builder<'_>) {
    params.set_resume(&page.resume);
    let marks = &page.initiator_marks;
    let mut generations = params.reborrow().init_mark_generations(marks.len() as u32);
    for (i, mark) in marks.iter().enumerate() {
        generations.set(i as u32, mark.generation.get());
    }
    let mut digests = params.reborrow().init_mark_digests(marks.len() as u32);
    for (i, mark) in marks.iter().enumerate() {
        digests.set(i as u32, mark.digest);
    }
    let mut notices = params
        .reborrow()
        .init_epoch_notices(page.notices.len() as u32);
    for (i, notice) in page.notices.iter().enumerate() {
        let mut entry = notices.reborrow().get(i as u32);
        entry.set_old_device(notice.old.0);
        entry.set_safe_generation(notice.safe.get());
    }
    let count = page.records.len() + usize::from(page.knowledge.is_some());
    let mut batch = params.init_batch(count as u32);
    for (i, record) in page.records.iter().enumerate() {
        wire::write_record(record, batch.reborrow().get(i as u32).init_rec());
    }
    if let Some(knowledge) = &page.knowledge {
        wire::write_knowledge(
            knowledge,
            batch
                .reborrow()
                .get(page.records.len() as u32)
                .init_resp_vec(),
        );
    }
}

/// Sends syncgroup metadata pages to a peer's `DeltaSink`.
struct CapnpSyncgroupSink {
    sink: delta_sink::Client,
    pusher: WindowedPush,
    device: DeviceId,
}

impl SyncgroupSink for CapnpSyncgroupSink {
    type Room = PageRoom;

    async fn room(&mut self) -> crate::error::Result<PageRoom> {
        self.pusher.room(SYNCGROUP_PAGE_ROOM).await.map_err(pushed)
    }

    async fn send(&mut self, room: PageRoom, page: SyncgroupPage) -> crate::error::Result<()> {
        let mut request = push_request(&self.sink, self.device, u64::from(page.more));
        let mut batch = request.get().init_batch(page.records.len() as u32 + 1);
        for (i, record) in page.records.iter().enumerate() {
            write_syncgroup_record(record, batch.reborrow().get(i as u32).init_sg_rec());
        }
        write_syncgroup_knowledge(
            &page.knowledge,
            batch
                .reborrow()
                .get(page.records.len() as u32)
                .init_resp_vec(),
        );
        write_removals(
            &page.removals,
            request.get().init_removals(page.removals.len() as u32),
        );
        self.pusher.send(room, request).await.map_err(pushed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Hlc;
    use crate::names::{MAX_BATCH_BYTES, MAX_BATCH_OPS, MAX_KEY_BYTES, MAX_NAME_BYTES};
    use crate::store::{DagNode, LogRecord, RecordContent};

    /// A record with the longest names, one parent and `value_len` value bytes.
    fn record(generation: u64, batch_id: u64, value_len: usize) -> LogRecord {
        LogRecord {
            table: "t".repeat(MAX_NAME_BYTES),
            row: format!("{generation:0>width$}", width = MAX_KEY_BYTES),
            version: Version(generation),
            content: RecordContent::Node(DagNode {
                parents: vec![Version(u64::MAX - generation)],
                device: DeviceId(u64::MAX),
                generation: Generation::new(generation),
                hlc: Hlc {
                    wall_nanos: i64::MAX,
                    logical: u32::MAX,
                },
                deleted: false,
                batch_id,
                batch_count: MAX_BATCH_OPS as u64,
                value: vec![7; value_len],
                linked: Vec::new(),
            }),
        }
    }

    #[test]
    fn the_largest_data_page_with_a_whole_batch_fits_its_bound_under_the_message_limit() {
        let limit = paging::DATA.limit;
        let plain = record(0, 0, 0).payload_len();
        let mut records: Vec<_> = (1..limit.items as u64)
            .map(|generation| record(generation, 0, 0))
            .collect();
        assert!(records.len() * plain <= limit.bytes);
        let names = MAX_NAME_BYTES + MAX_KEY_BYTES;
        let value = MAX_BATCH_BYTES / MAX_BATCH_OPS - names;
        records.extend((0..MAX_BATCH_OPS as u64).map(|i| record(limit.items as u64 + i, 9, value)));
        let page = Page {
            records,
            initiator_marks: vec![
                crate::store::Mark {
                    generation: Generation::MAX,
                    digest: u64::MAX
                };
                crate::sync::responder::MAX_MARKS
            ],
            notices: vec![
                crate::store::Notice {
                    old: DeviceId(u64::MAX),
                    safe: Generation::MAX
                };
                crate::store::MAX_NOTICES
            ],
            ..Page::default()
        };
        let mut message = capnp::message::Builder::new_default();
        write_page(&page, message.init_root());
        let bytes = message.size_in_words() * 8 + paging::MESSAGE_OVERHEAD;
        let bound = paging::DATA.room();
        assert!(bytes <= bound, "{bytes} > {bound}");
    }
}
