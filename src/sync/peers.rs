//! The peers a node syncs with, until syncgroups decide it: each known by its fingerprint,
//! with its address and the (database, scopes) it shares, from the config file or added at
//! run time, plus each peer's live status. The registry is the one place that decides who
//! may connect (its fingerprints feed the TLS layer's trusted set) and what a peer may ask
//! for. Changes are published on a watch channel so the dialer follows them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::identity::Fingerprint;
use crate::names::{DbName, KeyPrefix, TableName};
use crate::rpc::tls::TrustedPeers;
use crate::sync::genvec::Scope;

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
        })
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
}

struct Entry {
    config: PeerConfig,
    status: PeerStatus,
}

/// Every peer of a node.
pub struct PeerRegistry {
    peers: Mutex<BTreeMap<Fingerprint, Entry>>,
    trusted: TrustedPeers,
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for PeerRegistry {
    fn default() -> Self {
        PeerRegistry {
            peers: Mutex::default(),
            trusted: TrustedPeers::new(),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl PeerRegistry {
    /// The fingerprints allowed to connect (kept in step with the registry).
    pub fn trusted(&self) -> TrustedPeers {
        self.trusted.clone()
    }

    /// Adds a peer, or merges its databases and scopes into the known one (the address is
    /// replaced). Returns the merged configuration.
    pub fn add(&self, config: PeerConfig) -> PeerConfig {
        let merged = {
            let mut peers = self.lock();
            let entry = peers
                .entry(config.fingerprint.clone())
                .or_insert_with(|| Entry {
                    config: PeerConfig {
                        databases: BTreeMap::new(),
                        ..config.clone()
                    },
                    status: PeerStatus::default(),
                });
            entry.config.address = config.address.clone();
            entry.config.from_config |= config.from_config;
            for (db, scopes) in config.databases {
                entry.config.databases.entry(db).or_default().extend(scopes);
            }
            entry.config.clone()
        };
        self.trusted.add(merged.fingerprint.clone());
        self.changes.send_modify(|count| *count += 1);
        merged
    }

    /// Removes a peer added at run time; a peer from the config file stays (error).
    pub fn remove(&self, fingerprint: &Fingerprint) -> Result<bool> {
        let removed = {
            let mut peers = self.lock();
            match peers.get(fingerprint) {
                None => false,
                Some(entry) if entry.config.from_config => {
                    return Err(Error::invalid(format!(
                        "peer {fingerprint} is declared in the config file; remove it there"
                    )));
                }
                Some(_) => peers.remove(fingerprint).is_some(),
            }
        };
        if removed {
            self.trusted.remove(fingerprint);
            self.changes.send_modify(|count| *count += 1);
        }
        Ok(removed)
    }

    /// A peer's configuration.
    pub fn get(&self, fingerprint: &Fingerprint) -> Option<PeerConfig> {
        self.lock()
            .get(fingerprint)
            .map(|entry| entry.config.clone())
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
            .map(|entry| (entry.config.clone(), entry.status.clone()))
            .collect()
    }

    /// Changes a peer's status (no-op for an unknown peer).
    pub fn update_status(&self, fingerprint: &Fingerprint, update: impl FnOnce(&mut PeerStatus)) {
        if let Some(entry) = self.lock().get_mut(fingerprint) {
            update(&mut entry.status);
        }
    }

    /// A receiver that changes whenever a peer is added or removed.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
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
    fn adding_merges_scopes_and_trusts_the_peer() {
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
        assert!(registry.trusted().contains(&peer));
        registry.update_status(&peer, |status| status.records_received = 3);
        assert_eq!(
            registry.status(&peer).map(|status| status.records_received),
            Some(3)
        );
        assert_eq!(registry.status(&fingerprint('b')), None);
        assert!(registry.remove(&peer).unwrap());
        assert!(!registry.trusted().contains(&peer));
        assert!(!registry.remove(&peer).unwrap());
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
