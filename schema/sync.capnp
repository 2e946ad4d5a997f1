@0xbc395ef0f79d004c;
# The peer-to-peer Sync interface: Vanadium Syncbase's `Sync` (reference sync.vdl.txt) on
# Cap'n Proto. Streams of the original (`stream<_, T>`) are sink capabilities the caller passes
# in; the callee pushes batches with `-> stream` calls (flow-controlled) and returns when done.
#
# Access: the original tagged methods {Read} / {Write} and trusted caller-claimed names. Here a
# peer obtains a `Sync` capability only through an authenticated link, and only the methods
# its identity is entitled to work on it. Caller-name arguments (`initiator`, `publisher`,
# `joinerName`) are kept for wire compatibility with the original's shape; they must be empty
# or equal the authenticated identity, or the call fails with `NoAccess:`.
#
# Errors: an exception's description starts with a stable id and a colon:
#   DupSyncgroupPublish: duplicate publish on syncgroup: NAME
#   ConnFail: connection to peer failed (made by initiators, never returned by a server)
#   BrokenCrConnection: CrConnection stream to application does not exist or is broken.
#   NoAccess:, BadState:, BadVersion:, Exist:, NoExist:, InvalidArgument:, Unimplemented:,
#   ResourceExhausted: (a bounded resource is used up: proposals, connections, waiting calls)
#
# Transport: TLS 1.3 with mutual authentication on the node's peer address; the bootstrap
# capability is a `Sync` bound to the caller's identity (its certificate key's fingerprint).
# Any client that proves its key connects; each method then works only as far as that
# identity's current grants allow (ARCHITECTURE.md, "Capability matrix"): Read on a
# syncgroup gives getDeltas and joinSyncgroupAtAdmin, Write gives publishSyncgroup, Admin
# gives syncgroupAdmin; getTime and the blob methods need membership. A revoked identity's
# next call fails with `NoAccess:`. The blob methods answer `Unimplemented:` after that check
# (see README, "Not built yet").

using T = import "types.capnp";

interface Sync {
  getTime @0 (req :T.TimeReq, initiator :Text) -> (resp :T.TimeResp);
  # Clock metadata for the initiator's offset estimate.

  getDeltas @1 (req :T.DeltaReq, initiator :Text, sink :DeltaSink) -> ();
  # {Read} Streams the log records the initiator lacks for one database (data or syncgroup
  # metadata), then the responder's knowledge, into `sink`; returns when the last batch is
  # acknowledged. Data scopes the caller may not read are left out of the stream (and taken in
  # once it may); NoAccess if it may read none of them.

  publishSyncgroup @2 (publisher :Text, sg :T.Syncgroup, version :Text, genvec :T.GenVector,
                      invite :Text)
      -> (publishee :Text, proposed :Bool);
  # {Write} Publishes a syncgroup at the node its name routes to. A publish is an offer: a
  # syncgroup the host does not know is stored there as a *proposal* (`proposed` = true) that
  # shares and accepts nothing until the host's operator accepts it, unless `invite` (not in
  # the original) is the secret of a publish invite the host minted for the syncgroup's
  # database, which makes the host take it at once (`proposed` = false). Errors:
  # DupSyncgroupPublish if another publisher published it there; Exist if the name, or the
  # syncgroup id, is known there with other fixed fields (name, database, creator, prefixes);
  # NoExist if the host has no such database; NoAccess for a spent, expired or foreign
  # invite, or a publisher without Write in `sg`; ResourceExhausted when the host holds too
  # many proposals (from this publisher, or in all).

  joinSyncgroupAtAdmin @3 (sgName :Text, joinerName :Text, myInfo :T.SyncgroupMemberInfo,
                          invite :Text)
      -> (sg :T.Syncgroup, version :Text, genvec :T.GenVector);
  # {Read} Adds the caller to the syncgroup at an admin; returns the syncgroup metadata, its
  # version and the generation vector to catch up to before the joiner may mutate it.
  # `invite` (not in the original) is the secret of an invite this admin minted: it first adds
  # the caller's identity to the permissions at the invite's level. BadState while this
  # admin's own copy is pending; NoExist for an unknown name.

  haveBlob @4 (br :T.BlobRef) -> (size :Int64);
  # The blob's size if the responder holds all of it.

  fetchBlob @5 (br :T.BlobRef, sink :ByteSink) -> ();
  # Streams the whole blob into `sink`.

  fetchBlobRecipe @6 (br :T.BlobRef, sink :ChunkHashSink) -> ();
  # Streams the blob's chunk hashes in order, so the receiver can fetch only what it lacks.

  fetchChunks @7 (sink :ChunkDataSink) -> (requests :ChunkHashSink);
  # Bidirectional: the caller pushes the hashes it wants into `requests` (available at once
  # through pipelining) and the callee pushes the chunks into `sink` in request order.

  deviceInfo @8 () -> (deviceId :UInt64, identity :Text);
  # The responder's device id (for generation vectors) and its authenticated identity (its
  # certificate key's fingerprint). Not in the original.

  syncgroupAdmin @9 (sgName :Text) -> (admin :SyncgroupAdmin);
  # {Admin} The Admin capability of a syncgroup, for a caller the syncgroup's permissions list
  # under Admin. Not in the original (it had no remote spec changes or eject).

