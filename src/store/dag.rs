//! An object's version DAG, read through a write transaction: the common-ancestor search of a
//! conflict (reference §2.5). Parents are a node's own parents plus those links added later
//! (a resolution makes the losing heads parents of the winner).

use std::collections::{HashSet, VecDeque};

use crate::error::Result;
use crate::store::records::Version;
use crate::store::writer::DbWriter;

/// Most nodes the ancestor search visits before giving up (it then reports none).
const MAX_ANCESTOR_VISITS: usize = 10_000;

/// The nearest common ancestor of `a` and `b`: the first version reached from both when
/// walking back from each one step at a time. None if the two histories are disjoint (two
/// first writes) or the search gives up.
pub fn common_ancestor(
    db: &DbWriter<'_>,
    table: &str,
    row: &str,
    a: Version,
    b: Version,
) -> Result<Option<Version>> {
    let mut sides = [Walk::from(a), Walk::from(b)];
    for _ in 0..MAX_ANCESTOR_VISITS {
        let mut stepped = false;
        for side in 0..2 {
            let Some(version) = sides[side].queue.pop_front() else {
                continue;
            };
            stepped = true;
            if sides[1 - side].seen.contains(&version) {
                return Ok(Some(version));
            }
            for parent in parents_of(db, table, row, version)? {
                if sides[side].seen.insert(parent) {
                    sides[side].queue.push_back(parent);
                }
            }
        }
        if !stepped {
            return Ok(None);
        }
    }
    Ok(None)
}

struct Walk {
    seen: HashSet<Version>,
    queue: VecDeque<Version>,
}

impl Walk {
    fn from(start: Version) -> Walk {
        Walk {
            seen: HashSet::from([start]),
            queue: VecDeque::from([start]),
        }
    }
}

fn parents_of(db: &DbWriter<'_>, table: &str, row: &str, version: Version) -> Result<Vec<Version>> {
    Ok(match db.node(table, row, version)? {
        Some(node) => node.parents.into_iter().chain(node.linked).collect(),
        None => Vec::new(),
    })
}
