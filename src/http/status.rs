//! The status report the page and `/metrics` show: one read of the node's live figures,
//! gathered from the same sources the CLI's `status` and `peer list` read over the app API
//! (`PeerRegistry::list` for peers and their `PeerStatus`, `Node::list_syncgroups` and
//! `Node::proposals` for syncgroups, the store for identity and usage), so every view of a
//! node shows the same numbers.

use serde::Serialize;

use crate::error::Result;
use crate::genvec::Scope;
use crate::identity::Fingerprint;
use crate::node::Node;
use crate::sync::peers::{PeerConfig, PeerStatus};
use crate::syncgroup::access::Tag;
use crate::syncgroup::{Permissions, Status, SyncgroupView};

/// What blob transfers the page shows: none, since blobs are not built yet.
pub const TRANSFERS_NOTE: &str = "blobs are not built yet: no transfers to show";

/// Everything the page shows, serialised as `/status.json`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub node: NodeReport,
    pub peers: Vec<PeerReport>,
    pub syncgroups: Vec<SyncgroupReport>,
    /// Syncgroups other nodes proposed to this host, waiting for `sg accept`.
    pub proposals: Vec<ProposalReport>,
    pub conflicts: ConflictReport,
    pub transfers: TransferReport,
}

/// This node's identity.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    /// The name it shows its fellow members (`serve --name`), null if none.
    pub name: Option<String>,
    /// Lowercase hex BLAKE3 of its certificate's key: its only identity.
    pub fingerprint: String,
    /// Its device id, 16 hex digits.
    pub device: String,
    /// Its TLS peer listener ("" if it accepts no peers).
    pub peer_address: String,
    /// The storage backend (`lmdb`, `memory`).
    pub backend: String,
    /// Bytes the store uses.
    pub store_used_bytes: u64,
    /// When this report was read, Unix nanoseconds.
    pub now_nanos: i64,
}

/// One peer and its sync figures (`PeerStatus`), counters since this node started.
#[derive(Debug, Clone, Serialize)]
pub struct PeerReport {
    pub fingerprint: String,
    /// Its name: the `peer add --name` label, or its chosen name as a syncgroup member;
    /// null if none. Never an identity.
    pub name: Option<String>,
    pub address: String,
    /// Declared in the config file.
    pub from_config: bool,
    /// Declared with `peer add` or in the config file.
    pub declared: bool,
    /// Syncgroups held here that it is a member of.
    pub syncgroups: u64,
    /// What each database shares with it (the fields of `peer list --json`).
    pub databases: Vec<ShareReport>,
    pub connected: bool,
    /// When a page from it last ended its log, Unix nanoseconds; None: not yet.
    pub last_caught_up_nanos: Option<i64>,
    pub records_received: u64,
    pub bytes_received: u64,
    pub records_sent: u64,
    pub bytes_sent: u64,
    /// Log entries it had not examined yet for us, as of its last push.
    pub pending_in: u64,
    /// Log entries our responder has not examined yet for it.
    pub pending_out: u64,
    /// Records from it dropped because their writer held no Write permission.
    pub records_refused: u64,
    /// Rounds with it that reached the end of its log.
    pub rounds: u64,
    /// Conflicts settled applying its records.
    pub conflicts_resolved: u64,
    /// Catch-ups by state from it.
    pub catch_ups: u64,
    /// The last failure, with its id prefix (`ConnFail:`, `NoAccess:`).
    pub last_error: Option<String>,
    /// Its clock minus ours in milliseconds, from the latest GetTime exchange (`rpc::clock`,
    /// good to half the round trip); None: not measured yet.
    pub clock_offset_ms: Option<f64>,
}

/// The scopes of one database shared with a peer.
#[derive(Debug, Clone, Serialize)]
pub struct ShareReport {
    pub database: String,
    pub scopes: Vec<ScopeReport>,
}

/// The rows of `table` whose keys start with `prefix` ("": every row).
#[derive(Debug, Clone, Serialize)]
pub struct ScopeReport {
    pub table: String,
    pub prefix: String,
}

