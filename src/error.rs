//! The node's error type. Every variant has a stable id (`NoAccess`, `InvalidArgument`, ...)
//! that starts the message, so any client, in any language, can tell errors apart by the text
//! before the first colon of a Cap'n Proto exception's description.

use std::sync::Arc;

use syncbase_storage::StorageError;

/// Result of a node operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a node operation failed. Cheap to clone (a storage error is shared), so a session can
/// keep the error it failed with and still hand it on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The caller may not do this (a wrong token, a missing capability).
    #[error("NoAccess: {0}")]
    NoAccess(String),

    /// An argument broke a documented rule (a name, a size limit).
    #[error("InvalidArgument: {0}")]
    InvalidArgument(String),

    /// The object is not in a state that allows this yet (a pending syncgroup).
    #[error("BadState: {0}")]
    BadState(String),

    /// The caller's version of an object is stale.
    #[error("BadVersion: {0}")]
    BadVersion(String),

    /// The name is already taken (by another object).
    #[error("Exist: {0}")]
    Exist(String),

    /// The object does not exist.
    #[error("NoExist: {0}")]
    NoExist(String),

    /// The syncgroup was already published here by another publisher.
    #[error("DupSyncgroupPublish: duplicate publish on syncgroup: {0}")]
    DupSyncgroupPublish(String),

    /// A resource limit was reached: too many connections or proposals, a message over the
    /// size limit, an answer queue nobody reads. Nothing was changed; retrying later (or
    /// freeing the resource) may succeed.
    #[error("ResourceExhausted: {0}")]
    ResourceExhausted(String),

    /// A peer could not be reached (made by initiators, never by a server).
    #[error("ConnFail: connection to peer failed: {0}")]
    ConnFail(String),

    /// The storage is out of room (LMDB's map, or the disk: no space, a quota, a file size
    /// limit); nothing of the failed commit was written. The message says what to free or
    /// which limit to raise. Kept as text so it survives a trip through another node.
    #[error("StorageFull: {0}")]
    StorageFull(String),

    /// The caller's knowledge of a database is below this node's collection floor: records
    /// it lacks were collected here (history garbage collection), so it must catch up by
    /// state (`sync::catchup`) before the log can serve it.
    #[error("BehindHorizon: {0}")]
    BehindHorizon(String),

    /// A watch asked to resume from a marker below the database's watch-feed floor: history
    /// collection removed changes at or after it (`store::collect`), so the feed cannot serve
    /// it without holes. The fix: read the rows again (`scan`, or a watch with
    /// `initialState`) and watch from now.
    #[error("Compacted: {0}")]
    Compacted(String),

    /// Any other storage failure.
    #[error("Internal: {0}")]
    Storage(Arc<StorageError>),

    /// A broken invariant inside the node (a corrupt record, a crashed write).
    #[error("Internal: {0}")]
    Internal(String),
}

impl Error {
    /// The same kind, its message ending with ` (answered by {who})`: an error another node
    /// raised and sent back, told apart from this node's own (a full store at the admin is not
    /// ours). A connection failure is left as is: no node answered it.
    pub fn answered_by(self, who: &str) -> Error {
        let note = |message: String| format!("{message} (answered by {who})");
        match self {
            Error::NoAccess(m) => Error::NoAccess(note(m)),
            Error::InvalidArgument(m) => Error::InvalidArgument(note(m)),
            Error::BadState(m) => Error::BadState(note(m)),
            Error::BadVersion(m) => Error::BadVersion(note(m)),
            Error::Exist(m) => Error::Exist(note(m)),
            Error::NoExist(m) => Error::NoExist(note(m)),
            Error::DupSyncgroupPublish(m) => Error::DupSyncgroupPublish(note(m)),
            Error::ResourceExhausted(m) => Error::ResourceExhausted(note(m)),
            Error::StorageFull(m) => Error::StorageFull(note(m)),
            Error::BehindHorizon(m) => Error::BehindHorizon(note(m)),
            Error::Compacted(m) => Error::Compacted(note(m)),
            Error::Storage(e) => Error::Internal(note(e.to_string())),
            Error::Internal(m) => Error::Internal(note(m)),
            connection @ Error::ConnFail(_) => connection,
        }
    }

