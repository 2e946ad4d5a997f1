//! Proposals: a syncgroup another node published here that this node has not accepted.
//! A publish is an offer (issue 9): nothing is shared or accepted under a proposal until this
//! node's operator or app accepts it (`sg accept`), or unless the publisher presented a
//! publish invite this node minted for the database. Proposals live apart from the
//! syncgroups (`q 0xfe <name>`), so no access decision ever sees them. They are bounded:
//! [`MAX_PROPOSALS`] in all, [`MAX_PROPOSALS_PER_PUBLISHER`] from one identity, each at most
//! [`MAX_PROPOSAL_BYTES`].

use serde::{Deserialize, Serialize};

use super::Syncgroup;
use crate::genvec::GenVector;
use crate::identity::Fingerprint;
use crate::store::Version;

/// Most proposals a node holds at once; more fail `ResourceExhausted:`.
pub const MAX_PROPOSALS: usize = 64;
/// Most proposals a node holds from one publisher.
pub const MAX_PROPOSALS_PER_PUBLISHER: usize = 4;
/// Largest proposal, encoded, in bytes: a syncgroup being proposed has few members yet, and
/// 64 proposals of this size bound what strangers can make a node store.
pub const MAX_PROPOSAL_BYTES: usize = 64 * 1024;

/// A syncgroup offered by `publisher`, as it sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub sg: Syncgroup,
    /// The publisher's version of it.
    pub version: Version,
    /// The publisher's knowledge of the syncgroup: the checkpoint to catch up to once accepted.
    pub checkpoint: GenVector,
    /// The authenticated identity that published it.
    pub publisher: Fingerprint,
    /// When it arrived, Unix nanoseconds.
    pub received_nanos: i64,
}
