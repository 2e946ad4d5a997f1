//! Reading a database's log for a peer (the responder's side of GetDeltas, reference §2.3):
//! entries go out in the order this node learned them, so parents always precede children,
//! filtered to the initiator's scopes and to what its knowledge says it lacks, never sending
//! records the initiator made, nor echoing records it sent here during its session. A page
//! that reaches the end of the log carries this node's knowledge for the initiator's scopes,
//! read from the same snapshot; that claim is what lets the initiator advance its own
//! knowledge.
//!
//! Also the change feed read by watchers, and its floor: the lowest sequence a watcher may
//! resume from once history collection removed changes (`store::collect`). A read from below
//! it is refused (`Compacted:`) rather than served with holes, as etcd refuses a watch from a
//! compacted revision.

use syncbase_storage::{ReadTxn, Scan, prefix_end};

use crate::error::{Error, Result};
use crate::genvec::{DeviceId, Generation, Knowledge};
use crate::paging::{self, PageFill, PageLimit};
use crate::store::epoch::Mark;
use crate::store::keys::{DbKeys, trailing_u64};
use crate::store::notice::Notice;
use crate::store::records::{Change, EntryKind, LogEntry, LogRecord, RecordContent, decode};
use crate::store::writer::{load_floor, load_knowledge, load_node, load_state};

/// What an initiator asked for, and where the responder's cursor stands.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<'a> {
    /// The initiator's device: its own records are never sent back.
    pub initiator: DeviceId,
    /// The initiator's knowledge for the scopes it syncs; only records under these scopes,
    /// newer than what it knows, are sent.
    pub knowledge: &'a Knowledge,
    /// The first log position to look at.
    pub position: u64,
    /// Records the initiator sent here are skipped (never echoed back) only from this log
    /// position on: the log's end when its session began. Older ones go back like any other
    /// record its knowledge does not cover, since a store restored from a copy may lack what
    /// it once sent.
    pub echoes_from: u64,
    pub max_records: usize,
    pub max_bytes: usize,
}

/// One page of records for an initiator.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub records: Vec<LogRecord>,
    /// Where the next page starts.
    pub next_position: u64,
    /// This node's knowledge for the initiator's scopes, when the page reached the log's end.
    pub knowledge: Option<Knowledge>,
    /// Log entries after this page, not yet examined for the initiator.
    pub remaining: u64,
    /// Where this page ends, as a resume token for the initiator (`store::resume`); the
    /// responder fills it in.
    pub resume: Vec<u8>,
    /// With the knowledge, set by the responder: the initiator's records at the generations it
    /// asked about, as held here (see `store::epoch`).
    pub initiator_marks: Vec<Mark>,
    /// On the first page of a session, set by the responder: its epoch notices for the
    /// database (`store::notice`).
    pub notices: Vec<Notice>,
}

/// Reads the next page of records the initiator lacks.
pub fn read_page(
    txn: &dyn ReadTxn,
    keys: &DbKeys,
    me: DeviceId,
    request: &PageRequest<'_>,
) -> Result<Page> {
    let state = load_state(txn, keys)?;
    let collecting = !load_floor(txn, keys)?.is_empty();
    let mut page = Page {
        next_position: request.position,
        ..Page::default()
    };
    let mut fill = PageFill::new(PageLimit {
        items: request.max_records,
        bytes: request.max_bytes,
    });
    let end = prefix_end(&keys.log_prefix());
    let mut failure = None;
    let mut full = false;
    txn.scan(
        &keys.log(request.position),
        end.as_deref(),
        &mut |key, value| {
            let position = trailing_u64(key).unwrap_or(page.next_position);
            match wanted_record(txn, keys, request, position, value, collecting) {
                Ok(Some(record)) => {
                    if !fits(&fill, page.records.last(), &record) {
                        full = true;
                        return Ok(Scan::Stop);
                    }
                    fill.add(record.payload_len());
                    page.records.push(record);
                }
                Ok(None) => {}
                Err(error) => {
                    failure = Some(error);
                    return Ok(Scan::Stop);
                }
            }
            page.next_position = position + 1;
            Ok(Scan::Continue)
        },
    )?;
    if let Some(error) = failure {
        return Err(error);
    }
    if !full {
        // The scan reached the log's end: positions after the last entry were collected
        // (`store::collect`), or never used.
        page.next_position = page.next_position.max(state.next_position);
    }
    page.remaining = state.next_position.saturating_sub(page.next_position);
    if page.next_position >= state.next_position {
        let scopes: Vec<_> = request
            .knowledge
            .iter()
            .map(|(scope, _)| scope.clone())
            .collect();
        let mine = load_knowledge(txn, keys)?;
        page.knowledge = Some(mine.request_for(&scopes, me, state.own_generation()));
    }
    Ok(page)
}

