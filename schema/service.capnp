@0xb19dad0b5f1c1716;
# The app-facing interface of a syncbase node. Foreign clients (any language) use it as-is:
# these names are a public contract.
#
# Connect over TCP to the node's app address (printed at start and recorded in
# `<data dir>/node.addr`); the bootstrap capability is a `Gate`. `login` with the token from
# `<data dir>/client.token` returns the `Service`.
#
# Errors: an exception's description starts with a stable id and a colon, e.g.
#   NoAccess: wrong client token
#   InvalidArgument: table name "" is empty
# A failed call changes nothing and leaves the connection usable.
#
# Limits (also readable through `Service.limits`):
#   database and table names: 1-64 bytes of UTF-8, no control characters, no Unicode
#     format characters (general category Cf: bidi controls such as U+202E, zero-width
#     ones) and no line or paragraph separators (U+2028, U+2029), so no name can pass for
#     another where it is shown; a table name holds no `/` (a scope `TABLE/PREFIX` ends
#     its table at the first `/`); each `InvalidArgument:` naming the rule;
#   row keys: 1-256 bytes of UTF-8, no control characters;
#   values: at most 4 MiB; a batch: at most 10,000 operations and 10 MiB (10,485,760 bytes)
#   of table names, keys and values (`InvalidArgument: batch of N bytes ... MAX_BATCH_BYTES`);
#   one Cap'n Proto message: at most 64 MiB, nesting depth 64.

using T = import "types.capnp";

interface Gate {
  login @0 (token :Text) -> (service :Service);
  # The `Service` if `token` is this node's client token; otherwise fails with `NoAccess:`
  # and hands out no capability.
}

interface Service {
  database @0 (name :Text, create :Bool = true) -> (db :Database);
  # The named database, created on first use. `create` false (a reader that must create
  # nothing, e.g. `syncbase get` and `scan`): fails with `NoExist:` if the database is not
  # on this node instead. Servers older than the field ignore it and create the database.

  listDatabases @1 () -> (names :List(Text));
  # Every database created on this node, in name order.

  limits @2 () -> (limits :Limits);
  # The size limits this node enforces.

  identity @3 () -> (fingerprint :Text, peerAddress :Text, deviceId :UInt64,
                     epochs :List(Text), name :Text, role :Text);
  # This node's peer identity (its TLS key's fingerprint, which other nodes pin), the address
  # of its TLS peer listener ("" if it has none) and its device id. `epochs`: one line per
  # move to a fresh device id (its store was found restored or copied), oldest first.
  # `name`: the name it shows fellow members beside its fingerprint ("" if none; never an
  # identity). `role`: `normal`, `server` or `leaf` (a leaf advertises no peer address).

  addPeer @4 (peer :PeerSpec) -> ();
  # Starts syncing with a peer, and accepts that peer's connections, for the given database
  # and scopes (merged into any the peer already has). Kept across restarts.

  removePeer @5 (fingerprint :Text, database :Text, scopes :List(ScopeSpec)) -> (existed :Bool);
  # Stops syncing with a peer added at run time and refuses its connections (existed: false
  # for an unknown peer). With `database` set, stops sharing only `scopes` of that database
  # (a peer left sharing nothing is removed): `NoExist` if the peer was not added with one of
  # them. A peer that is also a syncgroup member stays a peer for that syncgroup's prefixes;
  # one from the config file cannot be removed, nor one that is only a syncgroup member (`BadState`).

  listPeers @6 () -> (peers :List(PeerStatus));
  # Every peer (from the config file and added at run time) with its sync status.

  syncgroups @7 () -> (syncgroups :Syncgroups);
  # Syncgroup management on this node, acting as this node's identity.

  collect @8 (database :Text) -> (freed :Collected, steps :UInt64,
                                  before :StoreUsage, after :StoreUsage);
  # Runs one history-collection pass over the database now (what every member that counts
  # has seen, ARCHITECTURE.md "History garbage collection") and returns what it freed, the
  # write transactions it took, and the store's size figures before and after. Fails with
  # `NoExist:` for a database this node does not have.

  storeStatus @9 () -> (usage :StoreUsage, databases :List(DatabaseStatus));
  # The store's size figures, and per database its live data and what collection waits
  # for. Reads every database's row heads once (its cost grows with the number of rows).
}

