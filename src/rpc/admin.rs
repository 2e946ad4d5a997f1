//! The app API's node-administration calls, used by `Service`: this node's identity,
//! adding, removing and listing peers with their sync status, and history collection on
//! demand and the store's status (size figures, live data, what collection waits for).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::genvec::Scope;
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::node::Node;
use crate::node::{CollectionStatus, OnDemand};
use crate::schema::service_capnp::{
    collected, database_status, peer_spec, peer_status, scope_spec, service, store_usage,
};
use crate::store::Collected;
use crate::sync::peers::{PeerConfig, PeerStatus};
use syncbase_storage::Usage;

/// Decodes a `PeerSpec` into a checked peer configuration.
pub fn read_peer_spec(spec: peer_spec::Reader<'_>) -> Result<PeerConfig> {
    let fingerprint =
        Fingerprint::parse(text(spec.get_fingerprint())?).map_err(|e| e.context("fingerprint"))?;
    let scopes = read_scopes(spec.get_scopes().map_err(malformed)?)?;
    PeerConfig::new(
        text(spec.get_address())?,
        fingerprint,
        text(spec.get_database())?,
        scopes,
    )?
    .named(text(spec.get_name())?)
}

/// Decodes a list of `ScopeSpec`s (names are checked by the node).
fn read_scopes(list: capnp::struct_list::Reader<'_, scope_spec::Owned>) -> Result<Vec<Scope>> {
    list.iter()
        .map(|scope| {
            Ok(Scope::new(
                text(scope.get_table())?,
                text(scope.get_prefix())?,
            ))
        })
        .collect()
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
    out.set_clock_measured(status.clock_offset_nanos.is_some());
    out.set_clock_offset_nanos(status.clock_offset_nanos.unwrap_or(0));
    out.set_clock_rtt_nanos(status.clock_rtt_nanos);
    out.set_from_config(config.from_config);
    out.set_name(config.name.as_str());
    out.set_declared(status.declared);
    out.set_syncgroups(u32::try_from(config.syncgroups.len()).unwrap_or(u32::MAX));
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

/// Removes a peer from the app API, or only some scopes of one database
/// (`Node::remove_peer_scopes`) if the request names a database.
pub async fn remove_peer(
    node: &Arc<Node>,
    params: service::remove_peer_params::Reader<'_>,
) -> Result<bool> {
    let fingerprint = Fingerprint::parse(text(params.get_fingerprint())?)
        .map_err(|e| e.context("fingerprint"))?;
    let db = text(params.get_database())?;
    if db.is_empty() {
        return node.remove_peer(&fingerprint).await;
    }
    let scopes = read_scopes(params.get_scopes().map_err(malformed)?)?;
    node.remove_peer_scopes(&fingerprint, db, scopes).await?;
    Ok(true)
}

/// Runs a collection pass over the database named `db` now (`Node::collect_now`).
pub async fn collect(node: &Arc<Node>, db: &str) -> Result<OnDemand> {
    node.collect_now(&DbName::parse(db)?).await
}

/// Fills a `Collected`.
pub fn write_collected(freed: &Collected, mut out: collected::Builder<'_>) {
    out.set_records(freed.records);
    out.set_versions(freed.versions);
    out.set_tombstones(freed.tombstones);
    out.set_changes(freed.changes);
    out.set_bytes(freed.bytes);
}

/// Fills a `StoreUsage` (an unbounded maximum is 0).
pub fn write_usage(usage: &Usage, mut out: store_usage::Builder<'_>) {
    out.set_file_bytes(usage.file_bytes);
    out.set_used_bytes(usage.used_bytes);
    out.set_map_bytes(usage.map_bytes);
    out.set_max_map_bytes(usage.max_map_bytes.unwrap_or(0));
    out.set_reserve_bytes(usage.reserve_bytes);
}

/// Every database's collection status (`Node::collection_status`), in name order.
pub fn databases_status(node: &Node) -> Result<Vec<(String, CollectionStatus)>> {
    node.store()
        .list_databases()?
        .into_iter()
        .map(|name| {
            let status = node.collection_status(&DbName::parse(&name)?)?;
            Ok((name, status))
        })
        .collect()
}

/// Fills a `DatabaseStatus`.
pub fn write_database_status(
    name: &str,
    status: &CollectionStatus,
    mut out: database_status::Builder<'_>,
) {
    out.set_database(name);
    out.set_live_rows(status.live.rows);
    out.set_live_bytes(status.live.bytes);
    let mut list = out.init_held_back(status.held_back.len() as u32);
    for (i, held) in status.held_back.iter().enumerate() {
        let mut entry = list.reborrow().get(i as u32);
        write_scope(&held.scope, entry.reborrow().init_scope());
        entry.set_member(held.member.as_str());
        entry.set_last_seen_nanos(held.last_seen_nanos.unwrap_or(0));
        entry.set_generations_behind(held.generations_behind);
        let (device, behind) = held.most_behind.unwrap_or((crate::genvec::DeviceId(0), 0));
        entry.set_most_behind_device(device.0);
        entry.set_most_behind_generations(behind);
    }
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
