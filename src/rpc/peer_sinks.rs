//! The initiator's sinks on one authenticated link, as Cap'n Proto objects: `DeltaSinkImpl`
//! takes the data pages a responder pushes for one database, `SyncgroupSinkImpl` the
//! syncgroup metadata pages. Each decodes a push (validating it) and hands it, or why it did
//! not decode, to the engine's `sync::link::DataPages` / `SyncgroupPages`, which own the
//! rules: pages in order, one commit each, and none after a failed one.

use std::rc::Rc;

use crate::error::Error;
use crate::genvec::DeviceId;
use crate::rpc::syncgroup_wire::{read_syncgroup_knowledge, read_syncgroup_record};
use crate::rpc::wire;
use crate::schema::sync_capnp::delta_sink;
use crate::schema::types_capnp::delta_resp;
use crate::store::Mark;
use crate::sync::host::Host;
use crate::sync::initiator::Push;
use crate::sync::link::{DataPages, SyncgroupPages};
use crate::sync::responder::MAX_MARKS;
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
        let push = decode_push(&params).map_err(|error| Error::from_message(&error.extra));
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

/// The responder's marks: generations and digests, pairwise.
fn read_marks(
    generations: capnp::primitive_list::Reader<'_, u64>,
    digests: capnp::primitive_list::Reader<'_, u64>,
) -> Result<Vec<Mark>, capnp::Error> {
    if generations.len() != digests.len() || generations.len() as usize > MAX_MARKS {
        return Err(Error::invalid("mark generations and digests do not pair up").into());
    }
    Ok(generations
        .iter()
        .zip(digests.iter())
        .map(|(generation, digest)| Mark { generation, digest })
        .collect())
}

fn decode_page(
    batch: capnp::struct_list::Reader<'_, delta_resp::Owned>,
) -> Result<
    (
        Vec<crate::store::LogRecord>,
        Option<crate::genvec::Knowledge>,
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
        let page =
            decode_syncgroup_push(&params).map_err(|error| Error::from_message(&error.extra));
        Ok(self.pages.push(page).await?)
    }
}

fn decode_syncgroup_push(params: &delta_sink::PushParams) -> Result<SyncgroupPage, capnp::Error> {
    let params = params.get()?;
    let mut page = decode_syncgroup_page(params.get_batch()?)?;
    page.more = params.get_remaining() != 0;
    Ok(page)
}

fn decode_syncgroup_page(
    batch: capnp::struct_list::Reader<'_, delta_resp::Owned>,
) -> Result<SyncgroupPage, capnp::Error> {
    let mut page = SyncgroupPage::default();
    let mut ended = false;
    for (i, item) in batch.iter().enumerate() {
        if ended {
            return Err(Error::invalid("an item came after the responder's knowledge").into());
        }
        match item.which()? {
            delta_resp::SgRec(record) => page
                .records
                .push(read_syncgroup_record(record?).map_err(|e| in_item(i, e))?),
            delta_resp::RespVec(vector) => {
                page.knowledge = read_syncgroup_knowledge(vector?)?;
                ended = true;
            }
            delta_resp::Rec(_) => {
                return Err(Error::invalid("a data record in a syncgroup page").into());
            }
        }
    }
    Ok(page)
}
