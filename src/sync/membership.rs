//! Joining and publishing syncgroups, the calls a node makes on another node's behalf
//! (reference §3: `JoinSyncgroupAtAdmin`, `PublishSyncgroup`), without Cap'n Proto: each
//! dials the other node through the engine's [`Dialer`], pins its fingerprint, makes its
//! calls over the [`PeerClient`], hangs up, and hands the answer to the host
//! (`Host::join_reply`, `Host::publish_reply`). Errors from the other node keep their ids;
//! an unreachable node is `ConnFail:`.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::genvec::GenVector;
use crate::identity::Fingerprint;
use crate::store::Version;
use crate::sync::host::Host;
use crate::sync::link::{Dialer, LinkDriver, PeerClient};
use crate::syncgroup::{MemberInfo, Syncgroup, SyncgroupName, SyncgroupView};

/// What the admin hands a joiner: the syncgroup, its version, and the checkpoint vector the
/// joiner must reach before it may change the syncgroup or admit others.
#[derive(Debug, Clone)]
pub struct JoinReply {
    pub sg: Syncgroup,
    pub version: Version,
    pub checkpoint: GenVector,
}

/// A join as the joiner sends it (the joiner is the authenticated caller).
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub name: SyncgroupName,
    pub info: MemberInfo,
    /// The secret of an invite an admin minted, if the joiner has one.
    pub invite_secret: Option<String>,
}

/// How a host took a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// The syncgroup is held and syncs (a publish invite, or a name the host already held).
    Accepted,
    /// Stored as a proposal: nothing syncs until the host's operator accepts it.
    Proposed,
}

/// A publish as the host received it.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub publisher: Fingerprint,
    pub sg: Syncgroup,
    pub version: Version,
    pub checkpoint: GenVector,
    /// The secret of a publish invite this node minted, if the publisher has one.
    pub invite_secret: Option<String>,
}

/// Joins `name` at the admin node `admin` (at `address`), redeeming `invite_secret` if given.
/// Errors: `InvalidArgument:` for a join at this node itself or an answer for another
/// syncgroup; the admin's refusal with its id (`NoAccess:`, `NoExist:`, ...); `ConnFail:`.
pub async fn join<H: Host, D: Dialer>(
    host: &Arc<H>,
    dialer: &D,
    admin: &Fingerprint,
    address: &str,
    name: &SyncgroupName,
    invite_secret: Option<&str>,
) -> Result<SyncgroupView> {
    if admin == host.fingerprint() {
        return Err(Error::invalid("a node cannot join at itself"));
    }
    let request = JoinRequest {
        name: name.clone(),
        info: host.member_info(),
        invite_secret: invite_secret.map(str::to_owned),
    };
    let reply = with_peer(dialer, address, admin, async |peer| {
        peer.join_at_admin(request)
            .await
            .map_err(|error| error.answered_by(&format!("the admin at {address}")))
    })
    .await?;
    if &reply.sg.name != name {
        return Err(Error::invalid(format!(
            "the admin answered for syncgroup {} instead of {name}",
            reply.sg.name
        )));
    }
    host.join_reply(reply).await
}

/// Publishes the syncgroup `name` (created here) at its host `publishee`, with the secret of
/// a publish invite that host minted if given, and records the outcome (accepted, or
/// proposed to the host's operator). The host is listed as a member and an admin first, so
/// the version it receives already makes it one.
pub async fn publish<H: Host, D: Dialer>(
    host: &Arc<H>,
    dialer: &D,
    name: &SyncgroupName,
    publishee: &Fingerprint,
    invite_secret: Option<&str>,
) -> Result<SyncgroupView> {
    let address = name.host().to_owned();
    let outcome = with_peer(dialer, &address, publishee, async |peer| {
        let info = MemberInfo {
            sync_priority: 0,
            is_server: false,
            device: peer.device_info().await?,
            address: address.clone(),
            name: String::new(),
        };
        let view = host
            .admit_host(name.clone(), publishee.clone(), info)
            .await?;
        peer.publish(PublishRequest {
            publisher: host.fingerprint().clone(),
            sg: view.record.sg,
            version: view.record.stamp.version,
            checkpoint: view.local.knowledge,
            invite_secret: invite_secret.map(str::to_owned),
        })
        .await
        .map_err(|error| error.answered_by(&format!("the host at {address}")))
    })
    .await;
    host.publish_reply(name.clone(), publishee.clone(), outcome)
        .await
}

/// How long the other node has to answer a join or a publish, once connected.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Dials the node, runs `call` with it, and hangs up. A node that connects and then does not
/// answer within [`CALL_TIMEOUT`] is `ConnFail:`.
async fn with_peer<D: Dialer, T>(
    dialer: &D,
    address: &str,
    fingerprint: &Fingerprint,
    call: impl AsyncFnOnce(&D::Client) -> Result<T>,
) -> Result<T> {
    let (peer, mut driver) = dialer.dial(address, fingerprint).await?;
    let outcome = tokio::select! {
        biased;
        ended = driver.run() => Err(Error::ConnFail(format!(
            "the connection to {address} closed: {ended}"
        ))),
        outcome = call(&peer) => outcome,
        () = tokio::time::sleep(CALL_TIMEOUT) => Err(Error::ConnFail(format!(
            "{address} did not answer within {CALL_TIMEOUT:?}"
        ))),
    };
    drop(peer);
    driver.close().await;
    outcome
}
