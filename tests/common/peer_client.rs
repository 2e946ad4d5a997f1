//! Typed calls on the peer API for the integration tests: [`PeerCalls`] makes each `Sync` call
//! a test needs from plain Rust values (syncgroup names, member infos, tables, syncgroups) and
//! decodes its answer, and [`AdminCalls`] does the same for a `SyncgroupAdmin` capability, so a
//! test says what it calls, not how the request is laid out. Requests are encoded with the
//! library's own wire functions (`rpc::wire`, `rpc::syncgroup_wire`). Errors stay
//! `capnp::Error`: `peer::outcome` turns one into its stable id (`NoAccess`, ...).

use std::collections::BTreeMap;

use capnp::capability::Promise;
use futures::TryFutureExt;

use syncbase::genvec::{GenVector, Knowledge, Scope};
use syncbase::node::JoinReply;
use syncbase::rpc::syncgroup_wire::{
    read_syncgroup, write_member_info, write_spec, write_syncgroup, write_syncgroup_knowledge,
};
use syncbase::rpc::wire::{read_vector, write_knowledge};
use syncbase::schema::sync_capnp::{delta_sink, sync, syncgroup_admin};
use syncbase::store::Version;
use syncbase::syncgroup::{MemberInfo, Spec, Syncgroup, SyncgroupId};

/// A library error as the capnp error a node would have sent (same message, so same id).
fn failed(error: syncbase::error::Error) -> capnp::Error {
    capnp::Error::failed(error.to_string())
}

/// A `joinSyncgroupAtAdmin` call: the syncgroup, the joiner as a member, and optionally an
/// invite secret and the joiner name it claims.
pub struct Join<'a> {
    name: &'a str,
    me: MemberInfo,
    invite: &'a str,
    claimed: &'a str,
}

impl<'a> Join<'a> {
    /// Joins `name` as the member `me`, with no invite and no claimed name (the node takes
    /// the caller's authenticated identity).
    pub fn new(name: &'a str, me: MemberInfo) -> Self {
        Join {
            name,
            me,
            invite: "",
            claimed: "",
        }
    }

    /// Redeems the invite whose secret is `secret`.
    pub fn invite(self, secret: &'a str) -> Self {
        Join {
            invite: secret,
            ..self
        }
    }

    /// Claims to be `joiner` (`joinerName`), which must be the caller's own fingerprint.
    pub fn claiming(self, joiner: &'a str) -> Self {
        Join {
            claimed: joiner,
            ..self
        }
    }
}

/// A `publishSyncgroup` call: the syncgroup at a version, optionally with a publish invite's
/// secret and the publisher name it claims.
pub struct Publish<'a> {
    sg: &'a Syncgroup,
    version: String,
    invite: &'a str,
    claimed: &'a str,
}

impl<'a> Publish<'a> {
    /// Publishes `sg` at version "1" (a hex version), with no invite and no claimed name.
    pub fn new(sg: &'a Syncgroup) -> Self {
        Publish {
            sg,
            version: "1".into(),
            invite: "",
            claimed: "",
        }
    }

    /// At `version` instead (hex, as `Version::to_hex` writes it).
    pub fn version(self, version: Version) -> Self {
        Publish {
            version: version.to_hex(),
            ..self
        }
    }

    /// Redeems the publish invite whose secret is `secret`.
    pub fn invite(self, secret: &'a str) -> Self {
        Publish {
            invite: secret,
            ..self
        }
    }

    /// Claims to be `publisher`, which must be the caller's own fingerprint.
    pub fn claiming(self, publisher: &'a str) -> Self {
        Publish {
            claimed: publisher,
            ..self
        }
    }
}

/// What a `getDeltas` call asks for, from nothing known.
pub enum Deltas<'a> {
    /// Data records: all of each of these tables.
    Data { tables: &'a [&'a str], live: bool },
    /// Syncgroup metadata: these syncgroups.
    Syncgroups(&'a [SyncgroupId]),
}

/// The `Sync` calls of a peer holding `sync`.
pub struct PeerCalls<'a> {
    sync: &'a sync::Client,
}

impl<'a> PeerCalls<'a> {
    pub fn new(sync: &'a sync::Client) -> Self {
        PeerCalls { sync }
    }

    /// `joinSyncgroupAtAdmin`: the admin's reply (the syncgroup, its version, the vector to
    /// catch up to).
    pub async fn join(&self, join: Join<'_>) -> Result<JoinReply, capnp::Error> {
        let mut request = self.sync.join_syncgroup_at_admin_request();
        let mut params = request.get();
        params.set_sg_name(join.name);
        params.set_joiner_name(join.claimed);
        params.set_invite(join.invite);
        write_member_info(&join.me, params.init_my_info());
        let response = request.send().promise.await?;
        let results = response.get()?;
        let version = results.get_version()?.to_str()?;
        Ok(JoinReply {
            sg: read_syncgroup(results.get_sg()?).map_err(failed)?,
            version: Version::from_hex(version).map_err(failed)?,
            checkpoint: read_vector(results.get_genvec()?).map_err(failed)?,
        })
    }