    /// The same kind, its message led by `what` (`InvalidArgument: fingerprint: bad peer
    /// fingerprint ...`): context added without naming the id twice.
    pub fn context(self, what: &str) -> Error {
        let lead = |message: String| format!("{what}: {message}");
        match self {
            Error::NoAccess(m) => Error::NoAccess(lead(m)),
            Error::InvalidArgument(m) => Error::InvalidArgument(lead(m)),
            Error::BadState(m) => Error::BadState(lead(m)),
            Error::BadVersion(m) => Error::BadVersion(lead(m)),
            Error::Exist(m) => Error::Exist(lead(m)),
            Error::NoExist(m) => Error::NoExist(lead(m)),
            Error::DupSyncgroupPublish(m) => Error::DupSyncgroupPublish(lead(m)),
            Error::ResourceExhausted(m) => Error::ResourceExhausted(lead(m)),
            Error::ConnFail(m) => Error::ConnFail(lead(m)),
            Error::StorageFull(m) => Error::StorageFull(lead(m)),
            Error::BehindHorizon(m) => Error::BehindHorizon(lead(m)),
            Error::Compacted(m) => Error::Compacted(lead(m)),
            Error::Storage(e) => Error::Internal(lead(e.to_string())),
            Error::Internal(m) => Error::Internal(lead(m)),
        }
    }

    /// The message without its leading id (`bad peer fingerprint ...` for
    /// `InvalidArgument: bad peer fingerprint ...`): for text that is not an RPC answer, such
    /// as a config file error, where the id would sit mid-line after the key it concerns.
    pub fn detail(&self) -> String {
        let text = self.to_string();
        match text
            .strip_prefix(self.id())
            .and_then(|rest| rest.strip_prefix(": "))
        {
            Some(rest) => rest.to_owned(),
            None => text,
        }
    }

    /// The stable id this error's message starts with.
    pub fn id(&self) -> &'static str {
        match self {
            Error::NoAccess(_) => "NoAccess",
            Error::InvalidArgument(_) => "InvalidArgument",
            Error::BadState(_) => "BadState",
            Error::BadVersion(_) => "BadVersion",
            Error::Exist(_) => "Exist",
            Error::NoExist(_) => "NoExist",
            Error::DupSyncgroupPublish(_) => "DupSyncgroupPublish",
            Error::ResourceExhausted(_) => "ResourceExhausted",
            Error::ConnFail(_) => "ConnFail",
            Error::StorageFull(_) => "StorageFull",
            Error::BehindHorizon(_) => "BehindHorizon",
            Error::Compacted(_) => "Compacted",
            Error::Storage(_) | Error::Internal(_) => "Internal",
        }
    }

    /// The error a message names: the inverse of `to_string`, for errors that come back from
    /// another node (only the wire decodes one: `rpc::wire`'s `From<capnp::Error>`). An
    /// unknown id becomes `Internal` with the whole message.
    pub fn from_message(message: &str) -> Error {
        let Some((id, rest)) = message.split_once(": ") else {
            return Error::Internal(message.to_owned());
        };
        let rest = rest.to_owned();
        match id {
            "NoAccess" => Error::NoAccess(rest),
            "InvalidArgument" => Error::InvalidArgument(rest),
            "BadState" => Error::BadState(rest),
            "BadVersion" => Error::BadVersion(rest),
            "Exist" => Error::Exist(rest),
            "NoExist" => Error::NoExist(rest),
            "DupSyncgroupPublish" => Error::DupSyncgroupPublish(
                rest.trim_start_matches("duplicate publish on syncgroup: ")
                    .to_owned(),
            ),
            "ResourceExhausted" => Error::ResourceExhausted(rest),
            "StorageFull" => Error::StorageFull(rest),
            "BehindHorizon" => Error::BehindHorizon(rest),
            "Compacted" => Error::Compacted(rest),
            "ConnFail" => Error::ConnFail(
                rest.trim_start_matches("connection to peer failed: ")
                    .to_owned(),
            ),
            "Internal" => Error::Internal(rest),
            _ => Error::Internal(message.to_owned()),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }
}

