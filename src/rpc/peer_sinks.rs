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
use crate::rpc::wire::{self, decode_page, decode_syncgroup_page, read_marks};
use crate::schema::sync_capnp::delta_sink;
use crate::sync::initiator::{Push, Session};
use crate::sync::syncgroups::SyncgroupSession;

/// Takes the pages a responder pushes for one session, in order, one commit each.
pub struct DeltaSinkImpl {
    session: Rc<Session>,
    order: tokio::sync::Mutex<()>,
    failed: Cell<bool>,
}

impl DeltaSinkImpl {
    pub fn new(session: Rc<Session>) -> DeltaSinkImpl {
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

/// Takes the syncgroup metadata pages a responder pushes for one database.
pub struct SyncgroupSinkImpl {
    session: Rc<SyncgroupSession>,
    order: tokio::sync::Mutex<()>,
    /// Told once the first round is applied: pages are bounded, so a round may take several;
    /// the page that ends it says nothing remains.
    caught_up: RefCell<Option<tokio::sync::oneshot::Sender<()>>>,
    failed: Cell<bool>,
}

impl SyncgroupSinkImpl {
    /// A sink that tells `caught_up` once the responder's first round is applied.
    pub fn new(
        session: Rc<SyncgroupSession>,
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
