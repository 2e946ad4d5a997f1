//! The initiator's sinks on one authenticated link, as Cap'n Proto objects: `DeltaSinkImpl`
//! takes the data pages a responder pushes for one database, `SyncgroupSinkImpl` the
//! syncgroup metadata pages. Each decodes a push (validating it) and hands it, or why it did
//! not decode, to the engine's `sync::link::DataPages` / `SyncgroupPages`, which own the
//! rules: pages in order, one commit each, and none after a failed one.

use std::rc::Rc;

use crate::error::Error;
use crate::genvec::DeviceId;
use crate::rpc::wire::{self, decode_page, decode_syncgroup_page, read_marks};
use crate::schema::sync_capnp::delta_sink;
use crate::sync::host::Host;
use crate::sync::initiator::Push;
use crate::sync::link::{DataPages, SyncgroupPages};
use crate::sync::syncgroups::SyncgroupPage;

/// The capnp face of [`DataPages`]: decodes each push and hands it on.
pub struct DeltaSinkImpl<H: Host> {
    pages: Rc<DataPages<H>>,
}

impl<H: Host> DeltaSinkImpl<H> {
    pub fn new(pages: Rc<DataPages<H>>) -> DeltaSinkImpl<H> {
        DeltaSinkImpl { pages }
    }
}

impl<H: Host> delta_sink::Server for DeltaSinkImpl<H> {
    async fn push(self: Rc<Self>, params: delta_sink::PushParams) -> capnp::Result<()> {
        let push = decode_push(&params).map_err(Error::from);
        Ok(self.pages.push(push).await?)
    }
}

fn decode_push(params: &delta_sink::PushParams) -> Result<Push, capnp::Error> {
    let params = params.get()?;
    let (records, knowledge) = decode_page(params.get_batch()?)?;
    Ok(Push {
        records,
        knowledge,
        remaining: params.get_remaining(),
        responder: DeviceId(params.get_responder_device()),
        resume: wire::read_resume_token(params.get_resume())?,
        marks: read_marks(params.get_mark_generations()?, params.get_mark_digests()?)?,
        notices: wire::read_epoch_notices(params.get_epoch_notices())?,
    })
}

/// The capnp face of [`SyncgroupPages`]: decodes each push and hands it on.
pub struct SyncgroupSinkImpl<H: Host> {
    pages: Rc<SyncgroupPages<H>>,
}

impl<H: Host> SyncgroupSinkImpl<H> {
    pub fn new(pages: Rc<SyncgroupPages<H>>) -> SyncgroupSinkImpl<H> {
        SyncgroupSinkImpl { pages }
    }
}

impl<H: Host> delta_sink::Server for SyncgroupSinkImpl<H> {
    async fn push(self: Rc<Self>, params: delta_sink::PushParams) -> capnp::Result<()> {
        let page = decode_syncgroup_push(&params).map_err(Error::from);
        Ok(self.pages.push(page).await?)
    }
}

fn decode_syncgroup_push(params: &delta_sink::PushParams) -> Result<SyncgroupPage, capnp::Error> {
    let params = params.get()?;
    let mut page = decode_syncgroup_page(params.get_batch()?)?;
    page.more = params.get_remaining() != 0;
    if params.has_removals() {
        page.removals = crate::rpc::syncgroup_wire::read_removals(params.get_removals()?)?;
    }
    Ok(page)
}
