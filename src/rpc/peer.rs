//! The peer `Sync` interface on one authenticated link: `SyncImpl` serves a peer's calls
//! (responder), `DeltaSinkImpl` takes the pages a peer pushes to us (initiator). Both are
//! thin: decode with `rpc::wire`, call `sync::responder` / `sync::initiator`, encode.

use std::rc::Rc;
use std::sync::Arc;

use crate::error::Error;
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::node::Node;
use crate::rpc::push::WindowedPush;
use crate::rpc::wire;
use crate::schema::sync_capnp::{delta_sink, sync};
use crate::schema::types_capnp::{delta_req, delta_resp};
use crate::store::Page;
use crate::sync::genvec::DeviceId;
use crate::sync::initiator::{Push, Session};
use crate::sync::responder::{DeltaRequest, PageSink, Responder};

/// Pushes in flight to a peer's sink before waiting for acknowledgements.
const PUSH_WINDOW: usize = 8;

/// Serves `Sync` to one authenticated peer.
pub struct SyncImpl {
    node: Arc<Node>,
    peer: Fingerprint,
}

impl SyncImpl {
    pub fn new(node: Arc<Node>, peer: Fingerprint) -> SyncImpl {
        SyncImpl { node, peer }
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
}

fn unbuilt(method: &str) -> capnp::Error {
    capnp::Error::unimplemented(format!("Unimplemented: {method} is not built yet"))
}

impl sync::Server for SyncImpl {
    async fn get_deltas(
        self: Rc<Self>,
        params: sync::GetDeltasParams,
        _: sync::GetDeltasResults,
    ) -> capnp::Result<()> {
        let params = params.get()?;
        self.check_claimed(params.get_initiator()?.to_str()?)?;
        let request = decode_request(params.get_req()?)?;
        let mut sink = CapnpPageSink {
            sink: params.get_sink()?,
            pusher: WindowedPush::new(PUSH_WINDOW),
            device: self.node.store().device(),
        };
        Responder::new(self.node.clone(), self.peer.clone())
            .run(&request, &mut sink)
            .await?;
        sink.pusher.finish().await
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
        _: sync::GetTimeParams,
        _: sync::GetTimeResults,
    ) -> capnp::Result<()> {
        Err(unbuilt("GetTime"))
    }

    async fn publish_syncgroup(
        self: Rc<Self>,
        _: sync::PublishSyncgroupParams,
        _: sync::PublishSyncgroupResults,
    ) -> capnp::Result<()> {
        Err(unbuilt("PublishSyncgroup"))
    }

    async fn join_syncgroup_at_admin(
        self: Rc<Self>,
        _: sync::JoinSyncgroupAtAdminParams,
        _: sync::JoinSyncgroupAtAdminResults,
    ) -> capnp::Result<()> {
        Err(unbuilt("JoinSyncgroupAtAdmin"))
    }

    async fn have_blob(
        self: Rc<Self>,
        _: sync::HaveBlobParams,
        _: sync::HaveBlobResults,
    ) -> capnp::Result<()> {
        Err(unbuilt("HaveBlob"))
    }

    async fn fetch_blob(
        self: Rc<Self>,
        _: sync::FetchBlobParams,
        _: sync::FetchBlobResults,
    ) -> capnp::Result<()> {
        Err(unbuilt("FetchBlob"))
    }

    async fn fetch_blob_recipe(
        self: Rc<Self>,
        _: sync::FetchBlobRecipeParams,
        _: sync::FetchBlobRecipeResults,
    ) -> capnp::Result<()> {
        Err(unbuilt("FetchBlobRecipe"))
    }