impl From<StorageError> for Error {
    /// The one conversion of storage errors, keeping their kind: out of room (map or disk)
    /// is `StorageFull`, a key over the limit `InvalidArgument`, the rest `Internal`.
    fn from(error: StorageError) -> Self {
        match error {
            error if error.is_full() => Error::StorageFull(error.to_string()),
            StorageError::KeyTooLong { .. } => Error::InvalidArgument(error.to_string()),
            other => Error::Storage(Arc::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_start_with_their_id() {
        let errors = [
            Error::NoAccess("wrong client token".into()),
            Error::invalid("bad name"),
            Error::BadState("pending".into()),
            Error::BadVersion("stale".into()),
            Error::Exist("taken".into()),
            Error::NoExist("gone".into()),
            Error::DupSyncgroupPublish("h:1/x".into()),
            Error::ConnFail("refused".into()),
            Error::ResourceExhausted("too many proposals".into()),
            Error::BehindHorizon("collected up to 5".into()),
            Error::Compacted("resume marker below the watch feed's floor".into()),
            Error::from(StorageError::MapFull { map_size: 10 }),
            Error::from(StorageError::DiskFull {
                path: "/data/data.mdb".into(),
                cause: std::io::Error::from_raw_os_error(28),
            }),
            Error::from(StorageError::Visitor("x".into())),
            Error::Internal("corrupt row".into()),
        ];
        for error in errors {
            let text = error.to_string();
            assert!(text.starts_with(&format!("{}: ", error.id())), "{text}");
            assert_eq!(Error::from_message(&text).to_string(), text);
        }
    }

    #[test]
    fn a_full_map_and_a_full_disk_are_both_storage_full_with_the_fix() {
        let map = Error::from(StorageError::MapFull { map_size: 10 });
        assert_eq!(map.id(), "StorageFull");
        assert!(map.to_string().contains("retry the write"), "{map}");
        let limit = Error::from(StorageError::LimitReached {
            limit_bytes: 10,
            reserve_bytes: 1,
            freeing: false,
        });
        assert_eq!(limit.id(), "StorageFull");
        assert!(
            limit.to_string().contains("raise storage.max_map_size"),
            "{limit}"
        );
        for (errno, fix) in [(28, "free space"), (122, "quota"), (27, "ulimit -f")] {
            let disk = Error::from(StorageError::DiskFull {
                path: "/data/data.mdb".into(),
                cause: std::io::Error::from_raw_os_error(errno),
            });
            assert_eq!(disk.id(), "StorageFull", "errno {errno}");
            assert!(disk.to_string().contains(fix), "{disk}");
        }
    }

    #[test]
    fn context_keeps_the_kind_and_names_the_id_once() {
        let error = Error::invalid("bad peer fingerprint \"x\"").context("fingerprint");
        assert_eq!(
            error.to_string(),
            "InvalidArgument: fingerprint: bad peer fingerprint \"x\""
        );
        let cut = Error::ConnFail("reset".into()).context("dialling h:1");
        assert_eq!(cut.id(), "ConnFail");
        assert_eq!(cut.to_string().matches("ConnFail").count(), 1, "{cut}");
    }

    #[test]
    fn detail_is_the_message_without_its_id() {
        let error = Error::invalid("bad peer fingerprint \"x\"");
        assert_eq!(error.detail(), "bad peer fingerprint \"x\"");
        let cut = Error::ConnFail("reset".into());
        assert_eq!(cut.detail(), "connection to peer failed: reset");
    }

    #[test]
    fn an_answer_from_another_node_keeps_its_kind_and_says_who_answered() {
        let full = Error::from(StorageError::MapFull { map_size: 10 }).answered_by("the admin");
        assert_eq!(full.id(), "StorageFull");
        assert!(
            full.to_string().ends_with("(answered by the admin)"),
            "{full}"
        );
        let refused = Error::NoAccess("no".into()).answered_by("the admin");
        assert_eq!(refused.to_string(), "NoAccess: no (answered by the admin)");
        let cut = Error::ConnFail("reset".into()).answered_by("the admin");
        assert_eq!(
            cut.to_string(),
            "ConnFail: connection to peer failed: reset"
        );
    }
}
