//! Syncgroup membership and node lifetimes for the integration tests: creating a syncgroup
//! that shares a table, joining with an invite through the app API, stopping a node until it lets go of its store, and copying a
//! data directory (a backup to restore later).

use std::path::Path;
use std::time::Duration;

use syncbase::embedded::EmbeddedServer;
use syncbase::genvec::Scope;
use syncbase::names::DbName;
use syncbase::syncgroup::access::Level;
use syncbase::syncgroup::{Permissions, Spec, SyncgroupName};

use super::app::AppSyncgroups;
use super::{DB, eventually};

/// Creates the syncgroup `HOST/suffix` on `host` (its creator and only admin), sharing all of
/// `table` of the test database.
pub async fn create_syncgroup(host: &EmbeddedServer, suffix: &str, table: &str) -> SyncgroupName {
    let name = SyncgroupName::parse(&format!("{}/{suffix}", host.peer_address())).unwrap();
    let spec = Spec {
        description: "test".into(),
        perms: Permissions::default(),
        prefixes: vec![Scope::new(table, "")],
        mount_tables: vec![],
        is_private: false,
    };
    host.node()
        .create_syncgroup(DbName::parse(DB).unwrap(), name.clone(), spec)
        .await
        .unwrap();
    name
}

/// `member` joins `name` through its app API with a one-use invite at `level` minted on
/// `host` (an admin).
pub async fn join_by_invite(
    host: &EmbeddedServer,
    member: &EmbeddedServer,
    name: &SyncgroupName,
    level: Level,
) {
    let token = host
        .node()
        .mint_invite(name.clone(), level, None, 1)
        .await
        .unwrap();
    AppSyncgroups::of(member.service())
        .join(&token.to_string())
        .await
        .expect("join");
}

/// Stops `node` and waits until it has released its store (so it can be opened again).
pub async fn stop(node: EmbeddedServer) {
    let weak = std::sync::Arc::downgrade(node.node());
    drop(node);
    eventually(
        "the stopped node releases its store",
        Duration::from_secs(10),
        || weak.strong_count() == 0,
    )
    .await;
}

/// Copies the directory `from` (recursively) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
