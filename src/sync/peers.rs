//! The peers a node syncs with: each known by its fingerprint, with its address and the
//! (database, scopes) it shares, plus each peer's live status. A peer comes from one or both
//! of two sources: declared (the config file, or `peer add` at run time) and derived (the
//! members of the syncgroups this node belongs to, recomputed whenever a syncgroup changes).
//! Changes are published on a watch channel so the dialer and live responders follow them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::changes::{ChangeReceiver, Changes};
use crate::error::{Error, Result};
use crate::genvec::Scope;
use crate::identity::Fingerprint;
use crate::names::{DbName, KeyPrefix, TableName};
use crate::syncgroup::SyncgroupId;

/// A peer and what this node shares with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerConfig {
    /// host:port of its TLS peer listener.
    pub address: String,
    pub fingerprint: Fingerprint,
    /// Database name -> the scopes shared in it.
    pub databases: BTreeMap<String, BTreeSet<Scope>>,
    /// Declared in the config file (cannot be removed at run time).
    pub from_config: bool,
    /// The syncgroups shared with it (derived peers; never persisted). Its link restarts when
    /// the set changes, so the syncgroup metadata session asks for the new set.
    #[serde(skip)]
    pub syncgroups: BTreeSet<SyncgroupId>,
    /// Its name: a declared peer's local label (`peer add --name`), a derived peer's chosen
    /// name as a syncgroup member; "" if none. Shown beside the fingerprint, never trusted.
    #[serde(default)]
    pub name: String,
}

impl PeerConfig {
    /// A peer sharing `scopes` of `database`, with every name checked.
    pub fn new(
        address: &str,
        fingerprint: Fingerprint,
        database: &str,
        scopes: Vec<Scope>,
    ) -> Result<PeerConfig> {
        if address.trim().is_empty() {
            return Err(Error::invalid("peer address is empty"));
        }
        DbName::parse(database)?;
        if scopes.is_empty() {
            return Err(Error::invalid(
                "a peer needs at least one (table, prefix) scope",
            ));
        }
        for scope in &scopes {
            TableName::parse(&scope.table)?;
            KeyPrefix::parse(&scope.prefix)?;
        }
        let databases = BTreeMap::from([(database.to_owned(), scopes.into_iter().collect())]);
        Ok(PeerConfig {
            address: address.to_owned(),
            fingerprint,
            databases,
            from_config: false,
            syncgroups: BTreeSet::new(),
            name: String::new(),
        })
    }

    /// The same peer with the local label `name` (checked: at most 64 bytes, no control or
    /// hidden characters; `InvalidArgument:` otherwise).
    pub fn named(mut self, name: &str) -> Result<PeerConfig> {
        crate::syncgroup::check_member_name(name)?;
        crate::syncgroup::name::check_member_name_shown(name)?;
        self.name = name.to_owned();
        Ok(self)
    }

    /// Whether this peer may ask for records under `scope` of `database`.
    pub fn allows(&self, database: &str, scope: &Scope) -> bool {
        self.databases
            .get(database)
            .is_some_and(|scopes| scopes.iter().any(|shared| shared.contains(scope)))
    }
}

/// Parses a `TABLE[/PREFIX]` scope as the CLI and config file write it: the table is
/// everything before the first `/`.
pub fn parse_scope(text: &str) -> Result<Scope> {
    let (table, prefix) = text.split_once('/').unwrap_or((text, ""));
    TableName::parse(table)?;
    KeyPrefix::parse(prefix)?;
    Ok(Scope::new(table, prefix))
}

/// What a node knows about its sync with one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStatus {
    /// Declared with `peer add` or in the config file (set by [`PeerRegistry::list`]; a peer
    /// can also, or only, be a member of a syncgroup held here: `PeerConfig::syncgroups`).
    pub declared: bool,
    /// An outgoing session to the peer is up.
    pub connected: bool,
    /// Unix nanoseconds when a page from it last ended its log (its knowledge merged).
    pub last_success_nanos: i64,
    /// The last failure, with its id (`ConnFail: ...`, `NoAccess: ...`).
    pub last_error: Option<String>,
    pub records_received: u64,
    pub bytes_received: u64,
    pub records_sent: u64,
    pub bytes_sent: u64,
    /// Log entries our live responder has not examined yet for this peer.
    pub pending_out: u64,
    /// Log entries the peer had not examined yet for us, as of its last push.
    pub pending_in: u64,
    /// Records from it dropped because their writer held no Write permission.
    pub records_refused: u64,
    /// Catch-ups by state from it (`sync::catchup`): each after it refused a session because
    /// records this node lacked were collected there.
    pub catch_ups: u64,
    /// Its clock minus ours, nanoseconds, from the latest GetTime exchange (`rpc::clock`);
    /// None: not measured (no connection yet, or it does not answer GetTime).
    pub clock_offset_nanos: Option<i64>,
    /// That exchange's round trip, nanoseconds (the offset is good to about half of it).
    pub clock_rtt_nanos: i64,
    /// Sessions' rounds with it that reached the end of its log (each page that ended it).
    pub rounds: u64,
    /// Conflicts settled while applying its records (each a row whose heads were resolved).
    pub conflicts_resolved: u64,
}

