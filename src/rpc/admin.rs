//! The app API's node-administration calls, used by `Service`: this node's identity, and
//! adding, removing and listing peers with their sync status.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::genvec::Scope;
use crate::identity::Fingerprint;
use crate::node::Node;
use crate::schema::service_capnp::{peer_spec, peer_status, scope_spec};
use crate::sync::peers::{PeerConfig, PeerStatus};

/// Decodes a `PeerSpec` into a checked peer configuration.
pub fn read_peer_spec(spec: peer_spec::Reader<'_>) -> Result<PeerConfig> {
    let fingerprint = Fingerprint::parse(text(spec.get_fingerprint())?)
        .map_err(|e| Error::invalid(format!("fingerprint: {e:#}")))?;
    let scopes = spec
        .get_scopes()
        .map_err(malformed)?
        .iter()
        .map(|scope| {
            Ok(Scope::new(
                text(scope.get_table())?,
                text(scope.get_prefix())?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    PeerConfig::new(
        text(spec.get_address())?,
        fingerprint,
        text(spec.get_database())?,
        scopes,
    )
}

/// Fills a `PeerStatus` list entry.
pub fn write_peer_status(
    config: &PeerConfig,
    status: &PeerStatus,
    mut out: peer_status::Builder<'_>,
) {
    out.set_fingerprint(config.fingerprint.as_str());
    out.set_address(config.address.as_str());
    out.set_connected(status.connected);
    out.set_last_success_nanos(status.last_success_nanos);
    out.set_last_error(status.last_error.as_deref().unwrap_or_default());
    out.set_records_received(status.records_received);
    out.set_bytes_received(status.bytes_received);
    out.set_records_sent(status.records_sent);
    out.set_bytes_sent(status.bytes_sent);
    out.set_records_pending_out(status.pending_out);
    out.set_records_pending_in(status.pending_in);
    out.set_records_refused(status.records_refused);
    out.set_from_config(config.from_config);
    let mut databases = out.init_databases(config.databases.len() as u32);
    for (i, (db, scopes)) in config.databases.iter().enumerate() {
        let mut entry = databases.reborrow().get(i as u32);
        entry.set_database(db.as_str());
        let mut list = entry.init_scopes(scopes.len() as u32);
        for (j, scope) in scopes.iter().enumerate() {
            write_scope(scope, list.reborrow().get(j as u32));
        }
    }
}

fn write_scope(scope: &Scope, mut out: scope_spec::Builder<'_>) {
    out.set_table(scope.table.as_str());
    out.set_prefix(scope.prefix.as_str());
}

/// Adds a peer from the app API.
pub async fn add_peer(node: &Arc<Node>, spec: peer_spec::Reader<'_>) -> Result<()> {
    node.add_peer(read_peer_spec(spec)?).await
}

/// Removes a peer from the app API.
pub async fn remove_peer(node: &Arc<Node>, fingerprint: &str) -> Result<bool> {
    let fingerprint = Fingerprint::parse(fingerprint)
        .map_err(|e| Error::invalid(format!("fingerprint: {e:#}")))?;
    node.remove_peer(&fingerprint).await
}

fn text(reader: capnp::Result<capnp::text::Reader<'_>>) -> Result<&str> {
    reader
        .map_err(malformed)?
        .to_str()
        .map_err(|_| Error::invalid("text argument is not valid UTF-8"))
}

fn malformed(error: capnp::Error) -> Error {
    Error::invalid(format!("malformed message: {}", error.extra))
}
