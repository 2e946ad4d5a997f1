//! The app API over Cap'n Proto: a database, a table, row puts, gets, deletes and batches,
//! and the app's syncgroup calls ([`AppSyncgroups`]).

use syncbase::identity::Fingerprint;
use syncbase::rpc::syncgroup_wire::write_spec;
use syncbase::schema::service_capnp::{database, service, syncgroups, table, watch_sink};
use syncbase::syncgroup::Spec;

/// The database `name` (created on first use).
pub async fn database(
    service: &service::Client,
    name: &str,
) -> Result<database::Client, capnp::Error> {
    let mut request = service.database_request();
    request.get().set_name(name);
    request.send().promise.await?.get()?.get_db()
}

/// The table `name` of `db`.
pub async fn table(db: &database::Client, name: &str) -> Result<table::Client, capnp::Error> {
    let mut request = db.table_request();
    request.get().set_name(name);
    request.send().promise.await?.get()?.get_table()
}

pub async fn put(
    table: &table::Client,
    key: &str,
    value: impl AsRef<[u8]>,
) -> Result<(), capnp::Error> {
    let mut request = table.put_request();
    request.get().set_key(key);
    request.get().set_value(value.as_ref());
    request.send().promise.await.map(drop)
}

/// The value of `key`, or None if it is absent.
pub async fn get(table: &table::Client, key: &str) -> Option<Vec<u8>> {
    let mut request = table.get_request();
    request.get().set_key(key);
    let response = request.send().promise.await.expect("get succeeds");
    let results = response.get().unwrap();
    results
        .get_found()
        .then(|| results.get_value().unwrap().to_vec())
}

/// Deletes `key`; returns whether it existed.
pub async fn delete(table: &table::Client, key: &str) -> bool {
    let mut request = table.delete_request();
    request.get().set_key(key);
    request
        .send()
        .promise
        .await
        .expect("delete succeeds")
        .get()
        .unwrap()
        .get_existed()
}

/// Applies `ops` to `db` atomically: each is (table, key, Some(value) to put or None to
/// delete).
pub async fn batch(
    db: &database::Client,
    ops: &[(&str, &str, Option<&[u8]>)],
) -> Result<(), capnp::Error> {
    let mut request = db.batch_request();
    let mut list = request.get().init_ops(ops.len() as u32);
    for (i, (table, key, value)) in ops.iter().enumerate() {
        let mut op = list.reborrow().get(i as u32);
        op.set_table(*table);
        op.set_key(*key);
        match value {
            Some(value) => op.set_put(value),
            None => op.set_delete(()),
        }
    }
    request.send().promise.await.map(drop)
}

/// `Database.watch` of `table` ("" for every table) under `prefix`, from the current rows if
/// `initial`, after `marker` if not empty, pushing into `sink`: sent at once.
pub fn watch_request(
    db: &database::Client,
    table: &str,
    prefix: &str,
    initial: bool,
    marker: &[u8],
    sink: watch_sink::Client,
) -> capnp::capability::RemotePromise<database::watch_results::Owned> {
    let mut request = db.watch_request();
    request.get().set_table(table);
    request.get().set_prefix(prefix);
    request.get().set_initial_state(initial);
    request.get().set_resume_marker(marker);
    request.get().set_sink(sink);
    request.send()
}

/// The app's `Syncgroups` calls on one node.
pub struct AppSyncgroups {
    syncgroups: syncgroups::Client,
}

impl AppSyncgroups {
    /// The `Syncgroups` capability of `service` (pipelined: no round trip here).
    pub fn of(service: &service::Client) -> Self {
        let syncgroups = service
            .syncgroups_request()
            .send()
            .pipeline
            .get_syncgroups();
        AppSyncgroups { syncgroups }
    }

    /// `create`: syncgroup `name` of database `db` with `spec`, published at the node with
    /// fingerprint `host` if given.
    pub async fn create(
        &self,
        db: &str,
        name: &str,
        host: Option<&Fingerprint>,
        spec: &Spec,
    ) -> Result<(), capnp::Error> {
        let mut request = self.syncgroups.create_request();
        request.get().set_database(db);
        request.get().set_name(name);
        request
            .get()
            .set_host_fingerprint(host.map(Fingerprint::as_str).unwrap_or_default());
        write_spec(spec, request.get().init_spec());
        request.send().promise.await.map(drop)
    }

    /// `join` with an invite token (`syncbase://...`).
    pub async fn join(&self, invite: &str) -> Result<(), capnp::Error> {
        let mut request = self.syncgroups.join_request();
        request.get().set_invite(invite);
        request.send().promise.await.map(drop)
    }

    /// `leave` syncgroup `name`.
    pub async fn leave(&self, name: &str) -> Result<(), capnp::Error> {
        let mut request = self.syncgroups.leave_request();
        request.get().set_name(name);
        request.send().promise.await.map(drop)
    }
}
