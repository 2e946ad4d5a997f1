//! The app API over Cap'n Proto: a database, a table, and row puts, gets, deletes and batches.

use syncbase::schema::service_capnp::{database, service, table};

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
