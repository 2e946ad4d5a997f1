//! Catch-up by state on the wire (`Sync.reconcileState`, `StateSession`): thin adapters of
//! `sync::catchup`. The responder side serves a [`StateResponder`] as a `StateSession`
//! capability and pushes fetched heads into the caller's `DeltaSink` through
//! [`WindowedPush`], bounded as data pages; the initiator side is [`CapnpState`], the
//! engine's [`StateSession`] over that capability, and [`StateSinkImpl`], the sink that
//! decodes the pushed pages for [`StatePages`].

use std::rc::Rc;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::genvec::{DeviceId, Scope};
use crate::identity::Fingerprint;
use crate::names::{DbName, TableName};
use crate::node::Node;
use crate::paging;
use crate::rpc::limits::ConnectionBudget;
use crate::rpc::peer::write_page;
use crate::rpc::push::WindowedPush;
use crate::rpc::wire::{self, decode_page, read_knowledge, write_knowledge};
use crate::schema::sync_capnp::{delta_sink, state_session, sync};
use crate::store::Page;
use crate::sync::catchup::{
    MAX_FETCH_IDS, StateBegin, StatePages, StateRequest, StateResponder, StateSession,
};
use crate::sync::host::Host;

/// The most scopes one `reconcileState` may name.
pub const MAX_STATE_SCOPES: usize = 1024;
/// Fetched pages in flight to the caller's sink before waiting for acknowledgements.
const PUSH_WINDOW: usize = 8;

/// Serves `Sync.reconcileState` for the authenticated `peer`: decodes the request, opens the
/// session (its access check and snapshot) and fills the results.
pub fn serve_reconcile_state(
    node: &Arc<Node>,
    peer: &Fingerprint,
    budget: &Rc<ConnectionBudget>,
    params: sync::reconcile_state_params::Reader<'_>,
    mut results: sync::reconcile_state_results::Builder<'_>,
) -> Result<()> {
    let request = read_state_request(params)?;
    let (begin, responder) = StateResponder::begin(node.clone(), peer.clone(), request)?;
    results.set_responder_device(begin.responder.0);
    write_knowledge(&begin.knowledge, results.reborrow().init_knowledge());
    write_knowledge(&begin.floor, results.reborrow().init_floor());
    let session = StateSessionImpl {
        responder,
        budget: budget.clone(),
    };
    results.set_session(capnp_rpc::new_client::<state_session::Client, _>(session));
    Ok(())
}

fn read_state_request(params: sync::reconcile_state_params::Reader<'_>) -> Result<StateRequest> {
    let db = DbName::parse(wire::text(params.get_db())?)?;
    let list = params.get_scopes().map_err(malformed)?;
    if list.len() as usize > MAX_STATE_SCOPES {
        return Err(Error::invalid(format!(
            "reconcileState names {} scopes, over {MAX_STATE_SCOPES}",
            list.len()
        )));
    }
    let mut scopes = Vec::with_capacity(list.len() as usize);
    for bytes in list.iter() {
        let scope = Scope::from_bytes(bytes.map_err(malformed)?)
            .map_err(|e| Error::invalid(format!("scope: {e}")))?;
        TableName::parse(&scope.table)?;
        scopes.push(scope);
    }
    Ok(StateRequest { db, scopes })
}

fn malformed(error: capnp::Error) -> Error {
    Error::invalid(format!("malformed message: {}", error.extra))
}

/// One catch-up session, as the capability the initiator holds.
struct StateSessionImpl {
    responder: StateResponder<Node>,
    budget: Rc<ConnectionBudget>,
}

impl state_session::Server for StateSessionImpl {
    async fn reconcile(
        self: Rc<Self>,
        params: state_session::ReconcileParams,
        mut results: state_session::ReconcileResults,
    ) -> capnp::Result<()> {
        let message = params.get()?.get_message()?;
        let answer = self.responder.reconcile(message)?;
        results.get().set_message(&answer);
        Ok(())
    }

