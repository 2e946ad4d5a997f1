@0xebb06445f7f5bf17;
# Shared types of the syncbase peer protocol: the wire form of the Vanadium Syncbase
# `interfaces` and `nosql` types (reference: sync.vdl.txt, syncbase-protocol.md §1) that
# `sync.capnp` uses. Names follow the V2015 original; where a field differs from the original
# the comment says how and why.
#
# Conventions:
# - Times are nanoseconds since the Unix epoch (UTC) in an Int64.
# - Device ids are a node's persistent random 64-bit id; generations count from 1 per
#   (device, generation space).
# - Keys are UTF-8 text; composite keys join their parts with the byte 0xfe, which can never
#   occur in UTF-8 (so it is carried in `Data`, not `Text`, where it appears).

# ---- Clock (§1.1) ----

struct TimeReq {
  # Sent by the initiator of a clock exchange.
  sendTs @0 :Int64;   # The initiator's clock when it sent the request.
}

struct TimeResp {
  # The responder's view of time, for an NTP-like offset estimate (§5).
  origTs @0 :Int64;       # Copy of TimeReq.sendTs.
  recvTs @1 :Int64;       # Responder clock when the request arrived.
  sendTs @2 :Int64;       # Responder clock when the reply was sent.
  lastNtpTs @3 :Int64;    # Time of the last NTP sync (by the responder or a peer it adopted); 0 = never.
  numReboots @4 :UInt16;  # Reboots since that NTP sync, accumulated across hops.
  numHops @5 :UInt16;     # Hops from the NTP-synced device; 0 means the responder itself.
}

struct HlcTimestamp {
  # A hybrid logical clock reading: ordered by (wallNanos, logical). The original stamped
  # records with a skewed wall clock only; the logical part keeps causally later writes later
  # whatever the skew.
  wallNanos @0 :Int64;
  logical @1 :UInt32;
}

# ---- Generation vectors (§1.2) ----

struct GenVector {
  # V2015 `PrefixGenVector`: device id -> highest generation known from it, in one scope.
  # A missing device counts as generation 0.
  entries @0 :List(Entry);
  struct Entry {
    deviceId @0 :UInt64;
    generation @1 :UInt64;
  }
}

struct Knowledge {
  # V2015 `GenVector`: scope -> vector. Data scopes are `table 0xfe rowPrefix`; syncgroup
  # scopes are the syncgroup object id.
  scopes @0 :List(Scope);
  struct Scope {
    scope @0 :Data;
    vector @1 :GenVector;
  }
}

# ---- Deltas (§1.3) ----

struct DataDeltaReq {
  appName @0 :Text;
  dbName @1 :Text;
  sgIds @2 :List(UInt64);   # The syncgroups the initiator shares with the responder.
  initVec @3 :Knowledge;    # Initiator knowledge per prefix of those syncgroups.
  initiatorDevice @4 :UInt64;
  # The initiator's device id: the responder never sends back records it made or sent.
  live @5 :Bool;
  # Live mode (not in the original): after the catch-up the responder keeps the call open and
  # pushes each new record right after it commits; the call ends when either side hangs up.
  resume @6 :Data;
  # Not in the original: the `resume` token of the last page the initiator applied from this
  # responder in an earlier call (at most 128 bytes; empty for none). The responder starts
  # where that page ended if the token is still valid for this initiator and the scopes it
  # serves it (same responder device, log unchanged up to there), else from the initiator's
  # knowledge; knowledge filtering applies either way.
  markGenerations @7 :List(UInt64);
  # Generations of the initiator's device whose records the responder's pushes report as
  # marks (the first one it wrote after each of its last opens; at most 64).
  initFloor @8 :Knowledge;
  # Not in the original: the initiator's collection floor as stored, per prefix the
  # generations it collected or caught up past by state (empty for none). The responder
  # counts it as known when it checks its own floor (`BehindHorizon`): a device the initiator
  # keeps its knowledge of at an epoch's safe point stays below a floor it has caught up past.
}

struct EpochNotice {
  # Not in the original: a device id the responder left at an epoch (its store was restored
  # or copied, so that device's generations above `safeGeneration` may name other records on
  # other nodes), announced so that peers lower their knowledge of `oldDevice` to
  # `safeGeneration` and fetch its records above it again, keeping both writes of a reused
  # pair. Taken only from a responder whose own device has `oldDevice`'s lineage.
  oldDevice @0 :UInt64;
  safeGeneration @1 :UInt64;
}

struct SgDeltaReq {
  appName @0 :Text;
  dbName @1 :Text;
  initVec @2 :Knowledge;
  # One vector per syncgroup the initiator asks about; each scope is the syncgroup id as 16
  # lowercase hex digits (syncgroup metadata has its own generation space per syncgroup).
  initiatorDevice @3 :UInt64;
  live @4 :Bool;            # As in DataDeltaReq.
}

struct DeltaReq {
  union {
    sgs @0 :SgDeltaReq;
    data @1 :DataDeltaReq;
  }
}

struct DeltaResp {
  # The responder sends every `rec` first and exactly one `respVec` last. In live mode each
  # pushed batch that reaches the end of the responder's log ends with a `respVec`: the
  # responder's knowledge at that point, which the initiator merges with that batch.
  union {
    rec @0 :LogRec;
    respVec @1 :Knowledge;
    sgRec @2 :SyncgroupRec;   # Syncgroup metadata deltas carry whole syncgroup versions.
  }
}