struct Entry {
    declared: Option<PeerConfig>,
    derived: Option<PeerConfig>,
    status: PeerStatus,
}

impl Entry {
    fn empty() -> Entry {
        Entry {
            declared: None,
            derived: None,
            status: PeerStatus::default(),
        }
    }

    /// The declared and derived configurations merged (declared wins on the address).
    fn config(&self) -> Option<PeerConfig> {
        match (&self.declared, &self.derived) {
            (None, None) => None,
            (Some(only), None) | (None, Some(only)) => Some(only.clone()),
            (Some(declared), Some(derived)) => {
                let mut merged = declared.clone();
                merged.syncgroups.clone_from(&derived.syncgroups);
                if merged.name.is_empty() {
                    merged.name.clone_from(&derived.name);
                }
                for (db, scopes) in &derived.databases {
                    merged
                        .databases
                        .entry(db.clone())
                        .or_default()
                        .extend(scopes.iter().cloned());
                }
                Some(merged)
            }
        }
    }
}

/// Merges `config` into the declaration `declared`: the address is replaced, databases and
/// scopes are added.
fn merge_declaration(declared: &mut PeerConfig, config: PeerConfig) {
    declared.address = config.address;
    declared.from_config |= config.from_config;
    if !config.name.is_empty() {
        declared.name = config.name;
    }
    for (db, scopes) in config.databases {
        declared.databases.entry(db).or_default().extend(scopes);
    }
}

/// Whether a peer whose registry entry is `entry` can be removed by `peer remove`: false if
/// unknown; a `BadState:` error if it is only a syncgroup member or declared in the config file.
fn removable(entry: Option<&Entry>, fingerprint: &Fingerprint) -> Result<bool> {
    let Some(entry) = entry else {
        return Ok(false);
    };
    match &entry.declared {
        None => Err(Error::BadState(format!(
            "peer {fingerprint} comes from syncgroup membership, not from `peer \
             add`; eject it or leave the syncgroup instead"
        ))),
        Some(config) if config.from_config => Err(Error::BadState(format!(
            "peer {fingerprint} is declared in the config file; remove it there"
        ))),
        Some(_) => Ok(true),
    }
}

/// Every peer of a node.
#[derive(Default)]
pub struct PeerRegistry {
    peers: Mutex<BTreeMap<Fingerprint, Entry>>,
    changes: Changes,
}

impl PeerRegistry {
    /// Declares a peer, or merges its databases and scopes into the declared one (the address
    /// is replaced). Returns the merged declaration.
    pub fn add(&self, config: PeerConfig) -> PeerConfig {
        let merged = {
            let mut peers = self.lock();
            let entry = peers
                .entry(config.fingerprint.clone())
                .or_insert_with(Entry::empty);
            let declared = entry.declared.get_or_insert_with(|| PeerConfig {
                databases: BTreeMap::new(),
                ..config.clone()
            });
            merge_declaration(declared, config);
            declared.clone()
        };
        self.announce();
        merged
    }

    /// The declaration [`PeerRegistry::add`] would make of `config`, without making it (so a
    /// caller can persist it first).
    pub fn merged_with(&self, config: &PeerConfig) -> PeerConfig {
        let declared = self
            .lock()
            .get(&config.fingerprint)
            .and_then(|entry| entry.declared.clone());
        let mut merged = declared.unwrap_or_else(|| PeerConfig {
            databases: BTreeMap::new(),
            ..config.clone()
        });
        merge_declaration(&mut merged, config.clone());
        merged
    }

    /// Whether [`PeerRegistry::remove`] would remove the peer (false: unknown), without
    /// removing it; the same errors.
    pub fn check_removable(&self, fingerprint: &Fingerprint) -> Result<bool> {
        removable(self.lock().get(fingerprint), fingerprint)
    }

    /// Removes a peer declared at run time; a peer from the config file stays (error). A peer
    /// that is also a syncgroup member stays as that.
    pub fn remove(&self, fingerprint: &Fingerprint) -> Result<bool> {
        let removed = {
            let mut peers = self.lock();
            if !removable(peers.get(fingerprint), fingerprint)? {
                return Ok(false);
            }
            if let Some(entry) = peers.get_mut(fingerprint) {
                entry.declared = None;
                if entry.derived.is_none() {
                    peers.remove(fingerprint);
                }
            }
            true
        };
        if removed {
            self.announce();
        }
        Ok(removed)
    }

