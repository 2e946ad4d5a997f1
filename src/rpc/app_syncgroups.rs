//! `Syncgroups`: the app API's syncgroup management, acting as this node's identity. Each
//! method decodes and validates its arguments, calls the node (and, for create and join,
//! `sync::membership` over `rpc::peer_link::CapnpDialer` to reach the host or admin node), and fills its results.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::node::Node;
use crate::rpc::peer_link::CapnpDialer;
use crate::rpc::syncgroup_wire::{identity, read_spec, write_syncgroup};
use crate::rpc::wire::text;
use crate::schema::service_capnp::{InviteLevel, syncgroup_info, syncgroups};
use crate::sync::membership;
use crate::syncgroup::access::Level;
use crate::syncgroup::invite::{InviteToken, PublishInviteToken};
use crate::syncgroup::{SyncgroupName, SyncgroupView};

/// Serves `Syncgroups` to a logged-in client.
pub struct SyncgroupsImpl {
    node: Arc<Node>,
}

impl SyncgroupsImpl {
    pub fn new(node: Arc<Node>) -> Self {
        SyncgroupsImpl { node }
    }

    /// How this node reaches an admin or a host: TLS and Cap'n Proto.
    fn dialer(&self) -> CapnpDialer {
        CapnpDialer {
            node: self.node.clone(),
        }
    }
}

/// How `SyncgroupInfo.removed` names a destroyed syncgroup (`sg show`'s status).
pub const DESTROYED: &str = crate::syncgroup::DESTROYED_LABEL;

fn name(reader: capnp::Result<capnp::text::Reader<'_>>) -> Result<SyncgroupName, Error> {
    SyncgroupName::parse(text(reader)?)
}

/// Fills a `SyncgroupInfo`: with how this node lost it (an admin's notice, and the
/// syncgroup without this node's entries; or its destroy, by whom and when), and while
/// pending what it waits for (`Node::waiting_for`).
pub fn write_info(node: &Node, view: &SyncgroupView, mut out: syncgroup_info::Builder<'_>) {
    out.set_database(view.record.sg.db.as_str());
    out.set_pending(view.local.pending.is_some());
    out.set_left(view.local.left);
    if let Some(lost) = view.lost() {
        out.set_removed(lost.label);
        out.set_removed_by(lost.by.map(Fingerprint::as_str).unwrap_or_default());
        out.set_removed_at_nanos(lost.at_nanos);
    }
    out.set_waiting_for(node.waiting_for(view).as_str());
    let publisher = view.local.remote_publisher.as_ref();
    out.set_publisher(publisher.map(|p| p.as_str()).unwrap_or_default());
    // Once an admin said this node lost it, the copy as this node holds it: without its own
    // entries (the version that removed it never reaches it). A destroyed one keeps its last
    // members and permissions, for the record.
    let held = view.local.shown_copy(view.record.sg.clone());
    write_syncgroup(&held, out.init_sg());
}

impl syncgroups::Server for SyncgroupsImpl {
    async fn create(
        self: Rc<Self>,
        params: syncgroups::CreateParams,
        mut results: syncgroups::CreateResults,
    ) -> capnp::Result<()> {
        let params = params.get()?;
        let db = DbName::parse(text(params.get_database())?)?;
        let name = name(params.get_name())?;
        let spec = read_spec(params.get_spec()?)?;
        let (host, invite) = publish_target(
            text(params.get_host_fingerprint())?,
            text(params.get_publish_invite())?,
            &name,
            &db,
        )?;
        let hosted_here = name.host() == self.node.peer_address();
        if !hosted_here && host.is_none() {
            return Err(Error::invalid(format!(
                "syncgroup {name} routes to {}, not to this node ({}); give that node's \
                 fingerprint to publish it there",
                name.host(),
                display_address(&self.node.peer_address())
            ))
            .into());
        }
        let mut view = self.node.create_syncgroup(db, name.clone(), spec).await?;
        if let Some(host) = host.filter(|_| !hosted_here) {
            let secret = invite.as_ref().map(|invite| invite.secret.as_str());
            view = membership::publish(&self.node, &self.dialer(), &name, &host, secret).await?;
        }
        write_info(&self.node, &view, results.get().init_sg());
        Ok(())
    }