struct SyncgroupRec {
  # One version of a syncgroup, as the last writer made it. Conflicts resolve by last writer
  # wins on the whole object, ordered by (updTime, curVers).
  metadata @0 :LogRecMetadata;   # id/gen in the syncgroup's own space; objId = the id in hex.
  sg @1 :Syncgroup;
}

# ---- Log records (§1.4) ----

enum RecType {
  node @0;   # Adds a DAG node.
  link @1;   # Adds a parent link to an existing node (a conflict resolved by picking a version).
}

struct LogRecMetadata {
  id @0 :UInt64;            # Device that created the record.
  gen @1 :UInt64;           # That device's generation in the record's space.
  recType @2 :RecType;
  objId @3 :Data;           # The store key, e.g. `r 0xfe table 0xfe row`.
  curVers @4 :Text;         # The new version: random 64-bit, hex.
  parents @5 :List(Text);   # 0-2 parent versions.
  updTime @6 :HlcTimestamp; # Write time. The original used a skewed wall clock.
  delete @7 :Bool;
  batchId @8 :UInt64;       # 0 means no batch.
  batchCount @9 :UInt64;    # Mutations in the app transaction.
  # Dropped from the original: PermId, PermVers, Shell (never filled in V2015, gone in V2017).
}

struct LogRec {
  metadata @0 :LogRecMetadata;
  value @1 :Data;           # The value at curVers; empty for deletes and link records.
  blobRefs @2 :List(BlobRef);
  # Blob references the value carries, named by the writer (the original decoded values to
  # find them; here rows name their blobs explicitly).
}

# ---- Access control (§1.5, §6) ----

enum AccessTag {
  admin @0;
  debug @1;
  read @2;
  write @3;
  resolve @4;
}

struct AccessList {
  in @0 :List(Text);        # Identities (key fingerprints), or "..." for every authenticated peer.
  notIn @1 :List(Text);     # Identities refused even if `in` admits them.
}

struct Permissions {
  # V2015 `access.Permissions`: tag -> access list.
  entries @0 :List(Entry);
  struct Entry {
    tag @0 :AccessTag;
    acl @1 :AccessList;
  }
}

# ---- Syncgroups (§1.5) ----

struct TableRow {
  # A (table, row-key prefix) pair a syncgroup shares.
  tableName @0 :Text;
  row @1 :Text;
}

struct SyncgroupSpec {
  description @0 :Text;
  perms @1 :Permissions;
  prefixes @2 :List(TableRow);   # Immutable once created.
  mountTables @3 :List(Text);    # Rendezvous addresses.
  isPrivate @4 :Bool;            # Whether blobs may be served to holders of refs from other syncgroups.
}

struct SyncgroupMemberInfo {
  syncPriority @0 :UInt8;
  isServer @1 :Bool;
  deviceId @2 :UInt64;
  # The member's device id, which names its records in generation vectors. Not in the
  # original; it binds a member's records to its authenticated identity, so members can
  # refuse records whose writer had no Write permission.
  address @3 :Text;
  # host:port of the member's TLS peer listener ("" if it accepts no connections). The
  # original found members through mount tables; here members dial each other directly.
  name @4 :Text;
  # Not in the original: the name the member's operator chose (`serve --name`, the config's
  # `name`, by default its host name; "" if none), at most 64 bytes, no control characters.
  # Shown beside the member's fingerprint; never trusted as its identity (the fingerprint is).
}

struct SyncgroupRemoval {
  # Not in the original: an admin's notice to a node that asked for a syncgroup's metadata
  # and may no longer read it, so the node knows it lost the syncgroup (the version that
  # removed it never reaches it).
  id @0 :UInt64;              # The syncgroup's id.
  how @1 :How;
  enum How {
    ejected @0;               # No longer a member (`sg eject`).
    readRevoked @1;           # Still a member, without Read (`sg revoke`, a spec change).
  }
}

enum SyncgroupStatus {
  publishPending @0;
  publishRejected @1;
  running @2;
  destroyed @3;               # An admin destroyed it (`sg destroy`): final, nothing syncs under it.
}

struct Syncgroup {
  id @0 :UInt64;              # Random non-zero GroupId.
  name @1 :Text;              # Routes to its admin node, e.g. `127.0.0.1:7001/photos`.
  specVersion @2 :Text;       # Random hex etag.
  spec @3 :SyncgroupSpec;
  creator @4 :Text;           # The creator's authenticated identity.
  appName @5 :Text;
  dbName @6 :Text;
  status @7 :SyncgroupStatus;
  joiners @8 :List(Joiner);   # Members, keyed by identity.
  formerWriters @9 :GenVector;
  # Not in the original: for each device whose member lost Write (ejected, or narrowed by a
  # spec change), the last generation of its records that stays valid (what the admin had
  # seen then). Its earlier writes still sync to members that lack them; later ones do not.
  formerLineages @10 :List(UInt64);
  # Not in the original: the device lineages (low 48 bits) of the members that lost Write.
  # Their records at any generation are accepted when another member relays them (one that
  # accepted them before it learned of the change), so every member converges; only the
  # former writer's own later records, straight from it, are held to `formerWriters`.
  struct Joiner {
    member @0 :Text;          # The member's identity (certificate key fingerprint).
    info @1 :SyncgroupMemberInfo;
  }
}

# ---- Blobs (§1.6) ----

using BlobRef = Text;
# A blob's name; "" is the null ref.

struct ChunkHash {
  hash @0 :Data;   # BLAKE3 of the chunk (the original used MD5, unsafe against adversarial peers).
}

struct ChunkData {
  data @0 :Data;
}
