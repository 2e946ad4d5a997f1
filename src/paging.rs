//! How much one streamed message may carry. Every stream the node pushes (scan pages, watch
//! pages, GetDeltas data pages and syncgroup pages; blob chunk streams will declare theirs
//! here too) fills its pages through a [`PageFill`] under a [`PageLimit`] (items and bytes),
//! and declares a [`StreamBound`]: the most one of its messages can take on the wire, the
//! room its pusher reserves before reading a page. Every bound is checked at compile time to
//! stay under [`MAX_STREAM_MESSAGE_BYTES`], half the message limit, so the largest legal row
//! (or app batch) always fits one message with room to spare, on the node's side and on the
//! reader's (`rpc::reader_options`, the same 64 MiB everywhere).
//!
//! The rule: an item goes into a page only if the page is empty (so the largest item goes,
//! alone) or it keeps the page within both limits; a group that must not be split (an app
//! batch in a data page) may continue a page past its limits, but never past its bound.

use crate::names::{
    MAX_BATCH_BYTES, MAX_BATCH_OPS, MAX_KEY_BYTES, MAX_NAME_BYTES, MAX_VALUE_BYTES,
};

/// Largest message any connection reads or writes (64 MiB; `rpc::MAX_MESSAGE_WORDS`).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Most bytes one streamed message may take: half the message limit, the room to spare.
pub const MAX_STREAM_MESSAGE_BYTES: usize = MAX_MESSAGE_BYTES / 2;
/// Encoded bytes of a pushed call besides its items (the Call message's header and framing).
pub const MESSAGE_OVERHEAD: usize = 256;

/// How much one page may hold: at most `items` items and about `bytes` payload bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit {
    pub items: usize,
    pub bytes: usize,
}

/// A stream's worst case: its page limit, the largest group of items that goes whole (one
/// row; an app batch for data pages) and may take a page past its limit, and the encoded
/// overhead of each item beyond its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamBound {
    pub limit: PageLimit,
    pub group_bytes: usize,
    pub group_items: usize,
    pub item_overhead: usize,
}

impl StreamBound {
    /// Most payload bytes in one page.
    pub const fn max_payload(&self) -> usize {
        self.limit.bytes + self.group_bytes
    }

    /// Most items in one page.
    pub const fn max_items(&self) -> usize {
        self.limit.items + self.group_items
    }

    /// Most bytes one page's message can take.
    pub const fn room(&self) -> usize {
        self.max_payload() + self.max_items() * self.item_overhead + MESSAGE_OVERHEAD
    }

    /// Bytes a pusher reserves before reading a page: the page limit plus one largest row,
    /// with every item's overhead. A page past that (one keeping an app batch whole, a large
    /// syncgroup version) grows its reservation to its size, at most [`StreamBound::room`],
    /// before it is sent.
    pub const fn usual_room(&self) -> usize {
        let rows = if self.group_bytes < MAX_ROW_BYTES {
            self.group_bytes
        } else {
            MAX_ROW_BYTES
        };
        self.limit.bytes + rows + (self.limit.items + 1) * self.item_overhead + MESSAGE_OVERHEAD
    }
}

/// Payload bytes of the largest row: a table name, a key and a value.
pub const MAX_ROW_BYTES: usize = MAX_NAME_BYTES + MAX_KEY_BYTES + MAX_VALUE_BYTES;

/// Scan pages: 1,024 rows or 1 MiB of keys and values. Each row costs a struct and two
/// pointers with padding on the wire.
pub const SCAN: StreamBound = StreamBound {
    limit: PageLimit {
        items: 1024,
        bytes: 1 << 20,
    },
    group_bytes: MAX_ROW_BYTES,
    group_items: 1,
    item_overhead: 48,
};

/// Watch pages (initial state and change feed): 1,024 rows or 1 MiB of keys and values. A
/// change also carries its table name and its 16-byte resume marker.
pub const WATCH: StreamBound = StreamBound {
    limit: PageLimit {
        items: 1024,
        bytes: 1 << 20,
    },
    group_bytes: MAX_ROW_BYTES,
    group_items: 1,
    item_overhead: 160 + MAX_NAME_BYTES,
};

/// GetDeltas data pages: 4,096 records or 2 MiB of payload ([`crate::store::LogRecord`]'s
/// `payload_len`), plus one whole app batch (at most [`MAX_BATCH_BYTES`] of names, keys and
/// values and 64 bytes per record), which a page never splits.
pub const DATA: StreamBound = StreamBound {
    limit: PageLimit {
        items: 4096,
        bytes: 2 << 20,
    },
    group_bytes: MAX_BATCH_BYTES + MAX_BATCH_OPS * 64,
    group_items: MAX_BATCH_OPS,
    item_overhead: 192,
};