struct Collected {
  records @0 :UInt64;      # Log entries removed.
  versions @1 :UInt64;     # Superseded versions (DAG nodes) removed, tombstones included.
  tombstones @2 :UInt64;   # Of those, tombstones (a deleted row written again since: the
                           # tombstone head of a deleted row stays).
  changes @3 :UInt64;      # Watch-feed changes removed.
  bytes @4 :UInt64;        # Key and value bytes removed.
}

struct StoreUsage {
  fileBytes @0 :UInt64;    # The store's size on disk.
  usedBytes @1 :UInt64;    # What its data takes (LMDB: pages in use less the free list).
  mapBytes @2 :UInt64;     # What it may hold without growing (LMDB: the map size).
  maxMapBytes @3 :UInt64;  # The most it may grow to; 0 = unbounded.
  reserveBytes @4 :UInt64; # The part of the maximum kept for deletes and collection.
  backend @5 :Text;        # `lmdb` (a file on disk) or `memory` (nothing on disk).
}

struct DatabaseStatus {
  database @0 :Text;
  liveRows @1 :UInt64;     # Rows not deleted.
  liveBytes @2 :UInt64;    # Their tables', keys' and values' bytes.
  heldBack @3 :List(HeldBack);
}

struct HeldBack {
  # A member whose knowledge holds back collection of one shared scope.
  scope @0 :ScopeSpec;
  member @1 :Text;                 # Its fingerprint.
  lastSeenNanos @2 :Int64;         # When it last reported, Unix nanoseconds; 0 = never.
  generationsBehind @3 :UInt64;    # Generations held here that it lacks (the generation
                                   # vectors' gap: each device's commits in the whole
                                   # database, not only the scope's; `status` says so).
  mostBehindDevice @4 :UInt64;     # The device it lags most on (0 if it never reported),
  mostBehindGenerations @5 :UInt64; # and by how many generations.
}

interface Syncgroups {
  # Syncgroups (reference §3) managed from this node. Names route to the node hosting them:
  # `HOST:PORT/SUFFIX` is hosted by the node whose peer listener is HOST:PORT. Errors:
  # InvalidArgument (a malformed spec or name), Exist (the name is taken), NoExist, BadState
  # (this node's copy is pending until it catches up with the admin), BadVersion (a stale
  # spec version), NoAccess (this node lacks the permission), ConnFail (the admin is
  # unreachable).

  create @0 (database :Text, name :Text, spec :T.SyncgroupSpec, hostFingerprint :Text,
             publishInvite :Text)
      -> (sg :SyncgroupInfo);
  # Creates a syncgroup with this node as creator, admin and first member, and publishes it
  # at the node its name routes to (itself, or the node with `hostFingerprint`). Empty
  # permissions mean "only this node" (Admin, Read and Write). Another host takes the publish
  # as a proposal (the syncgroup stays `publishPending` until the host accepts it) unless
  # `publishInvite` is a `syncbase-publish://` token that host minted for the database, which
  # also names the host (then `hostFingerprint` may be empty).

  join @1 (invite :Text, name :Text, adminFingerprint :Text) -> (sg :SyncgroupInfo);
  # Joins at an admin: with an invite token (`syncbase://...`, from `invite`), or, for a node
  # already in the permissions, by name plus the admin node's fingerprint.

  list @2 (database :Text) -> (syncgroups :List(SyncgroupInfo));
  # The syncgroups this node knows in one database ("" = every database), by name.

  get @3 (name :Text) -> (sg :SyncgroupInfo);

  setSpec @4 (name :Text, spec :T.SyncgroupSpec, version :Text) -> (sg :SyncgroupInfo);
  # Needs Admin. A non-empty `version` must equal the current spec version.

  invite @5 (name :Text, level :InviteLevel, expiresInSeconds :UInt64, uses :UInt32)
      -> (token :Text);
  # Mints an invite (needs Admin): a token joining adds the joiner's identity at `level`.
  # 0 seconds means no expiry; 0 uses means one use. Only a hash of the token is stored.

  eject @6 (name :Text, member :Text) -> ();
  # Needs Admin: removes an identity from the members and every access list.

  leave @7 (name :Text) -> ();
  # Stops syncing the syncgroup's prefixes with its members; the local data stays.

  proposals @8 () -> (proposals :List(ProposalInfo));
  # Syncgroups other nodes published here that wait for this node's decision, by name.
  # Nothing is shared with, or accepted from, anyone under a proposal.

  accept @9 (name :Text) -> (sg :SyncgroupInfo);
  # Accepts a proposal: this node holds the syncgroup (pending until it catches up with the
  # publisher) and syncs its prefixes with its members. NoExist if no such proposal; Exist if
  # the name or id was taken here since.