    /// Replaces a peer's declaration with `config` as it is (no merge): `peer remove` of some
    /// of its scopes. The peer must be declared at run time (the errors of
    /// [`PeerRegistry::remove`]).
    pub fn replace_declared(&self, config: PeerConfig) -> Result<()> {
        {
            let mut peers = self.lock();
            let fingerprint = config.fingerprint.clone();
            if !removable(peers.get(&fingerprint), &fingerprint)? {
                return Err(Error::NoExist(format!(
                    "no peer {fingerprint} is declared here"
                )));
            }
            if let Some(entry) = peers.get_mut(&fingerprint) {
                entry.declared = Some(config);
            }
        }
        self.announce();
        Ok(())
    }

    /// The declaration of a peer (config file or `peer add`), if it has one.
    pub fn declaration(&self, fingerprint: &Fingerprint) -> Option<PeerConfig> {
        self.lock()
            .get(fingerprint)
            .and_then(|entry| entry.declared.clone())
    }

    /// Replaces every derived peer (the syncgroup members) with `derived`; announces only a
    /// real change.
    pub fn set_derived(&self, mut derived: BTreeMap<Fingerprint, PeerConfig>) {
        let changed = {
            let mut peers = self.lock();
            let mut changed = false;
            for (fingerprint, entry) in peers.iter_mut() {
                let new = derived.remove(fingerprint);
                changed |= entry.derived != new;
                entry.derived = new;
            }
            for (fingerprint, config) in derived {
                let mut entry = Entry::empty();
                entry.derived = Some(config);
                peers.insert(fingerprint, entry);
                changed = true;
            }
            peers.retain(|_, entry| entry.declared.is_some() || entry.derived.is_some());
            changed
        };
        if changed {
            self.announce();
        }
    }

    /// Whether the peer was declared (config file or `peer add`) with this scope shared.
    pub fn declared_allows(
        &self,
        fingerprint: &Fingerprint,
        database: &str,
        scope: &Scope,
    ) -> bool {
        self.lock()
            .get(fingerprint)
            .and_then(|entry| entry.declared.as_ref())
            .is_some_and(|config| config.allows(database, scope))
    }

