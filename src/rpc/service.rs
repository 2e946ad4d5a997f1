//! `Service`, `Database` and `Table`: the app API's capabilities. Each method decodes and
//! validates its arguments (a bad one fails with `InvalidArgument:` and changes nothing),
//! calls the node, and fills its results.

use std::rc::Rc;
use std::sync::Arc;

use crate::error::Error;
use crate::names::{self, DbName, KeyPrefix, RowKey, TableName};
use crate::node::Node;
use crate::paging;
use crate::rpc::app_syncgroups::SyncgroupsImpl;
use crate::rpc::limits::ConnectionBudget;
use crate::rpc::push::WindowedPush;
use crate::rpc::{admin, watch};
use crate::schema::service_capnp::{batch_op, database, row_sink, service, syncgroups, table};
use crate::store::{Mutation, Row};

/// Scan pages in flight to the sink before waiting for acknowledgements. Each page is bounded
/// by `paging::SCAN` and reserves `paging::SCAN.room()` before it is read.
const SCAN_WINDOW: usize = 4;
/// Bytes of a `Table.get` answer besides its value (the Return message's framing).
const GET_ANSWER_OVERHEAD: usize = 256;

/// Serves `Service` to a logged-in client.
pub struct ServiceImpl {
    node: Arc<Node>,
    budget: Rc<ConnectionBudget>,
}

impl ServiceImpl {
    /// The service of a connection whose outgoing room is `budget`.
    pub fn new(node: Arc<Node>, budget: Rc<ConnectionBudget>) -> Self {
        ServiceImpl { node, budget }
    }
}

impl service::Server for ServiceImpl {
    async fn database(
        self: Rc<Self>,
        params: service::DatabaseParams,
        mut results: service::DatabaseResults,
    ) -> capnp::Result<()> {
        let params = params.get()?;
        let db = DbName::parse(text(params.get_name()?)?)?;
        if params.get_create() {
            self.node.open_database(&db).await?;
        } else {
            self.node.existing(&db)?;
        }
        let client: database::Client = capnp_rpc::new_client(DatabaseImpl {
            node: self.node.clone(),
            budget: self.budget.clone(),
            db,
        });
        results.get().set_db(client);
        Ok(())
    }

    async fn list_databases(
        self: Rc<Self>,
        _: service::ListDatabasesParams,
        mut results: service::ListDatabasesResults,
    ) -> capnp::Result<()> {
        let names = self.node.store().list_databases()?;
        let mut list = results.get().init_names(len_u32(names.len())?);
        for (i, name) in names.iter().enumerate() {
            list.set(i as u32, name.as_str());
        }
        Ok(())
    }

    async fn limits(
        self: Rc<Self>,
        _: service::LimitsParams,
        mut results: service::LimitsResults,
    ) -> capnp::Result<()> {
        let mut limits = results.get().init_limits();
        limits.set_max_name_bytes(names::MAX_NAME_BYTES as u32);
        limits.set_max_key_bytes(names::MAX_KEY_BYTES as u32);
        limits.set_max_value_bytes(names::MAX_VALUE_BYTES as u32);
        limits.set_max_batch_ops(names::MAX_BATCH_OPS as u32);
        limits.set_max_batch_bytes(names::MAX_BATCH_BYTES as u32);
        Ok(())
    }

    async fn identity(
        self: Rc<Self>,
        _: service::IdentityParams,
        mut results: service::IdentityResults,
    ) -> capnp::Result<()> {
        let mut results = results.get();
        results.set_fingerprint(self.node.identity().fingerprint().as_str());
        results.set_peer_address(self.node.peer_address().as_str());
        results.set_device_id(self.node.store().device().0);
        results.set_name(self.node.name());
        results.set_role(self.node.role().as_str());
        let epochs = self.node.store().epochs()?;
        let mut lines = results.init_epochs(epochs.len() as u32);
        for (i, epoch) in epochs.iter().enumerate() {
            lines.set(i as u32, epoch.to_string().as_str());
        }
        Ok(())
    }

