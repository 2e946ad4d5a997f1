//! The storage key layout: every key the node writes is built here. Parts are joined by
//! `0xfe`, which never occurs in UTF-8; fixed-width binary parts (big-endian, so they sort)
//! come last in their key. ARCHITECTURE.md has the table.

use crate::genvec::{DeviceId, Generation};
use crate::store::records::Version;

/// The separator between the parts of a storage key.
pub const SEP: u8 = 0xfe;

/// `i 0xfe device`: this node's device id.
pub fn device_id() -> Vec<u8> {
    [b"i".as_slice(), &[SEP], b"device"].concat()
}

/// `i 0xfe epochs`: the history of this node's device ids (`Vec<Epoch>`).
pub fn epochs() -> Vec<u8> {
    [b"i".as_slice(), &[SEP], b"epochs"].concat()
}

/// `i 0xfe format`: the store's format version (`store::format`), a big-endian u32.
pub fn format_version() -> Vec<u8> {
    [b"i".as_slice(), &[SEP], b"format"].concat()
}

/// `c 0xfe db 0xfe`: the database catalog's prefix.
pub fn catalog_prefix() -> Vec<u8> {
    [b"c".as_slice(), &[SEP], b"db", &[SEP]].concat()
}

/// `c 0xfe db 0xfe <db>`: a database's catalog entry.
pub fn catalog(db: &str) -> Vec<u8> {
    [catalog_prefix().as_slice(), db.as_bytes()].concat()
}

/// `p 0xfe`: the prefix of peers added at run time.
pub fn peer_prefix() -> Vec<u8> {
    [b"p".as_slice(), &[SEP]].concat()
}

/// `p 0xfe <fingerprint>`: a peer added at run time.
pub fn peer(fingerprint: &str) -> Vec<u8> {
    [peer_prefix().as_slice(), fingerprint.as_bytes()].concat()
}

/// `g 0xfe <syncgroup name>` -> the database and id it names.
pub fn syncgroup_name(name: &str) -> Vec<u8> {
    [b"g".as_slice(), &[SEP], name.as_bytes()].concat()
}

/// `j 0xfe <syncgroup id>` -> the `Binding` the id got at first sight.
pub fn syncgroup_binding(id: u64) -> Vec<u8> {
    [b"j".as_slice(), &[SEP], &id.to_be_bytes()].concat()
}

/// `q 0xfe`: the prefix of the proposals (syncgroups published here, not accepted).
pub fn proposal_prefix() -> Vec<u8> {
    [b"q".as_slice(), &[SEP]].concat()
}

/// `q 0xfe <syncgroup name>` -> a `Proposal`.
pub fn proposal(name: &str) -> Vec<u8> {
    [proposal_prefix().as_slice(), name.as_bytes()].concat()
}

/// `v 0xfe <hash of the secret>` -> an invite this node minted.
pub fn invite(hash: &str) -> Vec<u8> {
    [b"v".as_slice(), &[SEP], hash.as_bytes()].concat()
}

/// Builds the keys of one database: everything under `d 0xfe <db> 0xfe`.
#[derive(Debug, Clone)]
pub struct DbKeys {
    prefix: Vec<u8>,
}

impl DbKeys {
    pub fn new(db: &str) -> DbKeys {
        DbKeys {
            prefix: [b"d".as_slice(), &[SEP], db.as_bytes(), &[SEP]].concat(),
        }
    }

    fn key(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut key = self.prefix.clone();
        for part in parts {
            key.extend_from_slice(part);
        }
        key
    }

    /// `r 0xfe <table> 0xfe`: the prefix of a table's row heads.
    pub fn table_prefix(&self, table: &str) -> Vec<u8> {
        self.key(&[b"r", &[SEP], table.as_bytes(), &[SEP]])
    }

    /// `r 0xfe <table> 0xfe <row>` -> RowHead.
    pub fn row(&self, table: &str, row: &str) -> Vec<u8> {
        self.key(&[b"r", &[SEP], table.as_bytes(), &[SEP], row.as_bytes()])
    }

    /// `n 0xfe <table> 0xfe <row> 0xfe <version>` -> DagNode.
    pub fn node(&self, table: &str, row: &str, version: Version) -> Vec<u8> {
        let version = version.0.to_be_bytes();
        self.key(&[
            b"n",
            &[SEP],
            table.as_bytes(),
            &[SEP],
            row.as_bytes(),
            &[SEP],
            &version,
        ])
    }

    /// `n 0xfe <table> 0xfe <row> 0xfe`: the prefix of one row's DAG nodes.
    pub fn node_prefix(&self, table: &str, row: &str) -> Vec<u8> {
        self.key(&[
            b"n",
            &[SEP],
            table.as_bytes(),
            &[SEP],
            row.as_bytes(),
            &[SEP],
        ])
    }

    /// `o 0xfe`: the log's prefix.
    pub fn log_prefix(&self) -> Vec<u8> {
        self.key(&[b"o", &[SEP]])
    }

    /// `o 0xfe <position>` -> LogEntry.
    pub fn log(&self, position: u64) -> Vec<u8> {
        self.key(&[b"o", &[SEP], &position.to_be_bytes()])
    }

    /// `l 0xfe`: the prefix of the (device, generation) -> position index.
    pub fn index_prefix(&self) -> Vec<u8> {
        self.key(&[b"l", &[SEP]])
    }