    async fn fetch_chunks(
        self: Rc<Self>,
        _: sync::FetchChunksParams,
        _: sync::FetchChunksResults,
    ) -> capnp::Result<()> {
        Err(unbuilt("FetchChunks"))
    }
}

fn decode_request(request: delta_req::Reader<'_>) -> Result<DeltaRequest, capnp::Error> {
    let data = match request.which()? {
        delta_req::Data(data) => data?,
        delta_req::Sgs(_) => return Err(unbuilt("GetDeltas for syncgroup metadata")),
    };
    let db = DbName::parse(data.get_db_name()?.to_str()?)?;
    let knowledge = wire::read_knowledge(data.get_init_vec()?)?;
    let device = data.get_initiator_device();
    if device == 0 {
        return Err(Error::invalid("initiatorDevice is 0").into());
    }
    Ok(DeltaRequest {
        db,
        initiator_device: DeviceId(device),
        knowledge,
        live: data.get_live(),
    })
}

/// Sends pages to a peer's `DeltaSink`.
struct CapnpPageSink {
    sink: delta_sink::Client,
    pusher: WindowedPush,
    /// This node's device id, named in every push.
    device: DeviceId,
}

impl PageSink for CapnpPageSink {
    async fn send(&mut self, page: Page) -> crate::error::Result<()> {
        let mut request = self
            .sink
            .client
            .new_call::<delta_sink::push_params::Owned, capnp::any_pointer::Owned>(
                <delta_sink::Client as capnp::traits::HasTypeId>::TYPE_ID,
                0,
                None,
            );
        request.get().set_remaining(page.remaining);
        request.get().set_responder_device(self.device.0);
        let count = page.records.len() + usize::from(page.knowledge.is_some());
        let mut batch = request.get().init_batch(count as u32);
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
        self.pusher
            .send(request)
            .await
            .map_err(|error| Error::Internal(format!("pushing to the peer: {}", error.extra)))
    }
}

/// Takes the pages a responder pushes for one session, in order, one commit each.
pub struct DeltaSinkImpl {
    session: Session,
    order: tokio::sync::Mutex<()>,
}

impl DeltaSinkImpl {
    pub fn new(session: Session) -> DeltaSinkImpl {
        DeltaSinkImpl {
            session,
            order: tokio::sync::Mutex::new(()),
        }
    }
}

impl delta_sink::Server for DeltaSinkImpl {
    async fn push(self: Rc<Self>, params: delta_sink::PushParams) -> capnp::Result<()> {
        let _in_order = self.order.lock().await;
        let outcome = async {
            let params = params.get()?;
            let (records, knowledge) = decode_page(params.get_batch()?)?;
            let push = Push {
                records,
                knowledge,
                remaining: params.get_remaining(),
                responder: DeviceId(params.get_responder_device()),
            };
            self.session.receive(push).await?;
            Ok::<_, capnp::Error>(())
        }
        .await;
        if let Err(error) = &outcome {
            self.session.fail(&error.extra);
        }
        outcome
    }
}

fn decode_page(
    batch: capnp::struct_list::Reader<'_, delta_resp::Owned>,
) -> Result<
    (
        Vec<crate::store::LogRecord>,
        Option<crate::sync::genvec::Knowledge>,
    ),
    capnp::Error,
> {
    let mut records = Vec::with_capacity(batch.len() as usize);
    let mut knowledge = None;
    for (i, item) in batch.iter().enumerate() {
        match item.which()? {
            delta_resp::Rec(record) => {
                if knowledge.is_some() {
                    return Err(
                        Error::invalid("a record came after the responder's knowledge").into(),
                    );
                }
                records.push(wire::read_record(record?).map_err(|e| in_item(i, e))?);
            }
            delta_resp::SgRec(_) => {
                return Err(Error::invalid("a syncgroup record in a data page").into());
            }
            delta_resp::RespVec(vector) => {
                if knowledge.is_some() {
                    return Err(Error::invalid("two knowledge items in one batch").into());
                }
                knowledge = Some(wire::read_knowledge(vector?)?);
            }
        }
    }
    Ok((records, knowledge))
}

fn in_item(index: usize, error: Error) -> capnp::Error {
    let message = error.to_string();
    match message.split_once(": ") {
        Some((id, rest)) => capnp::Error::failed(format!("{id}: batch item {index}: {rest}")),
        None => capnp::Error::failed(message),
    }
}