    async fn fetch(
        self: Rc<Self>,
        params: state_session::FetchParams,
        _: state_session::FetchResults,
    ) -> capnp::Result<()> {
        let params = params.get()?;
        let list = params.get_ids()?;
        if list.len() as usize > MAX_FETCH_IDS {
            return Err(Error::invalid(format!(
                "a fetch of {} ids, over {MAX_FETCH_IDS}",
                list.len()
            ))
            .into());
        }
        let mut ids = Vec::with_capacity(list.len() as usize);
        for id in list.iter() {
            let id: [u8; 32] = id?
                .try_into()
                .map_err(|_| Error::invalid("a fetched id is not 32 bytes"))?;
            ids.push(id);
        }
        let rows = self.responder.rows_for(&ids)?;
        let sink = params.get_sink()?;
        let mut pusher = WindowedPush::ramped(self.budget.clone(), PUSH_WINDOW)?;
        let device = self.responder_device();
        let mut from = 0;
        while from < rows.len() {
            let room = pusher.room(paging::DATA.usual_room()).await?;
            let (records, next) = self.responder.page(&rows, from)?;
            from = next;
            let page = Page {
                records,
                ..Page::default()
            };
            let mut request = sink.push_request();
            request.get().set_responder_device(device.0);
            write_page(&page, request.get());
            pusher.send(room, request).await?;
        }
        pusher.finish().await
    }
}

impl StateSessionImpl {
    fn responder_device(&self) -> DeviceId {
        self.responder.device()
    }
}

/// The engine's [`StateSession`] over a peer's `StateSession` capability.
pub struct CapnpState {
    pub(crate) session: state_session::Client,
}

/// Reads `reconcileState`'s answer.
pub(crate) fn read_state_answer(
    results: sync::reconcile_state_results::Reader<'_>,
) -> Result<(StateBegin, CapnpState)> {
    let device = results.get_responder_device();
    let begin = StateBegin {
        responder: DeviceId(device),
        knowledge: read_knowledge(results.get_knowledge().map_err(malformed)?)?,
        floor: read_knowledge(results.get_floor().map_err(malformed)?)?,
    };
    let session = results.get_session().map_err(malformed)?;
    Ok((begin, CapnpState { session }))
}

impl StateSession for CapnpState {
    async fn reconcile(&self, message: Vec<u8>) -> Result<Vec<u8>> {
        let mut call = self.session.reconcile_request();
        call.get().set_message(&message);
        let answer = call.send().promise.await?;
        let answer = answer.get()?.get_message()?;
        if answer.len() as u64 > crate::sync::catchup::FRAME_LIMIT {
            return Err(Error::invalid(format!(
                "a reconcile answer of {} bytes, over the frame limit",
                answer.len()
            )));
        }
        Ok(answer.to_vec())
    }

    async fn fetch<H: Host>(&self, ids: Vec<[u8; 32]>, pages: Rc<StatePages<H>>) -> Result<()> {
        let mut call = self.session.fetch_request();
        {
            let mut params = call.get();
            let mut list = params.reborrow().init_ids(ids.len() as u32);
            for (i, id) in ids.iter().enumerate() {
                list.set(i as u32, id);
            }
            params.set_sink(capnp_rpc::new_client::<delta_sink::Client, _>(
                StateSinkImpl { pages },
            ));
        }
        call.send().promise.await.map(drop).map_err(Error::from)
    }
}

/// The capnp face of [`StatePages`]: decodes each pushed page of fetched heads.
pub struct StateSinkImpl<H: Host> {
    pages: Rc<StatePages<H>>,
}

impl<H: Host> delta_sink::Server for StateSinkImpl<H> {
    async fn push(self: Rc<Self>, params: delta_sink::PushParams) -> capnp::Result<()> {
        let page = decode_state_push(&params).map_err(Error::from);
        Ok(self.pages.push(page).await?)
    }
}

fn decode_state_push(
    params: &delta_sink::PushParams,
) -> std::result::Result<Vec<crate::store::LogRecord>, capnp::Error> {
    let (records, knowledge) = decode_page(params.get()?.get_batch()?)?;
    if knowledge.is_some() {
        return Err(
            Error::invalid("a fetched page of a catch-up by state carries knowledge").into(),
        );
    }
    Ok(records)
}