    async fn add_peer(
        self: Rc<Self>,
        params: service::AddPeerParams,
        _: service::AddPeerResults,
    ) -> capnp::Result<()> {
        Ok(admin::add_peer(&self.node, params.get()?.get_peer()?).await?)
    }

    async fn remove_peer(
        self: Rc<Self>,
        params: service::RemovePeerParams,
        mut results: service::RemovePeerResults,
    ) -> capnp::Result<()> {
        let existed = admin::remove_peer(&self.node, params.get()?).await?;
        results.get().set_existed(existed);
        Ok(())
    }

    async fn list_peers(
        self: Rc<Self>,
        _: service::ListPeersParams,
        mut results: service::ListPeersResults,
    ) -> capnp::Result<()> {
        let peers = self.node.peers().list();
        let mut list = results.get().init_peers(len_u32(peers.len())?);
        for (i, (config, status)) in peers.iter().enumerate() {
            admin::write_peer_status(config, status, list.reborrow().get(i as u32));
        }
        Ok(())
    }

    async fn collect(
        self: Rc<Self>,
        params: service::CollectParams,
        mut results: service::CollectResults,
    ) -> capnp::Result<()> {
        let db = text(params.get()?.get_database()?)?;
        let done = admin::collect(&self.node, db).await?;
        let mut results = results.get();
        admin::write_collected(&done.pass.collected, results.reborrow().init_freed());
        results.set_steps(done.pass.steps);
        admin::write_usage(&done.before, results.reborrow().init_before());
        admin::write_usage(&done.after, results.init_after());
        Ok(())
    }

    async fn store_status(
        self: Rc<Self>,
        _: service::StoreStatusParams,
        mut results: service::StoreStatusResults,
    ) -> capnp::Result<()> {
        let usage = self.node.store().usage()?;
        let node = self.node.clone();
        let databases = self
            .node
            .long_read("reading the store status", move || {
                admin::databases_status(&node)
            })
            .await?;
        let mut results = results.get();
        let mut out = results.reborrow().init_usage();
        admin::write_usage(&usage, out.reborrow());
        out.set_backend(self.node.backend());
        let mut list = results.init_databases(len_u32(databases.len())?);
        for (i, (name, status)) in databases.iter().enumerate() {
            admin::write_database_status(name, status, list.reborrow().get(i as u32));
        }
        Ok(())
    }

    async fn syncgroups(
        self: Rc<Self>,
        _: service::SyncgroupsParams,
        mut results: service::SyncgroupsResults,
    ) -> capnp::Result<()> {
        let client: syncgroups::Client =
            capnp_rpc::new_client(SyncgroupsImpl::new(self.node.clone()));
        results.get().set_syncgroups(client);
        Ok(())
    }
}

/// Serves `Database` for one database.
pub struct DatabaseImpl {
    node: Arc<Node>,
    budget: Rc<ConnectionBudget>,
    db: DbName,
}

impl database::Server for DatabaseImpl {
    async fn table(
        self: Rc<Self>,
        params: database::TableParams,
        mut results: database::TableResults,
    ) -> capnp::Result<()> {
        let table = TableName::parse(text(params.get()?.get_name()?)?)?;
        let client: table::Client = capnp_rpc::new_client(TableImpl {
            node: self.node.clone(),
            budget: self.budget.clone(),
            db: self.db.clone(),
            table,
        });
        results.get().set_table(client);
        Ok(())
    }