    /// `publishSyncgroup` with an empty vector: whether the host took it as a proposal.
    pub async fn publish(&self, publish: Publish<'_>) -> Result<bool, capnp::Error> {
        let mut request = self.sync.publish_syncgroup_request();
        let mut params = request.get();
        params.set_publisher(publish.claimed);
        write_syncgroup(publish.sg, params.reborrow().init_sg());
        params.set_version(publish.version.as_str());
        params.set_invite(publish.invite);
        params.init_genvec();
        let response = request.send().promise.await?;
        Ok(response.get()?.get_proposed())
    }

    /// `getDeltas` on database `db` as device `device`, pushing into `sink`. The call is sent
    /// at once (holding the promise keeps it open); the promise ends with the call.
    pub fn get_deltas(
        &self,
        db: &str,
        device: u64,
        what: Deltas<'_>,
        sink: delta_sink::Client,
    ) -> Promise<(), capnp::Error> {
        let mut request = self.sync.get_deltas_request();
        let req = request.get().init_req();
        match what {
            Deltas::Data { tables, live } => {
                let mut data = req.init_data();
                data.set_db_name(db);
                data.set_initiator_device(device);
                data.set_live(live);
                let mut knowledge = Knowledge::new();
                for table in tables {
                    knowledge.insert(Scope::new(*table, ""), GenVector::new());
                }
                write_knowledge(&knowledge, data.init_init_vec());
            }
            Deltas::Syncgroups(ids) => {
                let mut sgs = req.init_sgs();
                sgs.set_db_name(db);
                sgs.set_initiator_device(device);
                let known: BTreeMap<_, _> = ids.iter().map(|id| (*id, GenVector::new())).collect();
                write_syncgroup_knowledge(&known, sgs.init_init_vec());
            }
        }
        request.get().set_sink(sink);
        Promise::from_future(request.send().promise.map_ok(drop))
    }

    /// `getTime` with a request sent at time 1, claiming to be `initiator` ("" claims none).
    pub async fn get_time(&self, initiator: &str) -> Result<(), capnp::Error> {
        let mut request = self.sync.get_time_request();
        request.get().set_initiator(initiator);
        request.get().init_req().set_send_ts(1);
        request.send().promise.await.map(drop)
    }

    /// `deviceInfo`: the node's device id.
    pub async fn device_info(&self) -> Result<u64, capnp::Error> {
        let response = self.sync.device_info_request().send().promise.await?;
        Ok(response.get()?.get_device_id())
    }

    /// `syncgroupAdmin`: the Admin capability of syncgroup `name`.
    pub async fn syncgroup_admin(&self, name: &str) -> Result<AdminCalls, capnp::Error> {
        let mut request = self.sync.syncgroup_admin_request();
        request.get().set_sg_name(name);
        let response = request.send().promise.await?;
        Ok(AdminCalls {
            admin: response.get()?.get_admin()?,
        })
    }

    /// `haveBlob`, `fetchBlob`, `fetchBlobRecipe` or `fetchChunks` (by its schema name), with
    /// empty arguments: only its outcome counts.
    pub async fn blob_call(&self, method: &str) -> Result<(), capnp::Error> {
        let sync = self.sync;
        match method {
            "haveBlob" => sync.have_blob_request().send().promise.await.map(drop),
            "fetchBlob" => sync.fetch_blob_request().send().promise.await.map(drop),
            "fetchBlobRecipe" => sync
                .fetch_blob_recipe_request()
                .send()
                .promise
                .await
                .map(drop),
            "fetchChunks" => sync.fetch_chunks_request().send().promise.await.map(drop),
            other => panic!("no blob method {other:?}"),
        }
    }
}

/// The calls on one syncgroup's `SyncgroupAdmin` capability.
pub struct AdminCalls {
    admin: syncgroup_admin::Client,
}

impl AdminCalls {
    /// `getSyncgroup`: the syncgroup as its admin sees it.
    pub async fn get_syncgroup(&self) -> Result<Syncgroup, capnp::Error> {
        let request = self.admin.get_syncgroup_request();
        let response = request.send().promise.await?;
        read_syncgroup(response.get()?.get_sg()?).map_err(failed)
    }

    /// `setSpec` to `spec`, at no particular spec version.
    pub async fn set_spec(&self, spec: &Spec) -> Result<(), capnp::Error> {
        let mut request = self.admin.set_spec_request();
        write_spec(spec, request.get().init_spec());
        request.send().promise.await.map(drop)
    }

    /// `eject` the member with fingerprint `member`.
    pub async fn eject(&self, member: &str) -> Result<(), capnp::Error> {
        let mut request = self.admin.eject_request();
        request.get().set_member(member);
        request.send().promise.await.map(drop)
    }
}
