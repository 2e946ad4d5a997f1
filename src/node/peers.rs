//! The node's peer list: peers declared in the config file, plus peers added at run time,
//! which are persisted (`p 0xfe <fingerprint>`) so they survive a restart.

use anyhow::Context;

use super::Node;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::genvec::Scope;
use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::store::{decode_record, encode_record, peer_key, peer_prefix};
use crate::sync::peers::{PeerConfig, parse_scope};

impl Node {
    /// Registers the config file's peers, then the ones added at run time before.
    pub(super) fn load_peers(&self, config: &Config) -> anyhow::Result<()> {
        for declared in &config.sync.peers {
            let scopes = declared
                .scopes
                .iter()
                .map(|scope| parse_scope(scope))
                .collect::<Result<Vec<_>>>()?;
            let fingerprint = Fingerprint::parse(&declared.fingerprint)?;
            let mut peer =
                PeerConfig::new(&declared.address, fingerprint, &declared.database, scopes)
                    .with_context(|| format!("sync.peers entry for {}", declared.address))?;
            peer.from_config = true;
            self.create_databases_of(&peer)?;
            self.peers.add(peer);
        }
        self.load_stored_peers()?;
        Ok(())
    }

    /// Registers the peers added at run time before (persisted in the store).
    pub(super) fn load_stored_peers(&self) -> Result<()> {
        for peer in self.stored_peers()? {
            self.peers.add(peer);
        }
        Ok(())
    }

    /// Creates the databases a peer shares, so they can be served before any app opens them.
    fn create_databases_of(&self, peer: &PeerConfig) -> Result<()> {
        for db in peer.databases.keys() {
            let db = DbName::parse(db)?;
            if !self.store().has_database(&db)? {
                self.store().create_database(&db)?;
            }
        }
        Ok(())
    }

    fn stored_peers(&self) -> Result<Vec<PeerConfig>> {
        let mut peers = Vec::new();
        let mut failure = None;
        self.store()
            .storage()
            .read()?
            .scan_prefix(&peer_prefix(), &mut |_, value| {
                match decode_record::<PeerConfig>(value, "peer") {
                    Ok(peer) => peers.push(peer),
                    Err(error) => failure = Some(error),
                }
                Ok(syncbase_storage::Scan::Continue)
            })?;
        failure.map_or(Ok(peers), Err)
    }

    /// Adds (or extends) a peer and remembers it across restarts: the merged declaration is
    /// persisted first, and the registry updated only once that commit succeeded (a failed
    /// commit leaves the peer list as it was). Both happen inside the write, which serializes
    /// peer changes with each other and with the commits that read the registry.
    pub async fn add_peer(&self, peer: PeerConfig) -> Result<()> {
        if peer.fingerprint == *self.identity.fingerprint() {
            return Err(Error::invalid("a node cannot be its own peer"));
        }
        for db in peer.databases.keys() {
            self.open_database(&DbName::parse(db)?).await?;
        }
        let peers = self.peers.clone();
        self.write(move |store| {
            let mut merged = peers.merged_with(&peer);
            merged.from_config = false;
            let mut txn = store.storage().write()?;
            txn.put(
                &peer_key(merged.fingerprint.as_str()),
                &encode_record(&merged)?,
            )?;
            txn.commit()?;
            peers.add(peer);
            Ok(())
        })
        .await
    }

    /// Stops sharing `scopes` of database `db` (none: all of `db`) with a peer added at run
    /// time; a peer left sharing nothing is removed. The change is persisted first, as in `remove_peer`.
    /// Errors: `NoExist:` for a peer not declared here or a scope it was not declared with
    /// (the message lists those it has), `BadState:` for a peer from the config file or
    /// only from a syncgroup.
    pub async fn remove_peer_scopes(
        &self,
        fingerprint: &Fingerprint,
        db: &str,
        scopes: Vec<Scope>,
    ) -> Result<()> {
        let (peers, fingerprint, db) = (self.peers.clone(), fingerprint.clone(), db.to_owned());
        self.write(move |store| {
            if !peers.check_removable(&fingerprint)? {
                return Err(Error::NoExist(format!(
                    "no peer {fingerprint} here (`peer list`)"
                )));
            }
            let mut declared = peers
                .declaration(&fingerprint)
                .ok_or_else(|| Error::NoExist(format!("no peer {fingerprint} here")))?;
            without_scopes(&mut declared, &db, &scopes)?;
            let mut txn = store.storage().write()?;
            let key = peer_key(fingerprint.as_str());
            if declared.databases.is_empty() {
                txn.delete(&key)?;
                txn.commit()?;
                peers.remove(&fingerprint)?;
            } else {
                txn.put(&key, &encode_record(&declared)?)?;
                txn.commit()?;
                peers.replace_declared(declared)?;
            }
            Ok(())
        })
        .await
    }

    /// Removes a peer added at run time; returns whether it was known. The removal is
    /// persisted first and the registry updated only once that commit succeeded.
    pub async fn remove_peer(&self, fingerprint: &Fingerprint) -> Result<bool> {
        let (peers, fingerprint) = (self.peers.clone(), fingerprint.clone());
        self.write(move |store| {
            let known = peers.check_removable(&fingerprint)?;
            let mut txn = store.storage().write()?;
            txn.delete(&peer_key(fingerprint.as_str()))?;
            txn.commit()?;
            Ok(known && peers.remove(&fingerprint)?)
        })
        .await
    }
}

/// `declared` without `scopes` of database `db` (a database left with none is dropped);
/// `NoExist:` naming the scopes it has if one of `scopes` is not among them.
fn without_scopes(declared: &mut PeerConfig, db: &str, scopes: &[Scope]) -> Result<()> {
    let fingerprint = declared.fingerprint.clone();
    let Some(shared) = declared.databases.get_mut(db) else {
        return Err(Error::NoExist(format!(
            "peer {fingerprint} shares nothing of database {db:?} by `peer add`"
        )));
    };
    if scopes.is_empty() {
        shared.clear();
    }
    for scope in scopes {
        if !shared.remove(scope) {
            let has: Vec<String> = shared.iter().map(Scope::to_string).collect();
            return Err(Error::NoExist(format!(
                "peer {fingerprint} was not added with scope {} of database {db:?} \
                 (its scopes there: {})",
                scope,
                has.join(" ")
            )));
        }
    }
    if shared.is_empty() {
        declared.databases.remove(db);
    }
    Ok(())
}
