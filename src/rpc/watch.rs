//! `Database.watch`: streams a table's (or a database's) row changes, local and synced, to the
//! caller's sink in commit order, from the change feed the write paths keep in the same
//! commit as the data. It wakes on each commit (no polling) and ends when the caller hangs up
//! or the node stops. Resume markers are 16 bytes: a hash of the database name, then the
//! sequence number to continue from (big-endian). A marker below the database's watch-feed
//! floor (history collection removed changes after it, `store::collect`) is refused with
//! `Compacted:`. A running watch registers where it reads (`node::watchers`), so collection
//! keeps the changes it has yet to read; each page is still read with the floor checked in
//! the same snapshot (`store::log::read_changes`): never a feed with holes.
//!
//! Pages are bounded by `paging::WATCH` (initial state and change feed alike: 1,024 rows or
//! 1 MiB of keys and values, at least one row, so the largest row goes alone) and each
//! reserves its upper bound (`paging::WATCH.room()`) in the connection's outgoing budget
//! before it is read, so a watcher that never acknowledges or never reads makes the node hold
//! at most that budget, and a slow watcher never gets a message near the 64 MiB limit. A watch
//! is one of the connection's `limits::MAX_STREAMS` streams.

use std::rc::Rc;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::names::{DbName, KeyPrefix, TableName};
use crate::node::Node;
use crate::paging::{PageLimit, WATCH};
use crate::rpc::limits::ConnectionBudget;
use crate::rpc::push::WindowedPush;
use crate::schema::service_capnp::{database, watch_change, watch_sink};
use crate::store::FeedItem;

/// The most one page's push can take in the write queue, reserved before each page is read.
pub const PAGE_ROOM: usize = WATCH.room();
const PAGE_LIMIT: PageLimit = WATCH.limit;
/// Pushes in flight before waiting for the watcher's acknowledgements.
const WATCH_WINDOW: usize = 4;

/// What a watcher asked for.
pub struct WatchRequest {
    table: Option<TableName>,
    prefix: KeyPrefix,
    initial_state: bool,
    resume: Option<u64>,
}

impl WatchRequest {
    /// Decodes and checks the watch arguments.
    pub fn decode(db: &DbName, params: database::watch_params::Reader<'_>) -> Result<WatchRequest> {
        let table = text(params.get_table())?;
        let table = (!table.is_empty())
            .then(|| TableName::parse(table))
            .transpose()?;
        let initial_state = params.get_initial_state();
        if initial_state && table.is_none() {
            return Err(Error::invalid("initialState needs a table"));
        }
        let marker = params
            .get_resume_marker()
            .map_err(|e| Error::invalid(e.extra))?;
        let resume = (!marker.is_empty())
            .then(|| parse_marker(db, marker))
            .transpose()?;
        Ok(WatchRequest {
            table,
            prefix: KeyPrefix::parse(text(params.get_prefix())?)?,
            initial_state,
            resume,
        })
    }
}

/// Streams changes until the sink fails (the watcher left) or the node stops, within the
/// outgoing room of the watcher's connection (`budget`).
pub async fn run(
    node: &Arc<Node>,
    db: &DbName,
    request: WatchRequest,
    sink: watch_sink::Client,
    budget: Rc<ConnectionBudget>,
) -> capnp::Result<()> {
    let mut pusher = WindowedPush::new(budget, WATCH_WINDOW)?;
    let mut commits = node.subscribe();
    // Registered before `now` is read: collection keeps every head's change until it moves.
    let position = node.watch_position(db);
    let now = node.store().state(db)?.next_change;
    let mut from = match request.resume {
        Some(sequence) if sequence > now => {
            return Err(Error::invalid(
                "resume marker is ahead of this database's changes (from another node?)",
            )
            .into());
        }
        Some(sequence) => {
            // Before any initial state: a refused watcher gets the error alone.
            crate::store::check_feed_floor(sequence, node.store().feed_floor(db)?)?;
            sequence
        }
        None => now,
    };
    position.set(from);
    if let (true, Some(table)) = (request.initial_state, &request.table) {
        push_initial(
            node,
            db,
            table,
            &request.prefix,
            marker(db, from),
            &sink,
            &mut pusher,
        )
        .await?;
    }
    loop {
        commits.mark_seen();
        let room = pusher.room(PAGE_ROOM).await?;
        let page = node.store().read_changes(
            db,
            from,
            request.table.as_ref(),
            &request.prefix,
            PAGE_LIMIT,
        )?;
        from = page.next;
        position.set(from);
        if !page.items.is_empty() {
            pusher
                .send(room, change_request(db, &sink, &page.items))
                .await?;
        }
        if !page.full && commits.changed().await.is_err() {
            return pusher.finish().await;
        }
    }
}

