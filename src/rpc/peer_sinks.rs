//! The initiator's sinks on one authenticated link: `DeltaSinkImpl` takes the data pages a
//! responder pushes for one database, `SyncgroupSinkImpl` the syncgroup metadata pages. Both
//! apply pushes in order (one commit each) through `sync::initiator` / `sync::syncgroups` and
//! record a failure in the peer's status. Once a push has failed, every later push of the
//! call is refused unread: the responder pipelines pages, and applying one after a page that
//! was not applied would let its knowledge or resume token cover records never applied. A
//! syncgroup sink can announce the end of its first round, which the link waits for before
//! it starts the database's data session.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::error::Error;
use crate::genvec::DeviceId;
use crate::node::Node;
use crate::rpc::syncgroup_wire::{read_syncgroup_knowledge, read_syncgroup_record};
use crate::rpc::wire;
use crate::schema::sync_capnp::delta_sink;
use crate::schema::types_capnp::delta_resp;
use crate::store::Mark;
use crate::sync::initiator::{Push, Session};
use crate::sync::responder::MAX_MARKS;
use crate::sync::syncgroups::{SyncgroupPage, SyncgroupSession};

/// Takes the pages a responder pushes for one session, in order, one commit each.
pub struct DeltaSinkImpl {
    session: Rc<Session<Node>>,
    order: tokio::sync::Mutex<()>,
    failed: Cell<bool>,
}

impl DeltaSinkImpl {
    pub fn new(session: Rc<Session<Node>>) -> DeltaSinkImpl {
        DeltaSinkImpl {
            session,
            order: tokio::sync::Mutex::new(()),
            failed: Cell::new(false),
        }
    }
}

impl delta_sink::Server for DeltaSinkImpl {
    async fn push(self: Rc<Self>, params: delta_sink::PushParams) -> capnp::Result<()> {
        let _in_order = self.order.lock().await;
        refuse_after_failure(&self.failed)?;
        let outcome = async {
            let params = params.get()?;
            let (records, knowledge) = decode_page(params.get_batch()?)?;
            let push = Push {
                records,
                knowledge,
                remaining: params.get_remaining(),
                responder: DeviceId(params.get_responder_device()),
                resume: wire::read_resume_token(params.get_resume())?,
                marks: read_marks(params.get_mark_generations()?, params.get_mark_digests()?)?,
                notices: wire::read_epoch_notices(params.get_epoch_notices())?,
            };
            self.session.receive(push).await?;
            Ok::<_, capnp::Error>(())
        }
        .await;
        if let Err(error) = &outcome {
            self.failed.set(true);
            self.session.fail(&error.extra);
        }
        outcome
    }
}

/// Refuses a push that follows a failed one on the same call.
fn refuse_after_failure(failed: &Cell<bool>) -> capnp::Result<()> {
    if failed.get() {
        return Err(Error::BadState("an earlier page of this call failed".into()).into());
    }
    Ok(())
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

/// Takes the syncgroup metadata pages a responder pushes for one database.
pub struct SyncgroupSinkImpl {
    session: Rc<SyncgroupSession<Node>>,
    order: tokio::sync::Mutex<()>,
    /// Told once the first round is applied: pages are bounded, so a round may take several;
    /// the page that ends it says nothing remains.
    caught_up: RefCell<Option<tokio::sync::oneshot::Sender<()>>>,
    failed: Cell<bool>,
}

impl SyncgroupSinkImpl {
    /// A sink that tells `caught_up` once the responder's first round is applied.
    pub fn new(
        session: Rc<SyncgroupSession<Node>>,
        caught_up: tokio::sync::oneshot::Sender<()>,
    ) -> SyncgroupSinkImpl {
        SyncgroupSinkImpl {
            session,
            order: tokio::sync::Mutex::new(()),
            caught_up: RefCell::new(Some(caught_up)),
            failed: Cell::new(false),
        }
    }
}

impl delta_sink::Server for SyncgroupSinkImpl {
    async fn push(self: Rc<Self>, params: delta_sink::PushParams) -> capnp::Result<()> {
        let _in_order = self.order.lock().await;
        refuse_after_failure(&self.failed)?;
        let outcome = async {
            let params = params.get()?;
            let mut page = decode_syncgroup_page(params.get_batch()?)?;
            page.more = params.get_remaining() != 0;
            let round_ended = !page.more;
            self.session.receive(page).await?;
            if round_ended && let Some(caught_up) = self.caught_up.borrow_mut().take() {
                let _ = caught_up.send(());
            }
            Ok::<_, capnp::Error>(())
        }
        .await;
        if let Err(error) = &outcome {
            self.failed.set(true);
            self.session.fail(&error.extra);
        }
        outcome
    }
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