/// Whether `record` goes into the page after `last`: within the page's limits, or past them
/// (up to `paging::DATA`'s bound) when it continues the app batch `last` belongs to. A batch's
/// records are consecutive in the log and the batch limit (`names::MAX_BATCH_BYTES`) keeps
/// every batch within that bound, so a page never splits one and the initiator commits it at
/// once (only a batch written before the limit existed could be split).
fn fits(fill: &PageFill, last: Option<&LogRecord>, record: &LogRecord) -> bool {
    let bytes = record.payload_len();
    if last.is_some_and(|last| same_batch(last, record)) {
        fill.fits_in_group(bytes, &paging::DATA)
    } else {
        fill.fits(bytes)
    }
}

/// Whether two records come from the same app transaction.
fn same_batch(a: &LogRecord, b: &LogRecord) -> bool {
    match (&a.content, &b.content) {
        (RecordContent::Node(a), RecordContent::Node(b)) => {
            a.batch_id != 0 && a.batch_id == b.batch_id && a.device == b.device
        }
        _ => false,
    }
}

/// The record at one log entry, if the initiator should get it. In a store that collects
/// history (`collecting`), a write whose DAG node is gone is a version collected here,
/// superseded: it is skipped like a collected record. Another entry can still name it when
/// the same write was logged under two pairs (its writer's epoch logged it again) and only
/// one of them was under the cut, e.g. a collected head whose row head kept the node until a
/// later write replaced it (`store::collect`).
fn wanted_record(
    txn: &dyn ReadTxn,
    keys: &DbKeys,
    request: &PageRequest<'_>,
    position: u64,
    bytes: &[u8],
    collecting: bool,
) -> Result<Option<LogRecord>> {
    let entry: LogEntry = decode(bytes, "log entry")?;
    if !wanted(&entry, request, position) {
        return Ok(None);
    }
    let content = match entry.kind {
        EntryKind::Node => {
            // A version can be logged under two pairs (its writer's epoch logged it again, or
            // a catch-up by state took it under its own pair). Collecting the entry of one
            // pair removes the node: every member already holds the version, so the other
            // entry has nothing left to send.
            let mut node = match load_node(txn, keys, &entry.table, &entry.row, entry.version)? {
                Some(node) => node,
                None if collecting => return Ok(None),
                None => {
                    return Err(crate::error::Error::Internal(format!(
                        "log names a missing DAG node of {}",
                        crate::names::row_text(&entry.table, &entry.row)
                    )));
                }
            };
            // The entry names the record: a write logged again by its writer's epoch is sent
            // under its new pair even where the node was first stored under the old one.
            node.device = entry.device;
            node.generation = entry.generation;
            RecordContent::Node(node)
        }
        EntryKind::Link { parents, hlc } => RecordContent::Link {
            device: entry.device,
            generation: entry.generation,
            parents,
            hlc,
        },
    };
    Ok(Some(LogRecord {
        table: entry.table,
        row: entry.row,
        version: entry.version,
        content,
    }))
}

fn wanted(entry: &LogEntry, request: &PageRequest<'_>, position: u64) -> bool {
    let (table, row) = (entry.table.as_str(), entry.row.as_str());
    let echo = entry.from == request.initiator && position >= request.echoes_from;
    entry.device != request.initiator
        && !echo
        && request
            .knowledge
            .iter()
            .any(|(scope, _)| scope.covers(table, row))
        && entry.generation > request.knowledge.known_gen(table, row, entry.device)
}

/// The first log position holding a record the initiator may lack: the earliest position,
/// over every device in the log but the initiator, of any of its generations past what the
/// initiator knows in all its scopes. The log's end if there is none.
///
/// A device's generations are not logged in generation order: a record of a scope this node
/// gained later (a syncgroup joined) arrives after higher generations of the same device
/// from scopes it already had, and an epoch relogs a record in place under a new generation.
/// So every unknown generation's position counts, not just the lowest one's (scanning them
/// costs what the initiator lacks of that device, which the pages then send).
pub fn start_position(
    txn: &dyn ReadTxn,
    keys: &DbKeys,
    initiator: DeviceId,
    knowledge: &Knowledge,
) -> Result<u64> {
    let mut start = load_state(txn, keys)?.next_position;
    for device in logged_devices(txn, keys)? {
        if device == initiator {
            continue;
        }
        let known = knowledge
            .iter()
            .map(|(_, vector)| vector.get(device))
            .min()
            .unwrap_or_default();
        if let Some(position) = first_position_after(txn, keys, device, known)? {
            start = start.min(position);
        }
    }
    Ok(start)
}