    async fn join(
        self: Rc<Self>,
        params: syncgroups::JoinParams,
        mut results: syncgroups::JoinResults,
    ) -> capnp::Result<()> {
        let params = params.get()?;
        let view = match (text(params.get_invite())?, text(params.get_name())?) {
            ("", "") => {
                return Err(
                    Error::invalid("join needs an invite token or a syncgroup name").into(),
                );
            }
            ("", name) => {
                let name = SyncgroupName::parse(name)?;
                let admin = identity(text(params.get_admin_fingerprint())?)?;
                let address = name.host().to_owned();
                membership::join(&self.node, &self.dialer(), &admin, &address, &name, None).await?
            }
            (invite, _) => {
                let token = InviteToken::parse(invite)?;
                membership::join(
                    &self.node,
                    &self.dialer(),
                    &token.admin,
                    &token.address,
                    &token.name,
                    Some(&token.secret),
                )
                .await?
            }
        };
        write_info(&self.node, &view, results.get().init_sg());
        Ok(())
    }

    async fn list(
        self: Rc<Self>,
        params: syncgroups::ListParams,
        mut results: syncgroups::ListResults,
    ) -> capnp::Result<()> {
        let db = match text(params.get()?.get_database())? {
            "" => None,
            db => Some(DbName::parse(db)?),
        };
        let views = self.node.list_syncgroups(db.as_ref())?;
        let mut list = results.get().init_syncgroups(views.len() as u32);
        for (i, view) in views.iter().enumerate() {
            write_info(&self.node, view, list.reborrow().get(i as u32));
        }
        Ok(())
    }

    async fn get(
        self: Rc<Self>,
        params: syncgroups::GetParams,
        mut results: syncgroups::GetResults,
    ) -> capnp::Result<()> {
        let view = self.node.syncgroup_view(&name(params.get()?.get_name())?)?;
        write_info(&self.node, &view, results.get().init_sg());
        Ok(())
    }

    async fn set_spec(
        self: Rc<Self>,
        params: syncgroups::SetSpecParams,
        mut results: syncgroups::SetSpecResults,
    ) -> capnp::Result<()> {
        let params = params.get()?;
        let name = name(params.get_name())?;
        let spec = read_spec(params.get_spec()?)?;
        let version = text(params.get_version())?.to_owned();
        let me = self.node.identity().fingerprint().clone();
        let view = self.node.set_spec(me, name, spec, version).await?;
        write_info(&self.node, &view, results.get().init_sg());
        Ok(())
    }

    async fn invite(
        self: Rc<Self>,
        params: syncgroups::InviteParams,
        mut results: syncgroups::InviteResults,
    ) -> capnp::Result<()> {
        let params = params.get()?;
        let name = name(params.get_name())?;
        let level = match params.get_level() {
            Ok(InviteLevel::Read) => Level::Read,
            Ok(InviteLevel::ReadWrite) => Level::ReadWrite,
            Ok(InviteLevel::Admin) => Level::Admin,
            Err(_) => return Err(Error::invalid("unknown invite level").into()),
        };
        let expires_in = expires_in(params.get_expires_in_seconds());
        let token = self
            .node
            .mint_invite(name, level, expires_in, params.get_uses())
            .await?;
        results.get().set_token(token.to_string().as_str());
        Ok(())
    }

    async fn eject(
        self: Rc<Self>,
        params: syncgroups::EjectParams,
        _: syncgroups::EjectResults,
    ) -> capnp::Result<()> {
        let params = params.get()?;
        let name = name(params.get_name())?;
        let member = identity(text(params.get_member())?)?;
        let me = self.node.identity().fingerprint().clone();
        self.node.eject(me, name, member).await?;
        Ok(())
    }