  reconcileState @10 (db :Text, scopes :List(Data))
      -> (session :StateSession, responderDevice :UInt64, knowledge :T.Knowledge,
          floor :T.Knowledge, scopes :List(Data));
  # {Read} Opens a catch-up by state for one database (not in the original; ARCHITECTURE.md,
  # "Catch-up by state"): an initiator whose getDeltas was refused with `BehindHorizon:`
  # (records it lacks were collected here) reconciles the row heads under `scopes` (each a
  # data scope, `table 0xfe rowPrefix`) with this node's by negentropy, fetches those it
  # lacks, and asks for deltas again. The answer carries this node's device, its knowledge
  # and its collection floor for the scopes, read from the same snapshot as the session's
  # row heads. The session serves the scopes asked for that the caller may read, and `scopes`
  # names them (as getDeltas leaves the others out; an answer without `scopes` serves every
  # scope asked for). Errors: NoAccess unless the caller may read one of the scopes and
  # the database is here; InvalidArgument for no scope or a malformed one; ResourceExhausted
  # when the connection already runs its most streams (an open session counts as one until
  # the caller drops it).
}

interface StateSession {
  # One catch-up by state, holding the responder's snapshot of row heads (one item per row,
  # tombstones included; id = blake3(table 0xfe row 0xfe version as 8 big-endian bytes),
  # timestamp 0). Every call re-checks the caller's Read (`NoAccess:` once revoked).

  reconcile @0 (message :Data) -> (message :Data);
  # One negentropy round (protocol version 0x61): the initiator's message in, the
  # responder's out; each at most 512 KiB (the frame size limit). InvalidArgument for a
  # larger or malformed message.

  fetch @1 (ids :List(Data), sink :DeltaSink) -> ();
  # {Read} Pushes into `sink` the current head of each row named by `ids` (at most 8192, each
  # an id this session offered: InvalidArgument otherwise) as ordinary log records
  # (`DeltaResp.rec`: the head's DAG node under its own device and generation), in pages
  # bounded as getDeltas data pages; `remaining`, `resume` and the marks are empty. A row gone
  # since the snapshot is skipped; one written since is sent at its current head. Returns
  # when the last page is acknowledged.
}

interface SyncgroupAdmin {
  # Administers one syncgroup on the node that minted this capability. Every call re-checks
  # that the holder is still an admin (`NoAccess:` once revoked) and that this node's copy is
  # not pending (`BadState:`).

  getSyncgroup @0 () -> (sg :T.Syncgroup, version :Text);

  setSpec @1 (spec :T.SyncgroupSpec, version :Text) -> (version :Text);
  # Replaces the spec. A non-empty `version` must equal the current one (`BadVersion:`
  # otherwise); prefixes cannot change. Returns the new version.

  eject @2 (member :Text) -> ();
  # Removes an identity from the members and from every access list: its capabilities fail
  # on their next call and members stop syncing with it.
}

interface DeltaSink {
  push @0 (batch :List(T.DeltaResp), remaining :UInt64, responderDevice :UInt64,
           resume :Data, markGenerations :List(UInt64), markDigests :List(UInt64),
           epochNotices :List(T.EpochNotice), removals :List(T.SyncgroupRemoval)) -> stream;
  # `remaining`: log entries the responder has not yet examined for this initiator after this
  # batch (0 once caught up); the initiator shows it as records pending in. In syncgroup
  # pages: 1 while versions are left for the next page of the round, 0 on the page that
  # ends it.
  # `responderDevice`: the responder's device id, the same in every push of a call, so the
  # initiator can open getDeltas without first asking deviceInfo (one round trip less).
  # `resume` (data pages; empty in syncgroup pages): an opaque token (at most 128 bytes)
  # naming where this page ends in the responder's log; the initiator keeps it, committed with
  # the page, and sends it back in its next DataDeltaReq, so an interrupted catch-up resumes
  # after the last page applied instead of starting over.
  # `markGenerations`, `markDigests` (data pages that carry knowledge): of the generations the
  # request's `markGenerations` names, those of the initiator's device the responder holds,
  # each with a digest of that record (xxh3 of its table, row, version and kind), so an
  # initiator whose store was restored or copied learns that its (device, generation) pairs
  # name other records elsewhere.
  # `epochNotices` (the first data page of a call; not in the original): the responder's
  # recent epochs for this database (at most 16), each a device id it left and the safe
  # generation below which that device's records are its own. An initiator takes a notice
  # only for a device of the responder's own lineage (and bound to the responder's identity
  # by a syncgroup it holds, or from a declared peer), once: it lowers its knowledge of that
  # device to the safe generation and fetches its records above it again.
  # `removals` (syncgroup pages; not in the original): for each syncgroup asked for that the
  # initiator may no longer read, when the responder holds Admin in it, how the initiator lost
  # it (at most one per syncgroup asked for). The initiator takes a notice only from a peer
  # holding Admin in its own copy, records it (`sg show`: Ejected / Read revoked), stops
  # syncing the syncgroup and refuses its app's writes under its prefixes. A call where every
  # syncgroup asked for was refused pushes its notices, then fails NoAccess.
}

interface ByteSink {
  write @0 (bytes :Data) -> stream;
}

interface ChunkHashSink {
  push @0 (hashes :List(T.ChunkHash)) -> stream;
  end @1 ();
}

interface ChunkDataSink {
  push @0 (chunks :List(T.ChunkData)) -> stream;
}