/// Syncgroup metadata pages: 256 syncgroup versions or 1 MiB of their estimated encoding
/// (`syncgroup::SyncgroupRecord::wire_estimate`), plus one knowledge vector per syncgroup.
/// One version goes alone however large (a syncgroup at its member limit is a few MiB).
pub const SYNCGROUPS: StreamBound = StreamBound {
    limit: PageLimit {
        items: 256,
        bytes: 1 << 20,
    },
    group_bytes: MAX_SYNCGROUP_WIRE_BYTES,
    group_items: 1,
    item_overhead: 1024,
};

/// The largest syncgroup version's estimated encoding that a page is sized for; the pusher
/// grows its reservation for a larger one, which still must fit one message.
pub const MAX_SYNCGROUP_WIRE_BYTES: usize = 8 << 20;

const _: () = {
    assert!(SCAN.room() <= MAX_STREAM_MESSAGE_BYTES);
    assert!(WATCH.room() <= MAX_STREAM_MESSAGE_BYTES);
    assert!(DATA.room() <= MAX_STREAM_MESSAGE_BYTES);
    assert!(SYNCGROUPS.room() <= MAX_STREAM_MESSAGE_BYTES);
};

/// One page being filled under a [`PageLimit`].
#[derive(Debug, Clone)]
pub struct PageFill {
    limit: PageLimit,
    items: usize,
    bytes: usize,
}

impl PageFill {
    pub fn new(limit: PageLimit) -> PageFill {
        PageFill {
            limit,
            items: 0,
            bytes: 0,
        }
    }

    /// Whether an item of `bytes` fits: the first always does (the largest item goes alone),
    /// a later one only if the page stays within both limits.
    pub fn fits(&self, bytes: usize) -> bool {
        self.items == 0
            || (self.items < self.limit.items
                && self.bytes.saturating_add(bytes) <= self.limit.bytes)
    }

    /// Whether an item of `bytes` continuing a group that must not be split fits: past the
    /// limit, but within `bound`'s most items and payload.
    pub fn fits_in_group(&self, bytes: usize, bound: &StreamBound) -> bool {
        self.fits(bytes)
            || (self.items < bound.max_items()
                && self.bytes.saturating_add(bytes) <= bound.max_payload())
    }

    /// Counts an item that fitted.
    pub fn add(&mut self, bytes: usize) {
        self.items += 1;
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Adds the item if it [fits](PageFill::fits); whether it did.
    pub fn take(&mut self, bytes: usize) -> bool {
        let fits = self.fits(bytes);
        if fits {
            self.add(bytes);
        }
        fits
    }

    /// Whether no further item fits (the item limit is reached).
    pub fn is_full(&self) -> bool {
        self.items >= self.limit.items || self.bytes >= self.limit.bytes
    }

    pub fn items(&self) -> usize {
        self.items
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: PageLimit = PageLimit {
        items: 3,
        bytes: 100,
    };

    #[test]
    fn the_first_item_always_fits_however_large() {
        let mut fill = PageFill::new(SMALL);
        assert!(fill.take(MAX_ROW_BYTES));
        assert!(!fill.fits(1), "nothing joins a page already past its bytes");
    }

    #[test]
    fn an_item_fits_only_within_both_limits() {
        let mut fill = PageFill::new(SMALL);
        assert!(fill.take(60));
        assert!(!fill.fits(41), "60 + 41 bytes is over 100");
        assert!(fill.take(40));
        assert!(!fill.fits(1), "100 bytes reached");
        assert!(fill.is_full());
        let mut counted = PageFill::new(SMALL);
        for _ in 0..3 {
            assert!(counted.take(1));
        }
        assert!(!counted.fits(1), "three items reached");
        assert!(counted.is_full());
        assert_eq!((counted.items(), counted.bytes()), (3, 3));
    }

    #[test]
    fn a_group_continues_past_the_limit_but_never_past_its_bound() {
        let bound = StreamBound {
            limit: SMALL,
            group_bytes: 50,
            group_items: 2,
            item_overhead: 0,
        };
        let mut fill = PageFill::new(SMALL);
        fill.add(90);
        assert!(!fill.fits(30));
        assert!(fill.fits_in_group(30, &bound));
        fill.add(30);
        assert!(fill.fits_in_group(30, &bound), "150 bytes is the bound");
        fill.add(30);
        assert!(!fill.fits_in_group(1, &bound), "payload bound reached");
        let mut many = PageFill::new(SMALL);
        for _ in 0..5 {
            assert!(many.fits_in_group(1, &bound));
            many.add(1);
        }
        assert!(!many.fits_in_group(1, &bound), "item bound reached");
    }

    #[test]
    fn in_every_stream_a_largest_row_starts_a_page_of_its_own_unless_the_page_is_empty() {
        for bound in [SCAN, WATCH, DATA, SYNCGROUPS] {
            let mut fill = PageFill::new(bound.limit);
            fill.add(bound.limit.bytes - 1);
            assert!(!fill.fits(MAX_ROW_BYTES), "a big row starts its own page");
            assert!(PageFill::new(bound.limit).fits(MAX_ROW_BYTES));
        }
    }
}