    async fn proposals(
        self: Rc<Self>,
        _: syncgroups::ProposalsParams,
        mut results: syncgroups::ProposalsResults,
    ) -> capnp::Result<()> {
        let proposals = self.node.proposals()?;
        let mut list = results.get().init_proposals(proposals.len() as u32);
        for (i, proposal) in proposals.iter().enumerate() {
            let mut out = list.reborrow().get(i as u32);
            out.set_database(proposal.sg.db.as_str());
            out.set_publisher(proposal.publisher.as_str());
            out.set_received_nanos(proposal.received_nanos);
            write_syncgroup(&proposal.sg, out.init_sg());
        }
        Ok(())
    }

    async fn accept(
        self: Rc<Self>,
        params: syncgroups::AcceptParams,
        mut results: syncgroups::AcceptResults,
    ) -> capnp::Result<()> {
        let name = name(params.get()?.get_name())?;
        let view = self.node.accept_proposal(name).await?;
        write_info(&self.node, &view, results.get().init_sg());
        Ok(())
    }

    async fn reject(
        self: Rc<Self>,
        params: syncgroups::RejectParams,
        _: syncgroups::RejectResults,
    ) -> capnp::Result<()> {
        self.node
            .reject_proposal(name(params.get()?.get_name())?)
            .await?;
        Ok(())
    }

    async fn invite_publish(
        self: Rc<Self>,
        params: syncgroups::InvitePublishParams,
        mut results: syncgroups::InvitePublishResults,
    ) -> capnp::Result<()> {
        let params = params.get()?;
        let db = DbName::parse(text(params.get_database())?)?;
        let expires_in = expires_in(params.get_expires_in_seconds());
        let token = self
            .node
            .mint_publish_invite(db, expires_in, params.get_uses())
            .await?;
        results.get().set_token(token.to_string().as_str());
        Ok(())
    }

    async fn leave(
        self: Rc<Self>,
        params: syncgroups::LeaveParams,
        _: syncgroups::LeaveResults,
    ) -> capnp::Result<()> {
        self.node.leave(name(params.get()?.get_name())?).await?;
        Ok(())
    }

    async fn destroy(
        self: Rc<Self>,
        params: syncgroups::DestroyParams,
        _: syncgroups::DestroyResults,
    ) -> capnp::Result<()> {
        let name = name(params.get()?.get_name())?;
        let me = self.node.identity().fingerprint().clone();
        self.node.destroy(me, name).await?;
        Ok(())
    }
}

/// Where `create` publishes: the host named by fingerprint or by the publish invite (they
/// must agree, and the invite must be for this database at the name's host).
fn publish_target(
    host: &str,
    invite: &str,
    name: &SyncgroupName,
    db: &DbName,
) -> Result<(Option<Fingerprint>, Option<PublishInviteToken>), Error> {
    let invite = match invite {
        "" => None,
        token => Some(PublishInviteToken::parse(token)?),
    };
    let host = match host {
        "" => invite.as_ref().map(|invite| invite.host.clone()),
        host => Some(identity(host)?),
    };
    if let Some(invite) = &invite {
        if Some(&invite.host) != host.as_ref() {
            return Err(Error::invalid(
                "the publish invite was minted by another node than the host given",
            ));
        }
        if invite.address != name.host() || &invite.db != db {
            return Err(Error::invalid(format!(
                "the publish invite is for database {:?} at {}, not {:?} at {}",
                invite.db.as_str(),
                invite.address,
                db.as_str(),
                name.host()
            )));
        }
    }
    Ok((host, invite))
}

/// An invite's lifetime: 0 seconds means no expiry.
fn expires_in(seconds: u64) -> Option<Duration> {
    (seconds != 0).then(|| Duration::from_secs(seconds))
}

fn display_address(address: &str) -> &str {
    if address.is_empty() {
        "no peer listener"
    } else {
        address
    }
}
