//! What a syncgroup id is bound to. At first sight (a create, a join reply, an accepted
//! publish) an id is bound to its name, database, creator and prefixes, and the binding never
//! changes: a later version of that id, by publish or by metadata sync, must carry the same
//! four, and a publish or join reply naming a known id under another name or creator fails
//! with `Exist:` and changes nothing. Without this, a syncgroup's id (visible to every member,
//! past or present) would be enough to replace the syncgroup at a node (issue 9, finding 2).

use serde::{Deserialize, Serialize};

use super::{Syncgroup, SyncgroupName};
use crate::error::{Error, Result};
use crate::genvec::Scope;
use crate::identity::Fingerprint;

/// The fixed fields of a syncgroup id, stored once per id (`j 0xfe <id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub name: SyncgroupName,
    pub db: String,
    pub creator: Fingerprint,
    pub prefixes: Vec<Scope>,
}

impl Binding {
    /// The binding a syncgroup makes at first sight.
    pub fn of(sg: &Syncgroup) -> Binding {
        Binding {
            name: sg.name.clone(),
            db: sg.db.clone(),
            creator: sg.creator.clone(),
            prefixes: sg.spec.prefixes.clone(),
        }
    }

    /// Fails with `Exist:` unless `sg` keeps every field this id is bound to.
    pub fn check(&self, sg: &Syncgroup) -> Result<()> {
        if *self == Binding::of(sg) {
            return Ok(());
        }
        Err(Error::Exist(format!(
            "syncgroup id {} is bound here to syncgroup {} of database {:?} (creator {}); \
             {} of database {:?} cannot take it over",
            sg.id.to_hex(),
            self.name,
            self.db,
            self.creator,
            sg.name,
            sg.db
        )))
    }
}
