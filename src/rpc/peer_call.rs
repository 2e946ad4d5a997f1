//! One-off calls to another node's `Sync` on this node's behalf: joining a syncgroup at an
//! admin, and publishing one at the node its name routes to. Each dials the node, pins its
//! fingerprint, makes its calls, hangs up, and hands the answer to the node
//! (`Node::join_reply`, `Node::publish_reply`). Errors from the other node keep their ids;
//! an unreachable node is `ConnFail`.

use std::sync::Arc;

use capnp_rpc::rpc_twoparty_capnp::Side;

use crate::error::{Error, Result};
use crate::identity::Fingerprint;
use crate::node::{JoinReply, Node, PublishOutcome};
use crate::rpc::client::error_message;
use crate::rpc::disconnect;
use crate::rpc::peer_link::{dial, peer_budget, rpc_system};
use crate::rpc::syncgroup_wire::{read_syncgroup, write_member_info, write_syncgroup};
use crate::rpc::wire::{self, read_vector, write_vector};
use crate::schema::sync_capnp::sync;
use crate::store::Version;
use crate::syncgroup::{MemberInfo, SyncgroupName, SyncgroupView};

/// Joins `name` at the admin node `admin` (at `address`), redeeming `invite_secret` if given.
pub async fn join(
    node: &Arc<Node>,
    admin: &Fingerprint,
    address: &str,
    name: &SyncgroupName,
    invite_secret: Option<&str>,
) -> Result<SyncgroupView> {
    if admin == node.identity().fingerprint() {
        return Err(Error::invalid("a node cannot join at itself"));
    }
    let info = node.member_info();
    let me = node.identity().fingerprint().clone();
    let reply = with_sync(node, address, admin, async |remote| {
        let mut call = remote.join_syncgroup_at_admin_request();
        {
            let mut params = call.get();
            params.set_sg_name(name.as_str());
            params.set_joiner_name(me.as_str());
            params.set_invite(invite_secret.unwrap_or_default());
            write_member_info(&info, params.init_my_info());
        }
        let response = call.send().promise.await.map_err(remote_error)?;
        let results = response.get().map_err(remote_error)?;
        Ok(JoinReply {
            sg: read_syncgroup(results.get_sg().map_err(remote_error)?)?,
            version: Version::from_hex(wire::text(results.get_version())?)?,
            checkpoint: read_vector(results.get_genvec().map_err(remote_error)?)?,
        })
    })
    .await?;
    if &reply.sg.name != name {
        return Err(Error::invalid(format!(
            "the admin answered for syncgroup {} instead of {name}",
            reply.sg.name
        )));
    }
    node.join_reply(reply).await
}

/// Publishes the syncgroup `name` (created here) at its host `host`, with the secret of a
/// publish invite that host minted if given, and records the outcome (accepted, or proposed
/// to the host's operator). The host is listed as a member and an admin first, so the
/// version it receives already makes it one.
pub async fn publish(
    node: &Arc<Node>,
    name: &SyncgroupName,
    host: &Fingerprint,
    invite_secret: Option<&str>,
) -> Result<SyncgroupView> {
    let me = node.identity().fingerprint().clone();
    let address = name.host().to_owned();
    let outcome = with_sync(node, &address, host, async |remote| {
        let info = remote.device_info_request().send().promise.await;
        let info = info.map_err(remote_error)?;
        let device = info.get().map_err(remote_error)?.get_device_id();
        let info = MemberInfo {
            sync_priority: 0,
            is_server: false,
            device: crate::genvec::DeviceId(device),
            address: address.clone(),
        };
        let view = node.admit_host(name.clone(), host.clone(), info).await?;
        let mut call = remote.publish_syncgroup_request();
        {
            let mut params = call.get();
            params.set_publisher(me.as_str());
            params.set_version(view.record.stamp.version.to_hex().as_str());
            write_syncgroup(&view.record.sg, params.reborrow().init_sg());
            params.set_invite(invite_secret.unwrap_or_default());
            write_vector(&view.local.knowledge, params.reborrow().init_genvec());
        }
        let published = call.send().promise.await.map_err(remote_error)?;
        Ok(
            match published.get().map_err(remote_error)?.get_proposed() {
                true => PublishOutcome::Proposed,
                false => PublishOutcome::Accepted,
            },
        )
    })
    .await;
    node.publish_reply(name.clone(), host.clone(), outcome)
        .await
}

/// Dials the node, runs `call` with its `Sync`, and hangs up.
async fn with_sync<T>(
    node: &Node,
    address: &str,
    fingerprint: &Fingerprint,
    call: impl AsyncFnOnce(&sync::Client) -> Result<T>,
) -> Result<T> {
    let link = dial(node, address, fingerprint).await?;
    let budget = peer_budget(node, fingerprint);
    let mut rpc_system = rpc_system(budget, link.stream, Side::Client, None);
    let remote: sync::Client = rpc_system.bootstrap(Side::Server);
    let disconnector = rpc_system.get_disconnector();
    let mut connection = Box::pin(rpc_system);
    let outcome = tokio::select! {
        outcome = call(&remote) => outcome,
        ended = &mut connection => Err(Error::ConnFail(format!(
            "the connection to {address} closed: {}",
            ended.err().map(|e| e.extra).unwrap_or_default()
        ))),
    };
    drop(remote);
    disconnect(disconnector, connection).await;
    outcome
}

/// The node error a remote exception carries.
fn remote_error(error: capnp::Error) -> Error {
    if error.kind == capnp::ErrorKind::Disconnected {
        return Error::ConnFail(error_message(&error).to_owned());
    }
    Error::from_message(error_message(&error))
}
