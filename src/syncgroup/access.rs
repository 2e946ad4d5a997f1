//! A syncgroup's permissions (the original's `access.Permissions`): per access tag, the
//! identities admitted and those refused. Entries are key fingerprints, or `...` for every
//! authenticated peer; a refusal beats an admission. Tags are independent, as in the
//! original: an admin who should also read and write is listed under all three, which is what
//! [`Permissions::only`] and [`Permissions::grant`] do.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::identity::Fingerprint;

/// The entry that admits every authenticated peer.
pub const EVERYONE: &str = "...";
/// Most entries in one access list.
pub const MAX_ENTRIES: usize = 1024;

/// The original's access tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tag {
    Admin,
    Debug,
    Read,
    Write,
    Resolve,
}

/// The level an invite grants: the tags its joiner is added to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    Read,
    ReadWrite,
    Admin,
}

impl Level {
    /// The tags this level lists its holder under.
    pub fn tags(self) -> &'static [Tag] {
        match self {
            Level::Read => &[Tag::Read],
            Level::ReadWrite => &[Tag::Read, Tag::Write],
            Level::Admin => &[Tag::Read, Tag::Write, Tag::Admin],
        }
    }
}

/// Who is admitted under one tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessList {
    pub allowed: BTreeSet<String>,
    pub denied: BTreeSet<String>,
}

/// Tag -> access list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions(pub BTreeMap<Tag, AccessList>);

impl Permissions {
    /// Only `who`, as admin, reader and writer.
    pub fn only(who: &Fingerprint) -> Permissions {
        let mut perms = Permissions::default();
        perms.grant(Level::Admin, who);
        perms
    }

    /// Whether `who` holds `tag`.
    pub fn allows(&self, tag: Tag, who: &Fingerprint) -> bool {
        self.0.get(&tag).is_some_and(|list| {
            let admitted = list.allowed.contains(who.as_str()) || list.allowed.contains(EVERYONE);
            admitted && !list.denied.contains(who.as_str())
        })
    }

    /// Lists `who` under every tag of `level` (and lifts any refusal there).
    pub fn grant(&mut self, level: Level, who: &Fingerprint) {
        for tag in level.tags() {
            let list = self.0.entry(*tag).or_default();
            list.allowed.insert(who.as_str().to_owned());
            list.denied.remove(who.as_str());
        }
    }

    /// Removes `who` from every tag, and refuses it where `...` would still admit it;
    /// whether anything changed.
    pub fn revoke(&mut self, who: &Fingerprint) -> bool {
        let mut changed = false;
        for list in self.0.values_mut() {
            changed |= list.allowed.remove(who.as_str());
            if list.allowed.contains(EVERYONE) {
                changed |= list.denied.insert(who.as_str().to_owned());
            }
        }
        changed
    }

    /// Every entry is a fingerprint or `...` (refusals: fingerprints only), lists are bounded,
    /// and someone holds Admin.
    pub fn validate(&self) -> Result<()> {
        for (tag, list) in &self.0 {
            if list.allowed.len() + list.denied.len() > MAX_ENTRIES {
                return Err(Error::invalid(format!(
                    "the {tag:?} access list has more than {MAX_ENTRIES} entries"
                )));
            }
            for entry in &list.allowed {
                if entry != EVERYONE {
                    check_identity(*tag, entry)?;
                }
            }
            for entry in &list.denied {
                check_identity(*tag, entry)?;
            }
        }
        let has_admin = self
            .0
            .get(&Tag::Admin)
            .is_some_and(|list| !list.allowed.is_empty());
        if !has_admin {
            return Err(Error::invalid(
                "the permissions name no admin (someone must hold Admin)",
            ));
        }
        Ok(())
    }
}

fn check_identity(tag: Tag, entry: &str) -> Result<()> {
    Fingerprint::parse(entry).map(drop).map_err(|_| {
        Error::invalid(format!(
            "{tag:?} access list entry {entry:?} is neither a 64-hex-digit identity nor \"...\""
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> Fingerprint {
        Fingerprint::parse(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn only_grants_all_three_tags_to_one_identity() {
        let perms = Permissions::only(&id('a'));
        for tag in [Tag::Admin, Tag::Read, Tag::Write] {
            assert!(perms.allows(tag, &id('a')));
            assert!(!perms.allows(tag, &id('b')));
        }
        assert!(!perms.allows(Tag::Debug, &id('a')));
        perms.validate().unwrap();
    }

    #[test]
    fn refusals_beat_everyone_and_revoking_refuses() {
        let mut perms = Permissions::only(&id('a'));
        perms
            .0
            .entry(Tag::Read)
            .or_default()
            .allowed
            .insert(EVERYONE.into());
        assert!(perms.allows(Tag::Read, &id('c')));
        assert!(perms.revoke(&id('c')));
        assert!(!perms.allows(Tag::Read, &id('c')));
        perms.grant(Level::Read, &id('c'));
        assert!(perms.allows(Tag::Read, &id('c')));
        assert!(!perms.allows(Tag::Write, &id('c')));
    }

    #[test]
    fn bad_permissions_are_refused() {
        assert!(Permissions::default().validate().is_err());
        let mut perms = Permissions::only(&id('a'));
        perms
            .0
            .entry(Tag::Write)
            .or_default()
            .allowed
            .insert("alice".into());
        let error = perms.validate().unwrap_err().to_string();
        assert!(
            error.starts_with("InvalidArgument: Write access list"),
            "{error}"
        );
    }
}