async fn push_initial(
    node: &Arc<Node>,
    db: &DbName,
    table: &TableName,
    prefix: &KeyPrefix,
    marker: Vec<u8>,
    sink: &watch_sink::Client,
    pusher: &mut WindowedPush,
) -> capnp::Result<()> {
    let mut after: Option<String> = None;
    loop {
        let room = pusher.room(PAGE_ROOM).await?;
        let rows = node
            .store()
            .scan_page(db, table, prefix, after.as_deref(), PAGE_LIMIT)?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = Some(last.key.clone());
        let mut request = sink.push_request();
        let mut list = request.get().init_changes(rows.len() as u32);
        for (i, row) in rows.iter().enumerate() {
            let mut out = list.reborrow().get(i as u32);
            out.set_table(table.as_str());
            out.set_key(row.key.as_str());
            out.set_put(&row.value);
            out.set_initial(true);
            out.set_resume_marker(&marker);
        }
        pusher.send(room, request).await?;
    }
}

type PushRequest = capnp::capability::StreamingRequest<watch_sink::push_params::Owned>;

fn change_request(db: &DbName, sink: &watch_sink::Client, items: &[FeedItem]) -> PushRequest {
    let mut request = sink.push_request();
    let mut list = request.get().init_changes(items.len() as u32);
    for (i, item) in items.iter().enumerate() {
        write_change(db, item, list.reborrow().get(i as u32));
    }
    request
}

fn write_change(db: &DbName, item: &FeedItem, mut out: watch_change::Builder<'_>) {
    out.set_table(item.change.table.as_str());
    out.set_key(item.change.row.as_str());
    if item.change.deleted {
        out.set_delete(());
    } else {
        out.set_put(&item.value);
    }
    out.set_from_sync(item.change.from_sync);
    out.set_resume_marker(&marker(db, item.sequence + 1));
}

fn marker(db: &DbName, sequence: u64) -> Vec<u8> {
    [db_tag(db).to_be_bytes(), sequence.to_be_bytes()].concat()
}

fn parse_marker(db: &DbName, bytes: &[u8]) -> Result<u64> {
    let damaged = || Error::invalid("resume marker is damaged or from another database");
    let (tag, sequence) = bytes
        .split_at_checked(8)
        .filter(|(_, rest)| rest.len() == 8)
        .ok_or_else(damaged)?;
    if tag != db_tag(db).to_be_bytes() {
        return Err(damaged());
    }
    Ok(u64::from_be_bytes(
        sequence.try_into().map_err(|_| damaged())?,
    ))
}

fn db_tag(db: &DbName) -> u64 {
    xxhash_rust::xxh3::xxh3_64(db.as_str().as_bytes())
}

fn text(reader: capnp::Result<capnp::text::Reader<'_>>) -> Result<&str> {
    reader
        .map_err(|e| Error::invalid(e.extra))?
        .to_str()
        .map_err(|_| Error::invalid("text argument is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_refuse_other_databases() {
        let (a, b) = (DbName::parse("a").unwrap(), DbName::parse("b").unwrap());
        assert_eq!(parse_marker(&a, &marker(&a, 42)).unwrap(), 42);
        assert!(parse_marker(&b, &marker(&a, 42)).is_err());
        assert!(parse_marker(&a, &[1, 2, 3]).is_err());
    }

    /// A change on the wire for a row of `key_len` key bytes and `value_len` value bytes in a
    /// table with the longest name.
    fn item(sequence: u64, key_len: usize, value_len: usize) -> FeedItem {
        FeedItem {
            sequence,
            change: crate::store::Change {
                table: "t".repeat(crate::names::MAX_NAME_BYTES),
                row: format!("{sequence:0>width$}", width = key_len),
                version: crate::store::Version(sequence),
                deleted: false,
                from_sync: true,
            },
            value: vec![7; value_len],
        }
    }

    #[test]
    fn the_largest_watch_page_fits_its_bound_under_the_message_limit() {
        let db = DbName::parse("db").unwrap();
        let key = crate::names::MAX_KEY_BYTES;
        let small = WATCH.limit.bytes / WATCH.limit.items - key;
        let mut items: Vec<_> = (1..WATCH.limit.items as u64)
            .map(|i| item(i, key, small))
            .collect();
        items.push(item(0, key, crate::names::MAX_VALUE_BYTES));
        let mut message = capnp::message::Builder::new_default();
        let params = message.init_root::<watch_sink::push_params::Builder<'_>>();
        let mut list = params.init_changes(items.len() as u32);
        for (i, item) in items.iter().enumerate() {
            write_change(&db, item, list.reborrow().get(i as u32));
        }
        let bytes = message.size_in_words() * 8 + crate::paging::MESSAGE_OVERHEAD;
        assert!(bytes <= WATCH.room(), "{bytes} > {}", WATCH.room());
    }
}