/// Every device with records in the log, found by skipping from one device's index range to
/// the next.
fn logged_devices(txn: &dyn ReadTxn, keys: &DbKeys) -> Result<Vec<DeviceId>> {
    let prefix = keys.index_prefix();
    let end = prefix_end(&prefix);
    let mut devices = Vec::new();
    let mut from = prefix.clone();
    loop {
        let mut found = None;
        txn.scan(&from, end.as_deref(), &mut |key, _| {
            found = key
                .get(prefix.len()..prefix.len() + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            Ok(Scan::Stop)
        })?;
        let Some(device) = found else { break };
        devices.push(DeviceId(device));
        let Some(next) = device.checked_add(1) else {
            break;
        };
        from = [prefix.as_slice(), &next.to_be_bytes()].concat();
    }
    Ok(devices)
}

/// The lowest log position of any of `device`'s records with a generation above `known`.
fn first_position_after(
    txn: &dyn ReadTxn,
    keys: &DbKeys,
    device: DeviceId,
    known: Generation,
) -> Result<Option<u64>> {
    let start = keys.index(device, known.next());
    let end = prefix_end(&keys.index(device, Generation::NONE)[..keys.index_prefix().len() + 8]);
    let mut first: Option<u64> = None;
    txn.scan(&start, end.as_deref(), &mut |_, value| {
        if let Ok(bytes) = value.try_into() {
            let position = u64::from_be_bytes(bytes);
            first = Some(first.map_or(position, |first| first.min(position)));
        }
        Ok(Scan::Continue)
    })?;
    Ok(first)
}

/// One change from the watch feed, with the row's value at that version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedItem {
    pub sequence: u64,
    pub change: Change,
    pub value: Vec<u8>,
}

/// One read of the watch feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedPage {
    pub items: Vec<FeedItem>,
    /// The sequence to continue from: one past the last change looked at, so reading on from
    /// it neither skips nor repeats a change.
    pub next: u64,
    /// Whether the read stopped at a limit (more changes may follow) rather than at the
    /// feed's end.
    pub full: bool,
}

/// The watch feed's floor: every change from this sequence on that a watcher needs is still
/// in the feed (changes below it may have been removed by collection); 0 if none was.
pub fn load_feed_floor(txn: &dyn ReadTxn, keys: &DbKeys) -> Result<u64> {
    match txn.get(&keys.feed_floor())? {
        Some(bytes) => decode(&bytes, "watch feed floor"),
        None => Ok(0),
    }
}

/// Refuses (`Compacted:`) a read of the feed from `from`, a sequence below the feed's
/// `floor`: collection removed changes a watcher from there would need.
pub fn check_feed_floor(from: u64, floor: u64) -> Result<()> {
    if from >= floor {
        return Ok(());
    }
    Err(Error::Compacted(format!(
        "resume marker at change {from} is below this database's watch feed floor {floor}: \
         history collection removed changes after it; read the rows again (scan, or watch \
         with initialState) and watch from now"
    )))
}

/// Feed items from sequence `from` on whose row is in `table` (any table if None) and starts
/// with `prefix`, looking at up to `limit.items` changes and taking items while their key and
/// value bytes fit `limit.bytes` (`paging::PageFill`: a page always holds at least one item,
/// however large). Fails with `Compacted:` if `from` is below the feed's floor
/// ([`load_feed_floor`]), read in the same snapshot: a watcher collection overtook (its
/// marker came back after its watch ended) is told, never served a feed with holes.
pub fn read_changes(
    txn: &dyn ReadTxn,
    keys: &DbKeys,
    from: u64,
    table: Option<&str>,
    prefix: &str,
    limit: PageLimit,
) -> Result<FeedPage> {
    check_feed_floor(from, load_feed_floor(txn, keys)?)?;
    let end = prefix_end(&keys.change_prefix());
    let mut page = FeedPage {
        next: from,
        ..FeedPage::default()
    };
    let mut fill = PageFill::new(limit);
    let mut looked = 0;
    let mut failure = None;
    txn.scan(&keys.change(from), end.as_deref(), &mut |key, value| {
        let sequence = trailing_u64(key).unwrap_or_default();
        match feed_item(txn, keys, sequence, value, table, prefix) {
            Ok(Some(item)) => {
                if !fill.take(item.change.row.len() + item.value.len()) {
                    page.full = true;
                    return Ok(Scan::Stop);
                }
                page.items.push(item);
            }
            Ok(None) => {}
            Err(error) => {
                failure = Some(error);
                return Ok(Scan::Stop);
            }
        }
        page.next = sequence + 1;
        looked += 1;
        page.full = looked >= limit.items || fill.is_full();
        Ok(if page.full {
            Scan::Stop
        } else {
            Scan::Continue
        })
    })?;
    match failure {
        Some(error) => Err(error),
        None => Ok(page),
    }
}

fn feed_item(
    txn: &dyn ReadTxn,
    keys: &DbKeys,
    sequence: u64,
    bytes: &[u8],
    table: Option<&str>,
    prefix: &str,
) -> Result<Option<FeedItem>> {
    let change: Change = decode(bytes, "change")?;
    if table.is_some_and(|table| table != change.table) || !change.row.starts_with(prefix) {
        return Ok(None);
    }
    let value = if change.deleted {
        Vec::new()
    } else {
        match load_node(txn, keys, &change.table, &change.row, change.version)? {
            Some(node) => node.value,
            // Collected (`store::collect`): a later change of the row supersedes it.
            None => return Ok(None),
        }
    };
    Ok(Some(FeedItem {
        sequence,
        change,
        value,
    }))
}