impl ScopeReport {
    fn of(scope: &Scope) -> ScopeReport {
        ScopeReport {
            table: scope.table.clone(),
            prefix: scope.prefix.clone(),
        }
    }
}

/// One syncgroup this node belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct SyncgroupReport {
    pub name: String,
    /// 16 hex digits.
    pub id: String,
    pub database: String,
    /// `running`, `publish-pending` (proposed to its host) or `publish-rejected`; or how
    /// this node lost it, as `sg show --json` says it (`destroyed`, else `ejected` or
    /// `read-revoked`).
    pub status: String,
    /// How this node lost it, as `sg show --json` says it (`Destroyed`, `Ejected`, `Read
    /// revoked`: `SyncgroupView::lost`), null if it did not.
    pub removed: Option<String>,
    /// The admin that destroyed it or said so, null if none did (or a destroy's writer names
    /// no member).
    pub removed_by: Option<String>,
    /// When, Unix nanoseconds (a destroy's HLC time, or when the notice was taken); null if
    /// it was not lost.
    pub removed_at_nanos: Option<i64>,
    /// Joined and still catching up with its admin.
    pub pending: bool,
    /// This node left it.
    pub left: bool,
    /// This node's level in it: `admin`, `read-write`, `read` or `none`.
    pub level: String,
    /// The rows it shares.
    pub prefixes: Vec<ScopeReport>,
    pub members: Vec<MemberReport>,
}

/// One member of a syncgroup.
#[derive(Debug, Clone, Serialize)]
pub struct MemberReport {
    pub fingerprint: String,
    /// Its chosen name, null if none (never an identity).
    pub name: Option<String>,
    /// Its peer listener ("" for a leaf).
    pub address: String,
    pub server: bool,
    pub level: String,
    /// This node itself.
    pub is_self: bool,
}

/// A syncgroup proposed to this host.
#[derive(Debug, Clone, Serialize)]
pub struct ProposalReport {
    pub name: String,
    pub publisher: String,
    pub received_nanos: i64,
}

/// Conflicts: how many wait for an app (none: every conflict is settled by last writer
/// wins as its records are applied) and how many were settled since start.
#[derive(Debug, Clone, Serialize)]
pub struct ConflictReport {
    pub waiting: u64,
    pub resolved: u64,
    pub rule: String,
}

/// Blob transfers (not built: always empty, with the note saying so).
#[derive(Debug, Clone, Serialize)]
pub struct TransferReport {
    pub supported: bool,
    pub note: String,
}

impl StatusReport {
    /// Reads the node's figures now. Fails only as the store's reads do.
    pub fn gather(node: &Node) -> Result<StatusReport> {
        let me = node.identity().fingerprint().clone();
        let peers: Vec<PeerReport> = node
            .peers()
            .list()
            .iter()
            .map(|(config, status)| peer_report(config, status))
            .collect();
        let syncgroups = node
            .list_syncgroups(None)?
            .iter()
            .map(|view| syncgroup_report(view, &me))
            .collect();
        let proposals = node
            .proposals()?
            .into_iter()
            .map(|proposal| ProposalReport {
                name: proposal.sg.name.to_string(),
                publisher: proposal.publisher.to_string(),
                received_nanos: proposal.received_nanos,
            })
            .collect();
        let resolved = peers.iter().map(|peer| peer.conflicts_resolved).sum();
        Ok(StatusReport {
            node: NodeReport {
                name: named(node.name()),
                fingerprint: me.to_string(),
                device: format!("{:016x}", node.store().device().0),
                peer_address: node.peer_address(),
                backend: node.backend().to_owned(),
                store_used_bytes: node.store().usage()?.used_bytes,
                now_nanos: node.env().now_nanos(),
            },
            peers,
            syncgroups,
            proposals,
            conflicts: ConflictReport {
                waiting: 0,
                resolved,
                rule: "last writer wins, settled as records arrive".into(),
            },
            transfers: TransferReport {
                supported: false,
                note: TRANSFERS_NOTE.into(),
            },
        })
    }
}

