//! The `syncbase sg` verbs for proposals: syncgroups other nodes published here, which share
//! nothing until accepted (`sg accept`, `sg reject`), and publish invites (`sg
//! publish-invite`) that let a node's publish be taken at once.

use crate::cli::client::{Target, with_service};
use crate::cli::output::outln;
use crate::cli::syncgroups::{Shown, syncgroups_of};
use crate::rpc::client::remote_error;
use crate::rpc::syncgroup_wire::read_syncgroup;
use crate::schema::service_capnp::service;
use crate::syncgroup::Syncgroup;

/// A proposal waiting here.
pub struct ProposalLine {
    pub sg: Syncgroup,
    pub publisher: String,
}

/// The node's proposals.
pub async fn fetch(service: &service::Client) -> anyhow::Result<Vec<ProposalLine>> {
    let response = syncgroups_of(service)
        .proposals_request()
        .send()
        .promise
        .await
        .map_err(remote_error)?;
    let mut lines = Vec::new();
    for proposal in response.get()?.get_proposals()? {
        let sg = read_syncgroup(proposal.get_sg()?)?;
        lines.push(ProposalLine {
            sg,
            publisher: proposal.get_publisher()?.to_str()?.to_owned(),
        });
    }
    Ok(lines)
}

/// `sg accept`: holds the proposed syncgroup and says so in one line.
pub fn accept(target: &Target, name: &str) -> anyhow::Result<()> {
    with_service(target, |service| async move {
        let mut request = syncgroups_of(&service).accept_request();
        request.get().set_name(name);
        let response = request.send().promise.await.map_err(remote_error)?;
        let shown = Shown::read(response.get()?.get_sg()?)?;
        super::syncgroups::changed("accepted", &shown)
    })
}

/// `sg reject`: forgets the proposal.
pub fn reject(target: &Target, name: &str) -> anyhow::Result<()> {
    with_service(target, |service| async move {
        let mut request = syncgroups_of(&service).reject_request();
        request.get().set_name(name);
        request.send().promise.await.map_err(remote_error)?;
        outln!("rejected syncgroup {name}: nothing was shared under it")?;
        Ok(())
    })
}

/// `sg publish-invite`: prints only the token, so `$(syncbase sg publish-invite ...)`
/// captures it.
pub fn publish_invite(
    target: &Target,
    db: &str,
    expires_in_seconds: Option<u64>,
    uses: u32,
) -> anyhow::Result<()> {
    with_service(target, |service| async move {
        let mut request = syncgroups_of(&service).invite_publish_request();
        request.get().set_database(db);
        request
            .get()
            .set_expires_in_seconds(expires_in_seconds.unwrap_or(0));
        request.get().set_uses(uses);
        let response = request.send().promise.await.map_err(remote_error)?;
        outln!("{}", response.get()?.get_token()?.to_str()?)?;
        Ok(())
    })
}