    /// `l 0xfe <device> <generation>` -> position.
    pub fn index(&self, device: DeviceId, generation: Generation) -> Vec<u8> {
        self.key(&[
            b"l",
            &[SEP],
            &device.0.to_be_bytes(),
            &generation.get().to_be_bytes(),
        ])
    }

    /// `m 0xfe <device>` -> Mark: the highest generation of the device logged here.
    pub fn mark(&self, device: DeviceId) -> Vec<u8> {
        self.key(&[b"m", &[SEP], &device.0.to_be_bytes()])
    }

    /// `w 0xfe <sequence>` -> Change: the watch feed.
    pub fn change(&self, sequence: u64) -> Vec<u8> {
        self.key(&[b"w", &[SEP], &sequence.to_be_bytes()])
    }

    /// `w 0xfe`: the watch feed's prefix.
    pub fn change_prefix(&self) -> Vec<u8> {
        self.key(&[b"w", &[SEP]])
    }

    /// `s` -> SyncState.
    pub fn state(&self) -> Vec<u8> {
        self.key(&[b"s"])
    }

    /// `p` -> `Vec<Generation>`: the first generation of each of the last opens (mark points).
    pub fn mark_points(&self) -> Vec<u8> {
        self.key(&[b"p"])
    }

    /// `k` -> Knowledge.
    pub fn knowledge(&self) -> Vec<u8> {
        self.key(&[b"k"])
    }

    /// `z` -> Knowledge: the collection floor, per scope the generations below which this
    /// node may have collected records (history garbage collection, `store::collect`).
    pub fn floor(&self) -> Vec<u8> {
        self.key(&[b"z"])
    }

    /// `f` -> u64: the watch feed's floor, the lowest sequence a watch may resume from
    /// (`store::collect` removed changes below it; 0 or absent: none).
    pub fn feed_floor(&self) -> Vec<u8> {
        self.key(&[b"f"])
    }

    /// `e` -> `Vec<Notice>`: this node's epoch notices, announced to peers (`store::notice`).
    pub fn announced_notices(&self) -> Vec<u8> {
        self.key(&[b"e"])
    }

    /// `a` -> `Vec<Notice>`: the epoch notices taken from peers (`store::notice`).
    pub fn taken_notices(&self) -> Vec<u8> {
        self.key(&[b"a"])
    }

    /// `u 0xfe`: the prefix of the resume cursors kept with peers.
    pub fn resume_prefix(&self) -> Vec<u8> {
        self.key(&[b"u", &[SEP]])
    }

    /// `u 0xfe <fingerprint>` -> ResumeCursor: where the catch-up from that peer resumes.
    pub fn resume(&self, peer: &str) -> Vec<u8> {
        self.key(&[b"u", &[SEP], peer.as_bytes()])
    }

    /// `y 0xfe`: the prefix of the members' knowledge reports.
    pub fn member_prefix(&self) -> Vec<u8> {
        self.key(&[b"y", &[SEP]])
    }

    /// `y 0xfe <fingerprint>` -> `Reports`: what that member said it knows, its last few
    /// reports (`store::members`).
    pub fn member(&self, peer: &str) -> Vec<u8> {
        self.key(&[b"y", &[SEP], peer.as_bytes()])
    }

    /// `g 0xfe`: the prefix of the database's syncgroups.
    pub fn syncgroup_prefix(&self) -> Vec<u8> {
        self.key(&[b"g", &[SEP]])
    }

    /// `g 0xfe <id>` -> SyncgroupRecord: a syncgroup's current version.
    pub fn syncgroup(&self, id: u64) -> Vec<u8> {
        self.key(&[b"g", &[SEP], &id.to_be_bytes()])
    }

    /// `h 0xfe`: the prefix of the database's syncgroups' local states.
    pub fn syncgroup_local_prefix(&self) -> Vec<u8> {
        self.key(&[b"h", &[SEP]])
    }

    /// `h 0xfe <id>` -> LocalState: this node's own state of a syncgroup.
    pub fn syncgroup_local(&self, id: u64) -> Vec<u8> {
        self.key(&[b"h", &[SEP], &id.to_be_bytes()])
    }
}

/// Reads the big-endian u64 that ends `key`.
pub fn trailing_u64(key: &[u8]) -> Option<u64> {
    let tail = key.len().checked_sub(8).map(|start| &key[start..])?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_parts_sort_numerically() {
        let keys = DbKeys::new("db");
        assert!(keys.log(255) < keys.log(256));
        assert!(
            keys.index(DeviceId(1), Generation::MAX) < keys.index(DeviceId(2), Generation::NONE)
        );
        assert_eq!(trailing_u64(&keys.log(77)), Some(77));
    }

    #[test]
    fn index_key_bytes_stay_those_an_existing_store_holds() {
        let key = DbKeys::new("db").index(
            DeviceId(0x0102_0304_0506_0708),
            Generation::new(0x1112_1314_1516_1718),
        );
        let mut expected = b"d\xfedb\xfel\xfe".to_vec();
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        expected.extend_from_slice(&[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]);
        assert_eq!(key, expected);
    }

    #[test]
    fn databases_do_not_share_keys() {
        let (a, b) = (DbKeys::new("a"), DbKeys::new("ab"));
        assert!(!b.row("t", "k").starts_with(&a.table_prefix("t")));
        assert!(
            !a.row("t", "k")
                .starts_with(&DbKeys::new("a\u{1}").log_prefix())
        );
    }
}