fn peer_report(config: &PeerConfig, status: &PeerStatus) -> PeerReport {
    let shares = config
        .databases
        .iter()
        .map(|(db, scopes)| ShareReport {
            database: db.clone(),
            scopes: scopes.iter().map(ScopeReport::of).collect(),
        })
        .collect();
    PeerReport {
        fingerprint: config.fingerprint.to_string(),
        name: named(&config.name),
        declared: status.declared,
        syncgroups: config.syncgroups.len() as u64,
        address: config.address.clone(),
        from_config: config.from_config,
        databases: shares,
        connected: status.connected,
        last_caught_up_nanos: (status.last_success_nanos > 0).then_some(status.last_success_nanos),
        records_received: status.records_received,
        bytes_received: status.bytes_received,
        records_sent: status.records_sent,
        bytes_sent: status.bytes_sent,
        pending_in: status.pending_in,
        pending_out: status.pending_out,
        records_refused: status.records_refused,
        rounds: status.rounds,
        conflicts_resolved: status.conflicts_resolved,
        catch_ups: status.catch_ups,
        last_error: status.last_error.clone(),
        clock_offset_ms: status.clock_offset_nanos.map(|nanos| nanos as f64 / 1e6),
    }
}

fn syncgroup_report(view: &SyncgroupView, me: &Fingerprint) -> SyncgroupReport {
    let sg = &view.record.sg;
    let members = sg
        .joiners
        .iter()
        .map(|(fingerprint, info)| MemberReport {
            fingerprint: fingerprint.to_string(),
            name: named(&info.name),
            address: info.address.clone(),
            server: info.is_server,
            level: level(&sg.spec.perms, fingerprint).into(),
            is_self: fingerprint == me,
        })
        .collect();
    let removed = &view.local.removed;
    let lost = view.lost();
    SyncgroupReport {
        name: sg.name.to_string(),
        id: sg.id.to_hex(),
        database: sg.db.clone(),
        status: match (&removed, sg.status) {
            (_, Status::Destroyed) => "destroyed",
            (Some(removed), _) => removed.how.id(),
            (None, Status::Running) => "running",
            (None, Status::PublishPending) => "publish-pending",
            (None, Status::PublishRejected) => "publish-rejected",
        }
        .into(),
        removed: lost.map(|lost| lost.label.to_owned()),
        removed_by: lost.and_then(|lost| lost.by).map(Fingerprint::to_string),
        removed_at_nanos: lost.map(|lost| lost.at_nanos),
        pending: view.local.pending.is_some(),
        left: view.local.left,
        level: level(&sg.spec.perms, me).into(),
        prefixes: sg.spec.prefixes.iter().map(ScopeReport::of).collect(),
        members,
    }
}

/// A name as the report gives it: null when empty.
fn named(name: &str) -> Option<String> {
    (!name.is_empty()).then(|| name.to_owned())
}

/// The highest level `who` holds: admin, read-write, read, or none.
fn level(perms: &Permissions, who: &Fingerprint) -> &'static str {
    if perms.allows(Tag::Admin, who) {
        "admin"
    } else if perms.allows(Tag::Write, who) {
        "read-write"
    } else if perms.allows(Tag::Read, who) {
        "read"
    } else {
        "none"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syncgroup::tests::{id, record, syncgroup};
    use crate::syncgroup::{LocalState, Removal, Removed};

    #[test]
    fn a_destroyed_syncgroup_reports_who_destroyed_it_and_when_as_sg_show_does() {
        let mut sg = syncgroup();
        sg.status = Status::Destroyed;
        let view = SyncgroupView {
            record: record(1, 50, sg),
            local: LocalState {
                // A removal notice taken earlier: the destroy says more.
                removed: Some(Removed {
                    how: Removal::ReadRevoked,
                    by: id('c'),
                    member: id('b'),
                    at_nanos: 20,
                }),
                ..LocalState::default()
            },
        };
        let report = syncgroup_report(&view, &id('b'));
        assert_eq!(report.status, "destroyed");
        assert_eq!(report.removed.as_deref(), Some("Destroyed"));
        assert_eq!(report.removed_by, Some(id('a').to_string()));
        assert_eq!(report.removed_at_nanos, Some(50));
    }
}