    async fn batch(
        self: Rc<Self>,
        params: database::BatchParams,
        _: database::BatchResults,
    ) -> capnp::Result<()> {
        let ops = params.get()?.get_ops()?;
        // Checked before decoding, so a huge list is never decoded; bytes are checked at commit.
        names::check_batch(ops.len() as usize, 0)?;
        let mutations = ops
            .iter()
            .enumerate()
            .map(|(i, op)| decode_batch_op(op).map_err(|e| in_batch_op(i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        self.node.commit(self.db.clone(), mutations).await?;
        Ok(())
    }

    async fn name(
        self: Rc<Self>,
        _: database::NameParams,
        mut results: database::NameResults,
    ) -> capnp::Result<()> {
        results.get().set_name(self.db.as_str());
        Ok(())
    }

    async fn watch(
        self: Rc<Self>,
        params: database::WatchParams,
        _: database::WatchResults,
    ) -> capnp::Result<()> {
        let params = params.get()?;
        let request = watch::WatchRequest::decode(&self.db, params)?;
        let sink = params.get_sink()?;
        watch::run(&self.node, &self.db, request, sink, self.budget.clone()).await
    }

    async fn list_tables(
        self: Rc<Self>,
        _: database::ListTablesParams,
        mut results: database::ListTablesResults,
    ) -> capnp::Result<()> {
        let tables = self.node.tables(&self.db).await?;
        let mut list = results.get().init_tables(len_u32(tables.len())?);
        for (i, table) in tables.iter().enumerate() {
            let mut info = list.reborrow().get(i as u32);
            info.set_name(table.name.as_str());
            info.set_live_rows(table.live.rows);
            info.set_live_bytes(table.live.bytes);
        }
        Ok(())
    }
}

fn decode_batch_op(op: batch_op::Reader<'_>) -> Result<Mutation, capnp::Error> {
    let table = TableName::parse(text(op.get_table()?)?)?;
    let key = RowKey::parse(text(op.get_key()?)?)?;
    Ok(match op.which()? {
        batch_op::Put(value) => {
            let value = value?;
            names::check_value(value)?;
            Mutation::Put {
                table,
                key,
                value: value.to_vec(),
            }
        }
        batch_op::Delete(()) => Mutation::Delete { table, key },
    })
}

/// Says which batch operation an error came from, keeping the error's id in front.
fn in_batch_op(index: usize, mut error: capnp::Error) -> capnp::Error {
    if let Some((id, rest)) = error.extra.split_once(": ") {
        error.extra = format!("{id}: batch operation {index}: {rest}");
    }
    error
}

/// Serves `Table` for one table of one database.
pub struct TableImpl {
    node: Arc<Node>,
    budget: Rc<ConnectionBudget>,
    db: DbName,
    table: TableName,
}

impl TableImpl {
    fn mutation_put(&self, key: RowKey, value: &[u8]) -> Result<Mutation, Error> {
        names::check_value(value)?;
        Ok(Mutation::Put {
            table: self.table.clone(),
            key,
            value: value.to_vec(),
        })
    }
}

impl table::Server for TableImpl {
    async fn put(
        self: Rc<Self>,
        params: table::PutParams,
        _: table::PutResults,
    ) -> capnp::Result<()> {
        let params = params.get()?;
        let key = RowKey::parse(text(params.get_key()?)?)?;
        let mutation = self.mutation_put(key, params.get_value()?)?;
        self.node.commit(self.db.clone(), vec![mutation]).await?;
        Ok(())
    }

    async fn get(
        self: Rc<Self>,
        params: table::GetParams,
        mut results: table::GetResults,
    ) -> capnp::Result<()> {
        let key = RowKey::parse(text(params.get()?.get_key()?)?)?;
        // Room for the largest value before reading it, so pipelined gets nobody reads cannot
        // pile answers up; what the value does not need is given back at once.
        let mut room = self
            .budget
            .reserve(names::MAX_VALUE_BYTES + GET_ANSWER_OVERHEAD)
            .await;
        let value = self.node.store().get(&self.db, &self.table, &key)?;
        let value = value.as_deref();
        room.shrink_to(value.map_or(0, <[u8]>::len) + GET_ANSWER_OVERHEAD);
        let mut results = results.get();
        results.set_found(value.is_some());
        results.set_value(value.unwrap_or_default());
        room.hand_over();
        Ok(())
    }

    async fn delete(
        self: Rc<Self>,
        params: table::DeleteParams,
        mut results: table::DeleteResults,
    ) -> capnp::Result<()> {
        let key = RowKey::parse(text(params.get()?.get_key()?)?)?;
        let mutation = Mutation::Delete {
            table: self.table.clone(),
            key,
        };
        let existed = self.node.commit(self.db.clone(), vec![mutation]).await?;
        results
            .get()
            .set_existed(existed.first().copied().unwrap_or(false));
        Ok(())
    }

    async fn scan(
        self: Rc<Self>,
        params: table::ScanParams,
        mut results: table::ScanResults,
    ) -> capnp::Result<()> {
        let params = params.get()?;
        let prefix = KeyPrefix::parse(text(params.get_prefix()?)?)?;
        let sink = params.get_sink()?;
        let count = self.scan_into(&prefix, &sink).await?;
        results.get().set_count(count);
        Ok(())
    }

    async fn name(
        self: Rc<Self>,
        _: table::NameParams,
        mut results: table::NameResults,
    ) -> capnp::Result<()> {
        results.get().set_name(self.table.as_str());
        Ok(())
    }
}

impl TableImpl {
    /// Pages through the prefix and pushes each page to the sink, each page's room reserved
    /// before it is read; returns the row count. A scan is one of the connection's streams.
    async fn scan_into(&self, prefix: &KeyPrefix, sink: &row_sink::Client) -> capnp::Result<u64> {
        let limit = paging::SCAN.limit;
        let mut pusher = WindowedPush::new(self.budget.clone(), SCAN_WINDOW)?;
        let (mut count, mut after) = (0u64, None::<String>);
        loop {
            let room = pusher.room(paging::SCAN.room()).await?;
            let page = self.node.store().scan_page(
                &self.db,
                &self.table,
                prefix,
                after.as_deref(),
                limit,
            )?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            count += page.len() as u64;
            let mut request = sink.push_request();
            write_rows(&page, request.get())?;
            pusher.send(room, request).await?;
        }
        pusher.finish().await?;
        Ok(count)
    }
}

/// Fills a scan push's parameters with a page of rows.
fn write_rows(page: &[Row], params: row_sink::push_params::Builder<'_>) -> Result<(), Error> {
    let mut rows = params.init_rows(len_u32(page.len())?);
    for (i, row) in page.iter().enumerate() {
        let mut out = rows.reborrow().get(i as u32);
        out.set_key(row.key.as_str());
        out.set_value(&row.value);
    }
    Ok(())
}

/// Decodes a Text argument, naming a non-UTF-8 one as an invalid argument.
fn text(reader: capnp::text::Reader<'_>) -> Result<&str, Error> {
    reader
        .to_str()
        .map_err(|_| Error::invalid("text argument is not valid UTF-8"))
}

fn len_u32(len: usize) -> Result<u32, Error> {
    u32::try_from(len).map_err(|_| Error::Internal(format!("list of {len} items is too long")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_scan_page_fits_its_bound_under_the_message_limit() {
        let limit = paging::SCAN.limit;
        let key = |i: usize| format!("{i:0>width$}", width = names::MAX_KEY_BYTES);
        let small = limit.bytes / limit.items - names::MAX_KEY_BYTES;
        let mut page: Vec<_> = (1..limit.items)
            .map(|i| Row {
                key: key(i),
                value: vec![7; small],
            })
            .collect();
        page.push(Row {
            key: key(0),
            value: vec![7; names::MAX_VALUE_BYTES],
        });
        let mut message = capnp::message::Builder::new_default();
        write_rows(&page, message.init_root()).unwrap();
        let bytes = message.size_in_words() * 8 + paging::MESSAGE_OVERHEAD;
        assert!(
            bytes <= paging::SCAN.room(),
            "{bytes} > {}",
            paging::SCAN.room()
        );
    }
}