    /// The scopes of `database` the peer was declared with (config file or `peer add`).
    pub fn declared_scopes(&self, fingerprint: &Fingerprint, database: &str) -> Vec<Scope> {
        self.lock()
            .get(fingerprint)
            .and_then(|entry| entry.declared.as_ref())
            .and_then(|config| config.databases.get(database))
            .map(|scopes| scopes.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every declared peer (config file or `peer add`), as declared.
    pub fn declared(&self) -> Vec<PeerConfig> {
        self.lock()
            .values()
            .filter_map(|entry| entry.declared.clone())
            .collect()
    }

    /// Whether the peer was declared (config file or `peer add`).
    pub fn is_declared(&self, fingerprint: &Fingerprint) -> bool {
        self.lock()
            .get(fingerprint)
            .is_some_and(|entry| entry.declared.is_some())
    }

    /// Wakes everything that follows the registry with nothing changed but this node's
    /// device id (an epoch): links restart, live responder streams end.
    pub fn relink(&self) {
        self.announce();
    }

    fn announce(&self) {
        self.changes.bump();
    }

    /// A peer's configuration (declared and derived, merged).
    pub fn get(&self, fingerprint: &Fingerprint) -> Option<PeerConfig> {
        self.lock().get(fingerprint).and_then(Entry::config)
    }

    /// A peer's sync status.
    pub fn status(&self, fingerprint: &Fingerprint) -> Option<PeerStatus> {
        self.lock()
            .get(fingerprint)
            .map(|entry| entry.status.clone())
    }

    /// Every peer with its status, in fingerprint order.
    pub fn list(&self) -> Vec<(PeerConfig, PeerStatus)> {
        self.lock()
            .values()
            .filter_map(|entry| {
                let mut status = entry.status.clone();
                status.declared = entry.declared.is_some();
                Some((entry.config()?, status))
            })
            .collect()
    }

    /// Changes a peer's status (no-op for an unknown peer).
    pub fn update_status(&self, fingerprint: &Fingerprint, update: impl FnOnce(&mut PeerStatus)) {
        if let Some(entry) = self.lock().get_mut(fingerprint) {
            update(&mut entry.status);
        }
    }

    /// A receiver that changes whenever a peer is added, removed or changed.
    pub fn subscribe(&self) -> ChangeReceiver {
        self.changes.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Fingerprint, Entry>> {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(byte: char) -> Fingerprint {
        Fingerprint::parse(&byte.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn scopes_parse_from_table_slash_prefix() {
        assert_eq!(parse_scope("photos").unwrap(), Scope::new("photos", ""));
        assert_eq!(
            parse_scope("photos/2024/").unwrap(),
            Scope::new("photos", "2024/")
        );
        assert!(parse_scope("/x").is_err());
    }

    #[test]
    fn adding_merges_scopes() {
        let registry = PeerRegistry::default();
        let peer = fingerprint('a');
        registry
            .add(PeerConfig::new("h:1", peer.clone(), "db", vec![Scope::new("t", "a")]).unwrap());
        let merged = registry
            .add(PeerConfig::new("h:2", peer.clone(), "db", vec![Scope::new("u", "")]).unwrap());
        assert_eq!(merged.address, "h:2");
        assert_eq!(merged.databases["db"].len(), 2);
        assert!(merged.allows("db", &Scope::new("t", "ab")));
        assert!(!merged.allows("db", &Scope::new("t", "b")));
        assert!(!merged.allows("other", &Scope::new("u", "")));
        registry.update_status(&peer, |status| status.records_received = 3);
        assert_eq!(
            registry.status(&peer).map(|status| status.records_received),
            Some(3)
        );
        assert_eq!(registry.status(&fingerprint('b')), None);
        assert!(registry.remove(&peer).unwrap());
        assert!(!registry.remove(&peer).unwrap());
    }

    #[test]
    fn a_peer_only_from_a_syncgroup_or_the_config_file_refuses_removal_as_bad_state() {
        let registry = PeerRegistry::default();
        let member = fingerprint('e');
        let derived =
            PeerConfig::new("h:9", member.clone(), "db", vec![Scope::new("u", "")]).unwrap();
        registry.set_derived(BTreeMap::from([(member.clone(), derived)]));
        let error = registry.remove(&member).unwrap_err();
        assert_eq!(error.id(), "BadState", "{error}");
        assert!(error.to_string().contains("eject it or leave"), "{error}");
        let configured = fingerprint('f');
        let mut config =
            PeerConfig::new("h:8", configured.clone(), "db", vec![Scope::new("t", "")]).unwrap();
        config.from_config = true;
        registry.add(config);
        let error = registry.remove(&configured).unwrap_err();
        assert_eq!(error.id(), "BadState", "{error}");
        assert!(registry.get(&member).is_some() && registry.get(&configured).is_some());
    }

    #[test]
    fn derived_peers_merge_with_declared_ones_and_outlive_their_removal() {
        let registry = PeerRegistry::default();
        let peer = fingerprint('d');
        registry
            .add(PeerConfig::new("h:1", peer.clone(), "db", vec![Scope::new("t", "")]).unwrap());
        let derived =
            PeerConfig::new("h:9", peer.clone(), "db2", vec![Scope::new("u", "p")]).unwrap();
        let mut changes = registry.subscribe();
        changes.mark_seen();
        registry.set_derived(BTreeMap::from([(peer.clone(), derived.clone())]));
        assert!(changes.has_changed());
        let merged = registry.get(&peer).unwrap();
        assert_eq!(merged.address, "h:1");
        assert!(merged.allows("db2", &Scope::new("u", "px")));
        assert!(!registry.declared_allows(&peer, "db2", &Scope::new("u", "px")));
        changes.mark_seen();
        registry.set_derived(BTreeMap::from([(peer.clone(), derived)]));
        assert!(!changes.has_changed(), "an unchanged set is no news");
        assert!(registry.remove(&peer).unwrap());
        assert_eq!(registry.get(&peer).unwrap().address, "h:9");
        assert!(
            registry.remove(&peer).is_err(),
            "a member is not removed like a peer"
        );
        registry.set_derived(BTreeMap::new());
        assert!(registry.get(&peer).is_none());
    }

    #[test]
    fn config_peers_cannot_be_removed_at_run_time() {
        let registry = PeerRegistry::default();
        let mut config =
            PeerConfig::new("h:1", fingerprint('b'), "db", vec![Scope::new("t", "")]).unwrap();
        config.from_config = true;
        registry.add(config);
        assert!(registry.remove(&fingerprint('b')).is_err());
    }

    #[test]
    fn bad_peer_specs_are_refused() {
        assert!(PeerConfig::new("", fingerprint('c'), "db", vec![Scope::new("t", "")]).is_err());
        assert!(PeerConfig::new("h:1", fingerprint('c'), "", vec![Scope::new("t", "")]).is_err());
        assert!(PeerConfig::new("h:1", fingerprint('c'), "db", vec![]).is_err());
    }
}