  reject @10 (name :Text) -> ();
  # Forgets a proposal. NoExist if no such proposal.

  invitePublish @11 (database :Text, expiresInSeconds :UInt64, uses :UInt32) -> (token :Text);
  # Mints a publish invite (`syncbase-publish://...`) for a database (made if absent): a
  # syncgroup of it published here with the token is accepted at once. 0 seconds means no
  # expiry; 0 uses means one. Only a hash of the token is stored.

  destroy @12 (name :Text) -> ();
  # Needs Admin (NoAccess otherwise; NoExist for an unknown name): destroys the syncgroup for
  # good. Every member learns it from the admins (metadata sync) and stops syncing its
  # prefixes; the rows stay on every node. Here its name is free at once, its invites are
  # void, and `list` no longer shows it.
}

struct ProposalInfo {
  database @0 :Text;
  sg @1 :T.Syncgroup;
  publisher @2 :Text;           # The authenticated identity that published it.
  receivedNanos @3 :Int64;      # When it arrived, Unix nanoseconds.
}

enum InviteLevel {
  read @0;
  readWrite @1;
  admin @2;
}

struct SyncgroupInfo {
  database @0 :Text;
  sg @1 :T.Syncgroup;
  pending @2 :Bool;       # This node's copy has not caught up with the admin's checkpoint.
  left @3 :Bool;          # This node left it (it no longer syncs its prefixes).
  publisher @4 :Text;     # Who published it here ("" if created or joined here).
  removed @5 :Text;       # "" or how this node lost it: "Ejected", "Read revoked" (an
                          # admin's notice) or "Destroyed" (`destroy`, learnt from an admin). It no longer syncs it; app writes under its
                          # prefixes fail NoAccess (unless shared otherwise); a join clears it.
  removedBy @6 :Text;     # The admin whose notice said so, or who destroyed it ("" if not
                          # removed, or unknown).
  waitingFor @7 :Text;    # While pending: what the copy waits for and what to do, one line.
  removedAtNanos @8 :Int64; # When it was removed, Unix nanoseconds (0 if not): when the notice
                          # was taken, or, for "Destroyed", the destroying version's time.
}

struct PeerSpec {
  address @0 :Text;             # host:port of the peer's TLS peer listener.
  fingerprint @1 :Text;         # The peer's identity (64 hex digits, from `syncbase id`).
  database @2 :Text;
  scopes @3 :List(ScopeSpec);   # What to sync: (table, row-key prefix) pairs.
  name @4 :Text;                # A local label for the peer ("" keeps the one it has).
}

struct ScopeSpec {
  table @0 :Text;
  prefix @1 :Text;              # "" for the whole table.
}

struct PeerStatus {
  fingerprint @0 :Text;
  address @1 :Text;
  databases @2 :List(PeerDatabase);
  connected @3 :Bool;           # An outgoing session to the peer is up.
  lastSuccessNanos @4 :Int64;   # When a batch from it last reached its log's end (0 = never).
  lastError @5 :Text;           # e.g. "ConnFail: connection to peer failed: ..." ("" = none).
  recordsReceived @6 :UInt64;   # Records applied from it (outgoing sessions).
  bytesReceived @7 :UInt64;
  recordsSent @8 :UInt64;       # Records sent to it (its sessions to us).
  bytesSent @9 :UInt64;
  recordsPendingOut @10 :UInt64;  # Log entries not yet examined for it by our live responder.
  fromConfig @11 :Bool;         # Declared in the config file (removePeer cannot drop it).
  recordsPendingIn @12 :UInt64; # Log entries the peer had not yet examined for us, as of its last push.
  recordsRefused @13 :UInt64;   # Records from it dropped: their writer held no Write permission.
  name @14 :Text;               # Its local label (`peer add --name`), else the name it chose as a
                                # syncgroup member ("" if neither): never its identity.
  declared @15 :Bool;           # Declared with `peer add` or in the config file.
  syncgroups @16 :UInt32;       # Syncgroups held here that it is a member of (0: none).
  clockMeasured @17 :Bool;      # Whether a GetTime exchange with it succeeded since start.
  clockOffsetNanos @18 :Int64;  # Its physical clock minus ours at the latest exchange, ns.
  clockRttNanos @19 :Int64;     # That exchange's round trip, ns (the offset is good to half).
}

struct PeerDatabase {
  database @0 :Text;
  scopes @1 :List(ScopeSpec);
}

