//! Proposals in storage (`q 0xfe <name>`): syncgroups other nodes published here that this
//! node has not accepted. They sit apart from the syncgroups, so no access decision (what
//! is shared, whose records count) ever reads them; accepting one moves it into the
//! syncgroups in the same transaction.

use syncbase_storage::Scan;

use super::records::{decode, encode};
use super::syncgroups::SyncgroupTxn;
use super::{Store, keys};
use crate::error::{Error, Result};
use crate::syncgroup::proposal::{MAX_PROPOSAL_BYTES, MAX_PROPOSALS, MAX_PROPOSALS_PER_PUBLISHER};
use crate::syncgroup::{Proposal, SyncgroupId, SyncgroupName};

impl Store {
    /// Every proposal, by name.
    pub fn proposals(&self) -> Result<Vec<Proposal>> {
        scan(self.storage.read()?.as_ref())
    }
}

impl SyncgroupTxn<'_> {
    /// The proposal of a name.
    pub fn find_proposal(&self, name: &SyncgroupName) -> Result<Option<Proposal>> {
        match self.txn.get(&keys::proposal(name.as_str()))? {
            Some(bytes) => Ok(Some(decode(&bytes, "proposal")?)),
            None => Ok(None),
        }
    }

    /// Stores a new proposal, or replaces one of the same name from the same publisher.
    /// `ResourceExhausted:` past [`MAX_PROPOSALS`] in all or [`MAX_PROPOSALS_PER_PUBLISHER`]
    /// from its publisher, or for one over [`MAX_PROPOSAL_BYTES`].
    pub fn put_proposal(&mut self, proposal: &Proposal) -> Result<()> {
        let held = scan(self.txn.as_ref())?;
        let others: Vec<_> = held
            .iter()
            .filter(|p| p.sg.name != proposal.sg.name)
            .collect();
        let from_publisher = others
            .iter()
            .filter(|p| p.publisher == proposal.publisher)
            .count();
        if others.len() >= MAX_PROPOSALS || from_publisher >= MAX_PROPOSALS_PER_PUBLISHER {
            return Err(Error::ResourceExhausted(format!(
                "this node holds {} proposals ({from_publisher} from {}); at most \
                 {MAX_PROPOSALS} in all and {MAX_PROPOSALS_PER_PUBLISHER} per publisher wait \
                 for its operator to accept or reject them",
                others.len(),
                proposal.publisher
            )));
        }
        let bytes = encode(proposal)?;
        if bytes.len() > MAX_PROPOSAL_BYTES {
            return Err(Error::ResourceExhausted(format!(
                "a proposal is at most {MAX_PROPOSAL_BYTES} bytes, not {}; publish it with \
                 fewer members and add them once the host has accepted it",
                bytes.len()
            )));
        }
        let key = keys::proposal(proposal.sg.name.as_str());
        Ok(self.txn.put(&key, &bytes)?)
    }

    /// Whether database `db` exists here.
    pub fn has_database(&self, db: &str) -> Result<bool> {
        Ok(self.txn.get(&keys::catalog(db))?.is_some())
    }

    /// Whether a proposal other than `name`'s uses syncgroup id `id`.
    pub fn id_proposed_elsewhere(&self, id: SyncgroupId, name: &SyncgroupName) -> Result<bool> {
        Ok(scan(self.txn.as_ref())?
            .iter()
            .any(|p| p.sg.id == id && &p.sg.name != name))
    }

    /// Removes and returns the proposal of a name (`NoExist:` if there is none).
    pub fn take_proposal(&mut self, name: &SyncgroupName) -> Result<Proposal> {
        let proposal = self.find_proposal(name)?.ok_or_else(|| {
            Error::NoExist(format!("no syncgroup named {name} was proposed here"))
        })?;
        self.txn.delete(&keys::proposal(name.as_str()))?;
        Ok(proposal)
    }
}

fn scan(txn: &dyn syncbase_storage::ReadTxn) -> Result<Vec<Proposal>> {
    let mut proposals = Vec::new();
    txn.scan_prefix(&keys::proposal_prefix(), &mut |_, value| {
        proposals.push(value.to_vec());
        Ok(Scan::Continue)
    })?;
    proposals
        .iter()
        .map(|bytes| decode(bytes, "proposal"))
        .collect()
}