struct Limits {
  maxNameBytes @0 :UInt32;
  maxKeyBytes @1 :UInt32;
  maxValueBytes @2 :UInt32;
  maxBatchOps @3 :UInt32;
  maxBatchBytes @4 :UInt32;   # Table names, keys and values of one batch, summed.
}

interface Database {
  table @0 (name :Text) -> (table :Table);
  # A handle on the named table; tables need no creation.

  batch @1 (ops :List(BatchOp)) -> ();
  # Applies every operation, across tables of this database, in one atomic commit: all or
  # nothing. Operations apply in list order (a later put of the same key wins). Every node
  # that syncs the batch applies it in one commit too (a sync page never splits a batch), so
  # no reader or watcher anywhere sees part of it; this is why a batch is limited to
  # `Limits.maxBatchBytes`. A batch over the limits fails with `InvalidArgument:` naming it.

  name @2 () -> (name :Text);

  watch @3 (table :Text, prefix :Text, initialState :Bool, resumeMarker :Data, sink :WatchSink) -> ();
  # Pushes every change to rows of `table` ("" for every table) whose key starts with
  # `prefix`, local or synced, to `sink` in commit order, for as long as the caller keeps the
  # call open. With `initialState`, the current rows come first (marked `initial`). Every
  # change carries a resume marker: pass the last one received to a new watch to go on
  # exactly after it (an empty marker means "from now"). A marker from another database or a
  # damaged one fails with `InvalidArgument:`. A marker below the database's watch-feed
  # floor fails with `Compacted:`: history collection removed changes after it (as etcd
  # compacts revisions), so the feed cannot go on exactly after it; read the rows again
  # (`Table.scan`, or a watch with `initialState`) and watch from now (an empty marker).
  # Collection keeps the changes a running watch has yet to read, so only a marker brought
  # back after its watch ended can be refused. A row committed while the initial state is being read may arrive
  # twice: once as initial state and once as a change.

  listTables @4 () -> (tables :List(TableInfo));
  # The tables of this database that hold at least one live row (a row not deleted), in
  # name order (the UTF-8 names' byte order). Tables are implicit (a put creates one), so a
  # table whose rows were all deleted holds only tombstones and is not listed, as
  # `Table.scan` shows it empty. The tables' figures add up to this database's live data in
  # `Service.storeStatus`. Reads every row head of the database once, tombstones included,
  # in one snapshot (cost: N row heads, T tables: O(N) time, O(T) memory; no value copied).
  # A database that is not on the node fails with `NoExist:` (`Service.database` with
  # `create` false).
}

struct TableInfo {
  name @0 :Text;
  liveRows @1 :UInt64;     # Rows not deleted.
  liveBytes @2 :UInt64;    # Their table name's, keys' and values' bytes (the name counted
                           # once per row, as `DatabaseStatus.liveBytes` counts it).
}

interface WatchSink {
  push @0 (changes :List(WatchChange)) -> stream;
}

struct WatchChange {
  table @0 :Text;
  key @1 :Text;
  union {
    put @2 :Data;
    delete @3 :Void;
  }
  fromSync @4 :Bool;        # Came from a peer (false: a local app write).
  initial @5 :Bool;         # Part of the initial state, not a change.
  resumeMarker @6 :Data;    # Resume after this change.
}

struct BatchOp {
  table @0 :Text;
  key @1 :Text;
  union {
    put @2 :Data;      # Store this value at (table, key).
    delete @3 :Void;   # Remove (table, key); absent keys are not an error.
  }
}

interface Table {
  put @0 (key :Text, value :Data) -> ();
  # Stores `value` at `key`, durably (on a durable backend) before returning.

  get @1 (key :Text) -> (value :Data, found :Bool);
  # The value at `key`; `found` is false (and `value` empty) if there is none.

  delete @2 (key :Text) -> (existed :Bool);
  # Removes `key`; `existed` says whether it held a value on this node. The delete is recorded
  # (a versioned tombstone that syncs) even when it did not, so it wins over an earlier put
  # made on a peer this node has not heard from yet.

  scan @3 (prefix :Text, sink :RowSink) -> (count :UInt64);
  # Pushes every row whose key starts with `prefix` ("" for all) to `sink`, in key order, in
  # batches; returns the number of rows once the last batch is acknowledged. Each batch is
  # read from one consistent snapshot; rows committed during a long scan may or may not
  # appear, but no key appears twice.

  name @4 () -> (name :Text);
}

interface RowSink {
  push @0 (rows :List(Row)) -> stream;
}

struct Row {
  key @0 :Text;
  value @1 :Data;
}
