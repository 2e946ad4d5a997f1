//! Conversions between the engine's syncgroup types and their Cap'n Proto form in
//! `schema/types.capnp`: specs, permissions, member info, whole syncgroups, syncgroup versions
//! and syncgroup knowledge. Decoding validates (names, identities, ids, the spec's rules), so
//! a malformed syncgroup is refused before the engine sees it.

use std::collections::{BTreeMap, BTreeSet};

use crate::clock::Hlc;
use crate::error::{Error, Result};
use crate::genvec::{DeviceId, Generation, Scope};
use crate::identity::Fingerprint;
use crate::rpc::wire::{malformed, read_vector, text, write_vector};
use crate::schema::types_capnp::{
    AccessTag, SyncgroupStatus, access_list, knowledge, permissions, syncgroup,
    syncgroup_member_info, syncgroup_rec, syncgroup_removal, syncgroup_spec,
};
use crate::store::{SyncgroupKnowledge, Version};
use crate::syncgroup::access::AccessList;
use crate::syncgroup::{
    MemberInfo, Permissions, Removal, Spec, Status, Syncgroup, SyncgroupId, SyncgroupName,
    SyncgroupRecord, Tag, VersionStamp,
};

/// Fills `out` with `spec`.
pub fn write_spec(spec: &Spec, mut out: syncgroup_spec::Builder<'_>) {
    out.set_description(spec.description.as_str());
    out.set_is_private(spec.is_private);
    write_permissions(&spec.perms, out.reborrow().init_perms());
    let mut prefixes = out.reborrow().init_prefixes(spec.prefixes.len() as u32);
    for (i, scope) in spec.prefixes.iter().enumerate() {
        let mut prefix = prefixes.reborrow().get(i as u32);
        prefix.set_table_name(scope.table.as_str());
        prefix.set_row(scope.prefix.as_str());
    }
    let mut mounts = out.init_mount_tables(spec.mount_tables.len() as u32);
    for (i, mount) in spec.mount_tables.iter().enumerate() {
        mounts.set(i as u32, mount.as_str());
    }
}

/// Decodes a spec (not yet validated: callers decide when empty permissions are allowed).
pub fn read_spec(reader: syncgroup_spec::Reader<'_>) -> Result<Spec> {
    let prefixes = reader
        .get_prefixes()
        .map_err(malformed)?
        .iter()
        .map(|prefix| {
            Ok(Scope::new(
                text(prefix.get_table_name())?,
                text(prefix.get_row())?,
            ))
        })
        .collect::<Result<_>>()?;
    let mount_tables = reader
        .get_mount_tables()
        .map_err(malformed)?
        .iter()
        .map(|mount| text(mount).map(str::to_owned))
        .collect::<Result<_>>()?;
    Ok(Spec {
        description: text(reader.get_description())?.to_owned(),
        perms: read_permissions(reader.get_perms().map_err(malformed)?)?,
        prefixes,
        mount_tables,
        is_private: reader.get_is_private(),
    })
}

fn write_permissions(perms: &Permissions, out: permissions::Builder<'_>) {
    let mut entries = out.init_entries(perms.0.len() as u32);
    for (i, (tag, list)) in perms.0.iter().enumerate() {
        let mut entry = entries.reborrow().get(i as u32);
        entry.set_tag(access_tag(*tag));
        write_access_list(list, entry.init_acl());
    }
}

fn write_access_list(list: &AccessList, mut out: access_list::Builder<'_>) {
    let mut allowed = out.reborrow().init_in(list.allowed.len() as u32);
    for (i, entry) in list.allowed.iter().enumerate() {
        allowed.set(i as u32, entry.as_str());
    }
    let mut denied = out.init_not_in(list.denied.len() as u32);
    for (i, entry) in list.denied.iter().enumerate() {
        denied.set(i as u32, entry.as_str());
    }
}

fn read_permissions(reader: permissions::Reader<'_>) -> Result<Permissions> {
    let mut perms = Permissions::default();
    for entry in reader.get_entries().map_err(malformed)? {
        let tag = match entry.get_tag() {
            Ok(tag) => from_access_tag(tag),
            Err(_) => return Err(Error::invalid("unknown access tag")),
        };
        let acl = entry.get_acl().map_err(malformed)?;
        let list = perms.0.entry(tag).or_default();
        list.allowed.extend(read_texts(acl.get_in())?);
        list.denied.extend(read_texts(acl.get_not_in())?);
    }
    Ok(perms)
}

fn read_texts(reader: capnp::Result<capnp::text_list::Reader<'_>>) -> Result<BTreeSet<String>> {
    reader
        .map_err(malformed)?
        .iter()
        .map(|entry| text(entry).map(str::to_owned))
        .collect()
}

fn access_tag(tag: Tag) -> AccessTag {
    match tag {
        Tag::Admin => AccessTag::Admin,
        Tag::Debug => AccessTag::Debug,
        Tag::Read => AccessTag::Read,
        Tag::Write => AccessTag::Write,
        Tag::Resolve => AccessTag::Resolve,
    }
}

fn from_access_tag(tag: AccessTag) -> Tag {
    match tag {
        AccessTag::Admin => Tag::Admin,
        AccessTag::Debug => Tag::Debug,
        AccessTag::Read => Tag::Read,
        AccessTag::Write => Tag::Write,
        AccessTag::Resolve => Tag::Resolve,
    }
}

/// Fills `out` with removal notices (one per syncgroup).
pub fn write_removals(
    removals: &BTreeMap<SyncgroupId, Removal>,
    mut out: capnp::struct_list::Builder<'_, syncgroup_removal::Owned>,
) {
    for (i, (id, how)) in removals.iter().enumerate() {
        let mut notice = out.reborrow().get(i as u32);
        notice.set_id(id.0);
        notice.set_how(match how {
            Removal::Ejected => syncgroup_removal::How::Ejected,
            Removal::ReadRevoked => syncgroup_removal::How::ReadRevoked,
        });
    }
}

/// Decodes removal notices: ids non-zero, each once (`InvalidArgument:` otherwise).
pub fn read_removals(
    reader: capnp::struct_list::Reader<'_, syncgroup_removal::Owned>,
) -> Result<BTreeMap<SyncgroupId, Removal>> {
    let mut removals = BTreeMap::new();
    for notice in reader.iter() {
        let how = match notice.get_how() {
            Ok(syncgroup_removal::How::Ejected) => Removal::Ejected,
            Ok(syncgroup_removal::How::ReadRevoked) => Removal::ReadRevoked,
            Err(_) => return Err(Error::invalid("unknown kind of syncgroup removal")),
        };
        let id = SyncgroupId(notice.get_id());
        if id.0 == 0 || removals.insert(id, how).is_some() {
            return Err(Error::invalid(
                "a syncgroup removal names id 0 or a syncgroup twice",
            ));
        }
    }
    Ok(removals)
}

/// Fills `out` with `info`.
pub fn write_member_info(info: &MemberInfo, mut out: syncgroup_member_info::Builder<'_>) {
    out.set_sync_priority(info.sync_priority);
    out.set_is_server(info.is_server);
    out.set_device_id(info.device.0);
    out.set_address(info.address.as_str());
    out.set_name(info.name.as_str());
}

/// Decodes member info (device 0 is left for the caller to refuse).
pub fn read_member_info(reader: syncgroup_member_info::Reader<'_>) -> Result<MemberInfo> {
    let address = text(reader.get_address())?;
    if address.len() > 256 {
        return Err(Error::invalid("member address is longer than 256 bytes"));
    }
    let name = text(reader.get_name())?;
    crate::syncgroup::check_member_name(name)?;
    Ok(MemberInfo {
        sync_priority: reader.get_sync_priority(),
        is_server: reader.get_is_server(),
        device: DeviceId(reader.get_device_id()),
        address: address.to_owned(),
        name: name.to_owned(),
    })
}

/// Fills `out` with `sg`.
pub fn write_syncgroup(sg: &Syncgroup, mut out: syncgroup::Builder<'_>) {
    out.set_id(sg.id.0);
    out.set_name(sg.name.as_str());
    out.set_spec_version(sg.spec_version.as_str());
    write_spec(&sg.spec, out.reborrow().init_spec());
    out.set_creator(sg.creator.as_str());
    out.set_db_name(sg.db.as_str());
    out.set_status(match sg.status {
        Status::PublishPending => SyncgroupStatus::PublishPending,
        Status::PublishRejected => SyncgroupStatus::PublishRejected,
        Status::Running => SyncgroupStatus::Running,
        Status::Destroyed => SyncgroupStatus::Destroyed,
    });
    write_vector(&sg.former_writers, out.reborrow().init_former_writers());
    let mut lineages = out
        .reborrow()
        .init_former_lineages(sg.former_lineages.len() as u32);
    for (i, lineage) in sg.former_lineages.iter().enumerate() {
        lineages.set(i as u32, *lineage);
    }
    let mut joiners = out.init_joiners(sg.joiners.len() as u32);
    for (i, (member, info)) in sg.joiners.iter().enumerate() {
        let mut joiner = joiners.reborrow().get(i as u32);
        joiner.set_member(member.as_str());
        write_member_info(info, joiner.init_info());
    }
}

/// Decodes and validates a whole syncgroup.
pub fn read_syncgroup(reader: syncgroup::Reader<'_>) -> Result<Syncgroup> {
    let mut joiners = BTreeMap::new();
    for joiner in reader.get_joiners().map_err(malformed)? {
        let member = identity(text(joiner.get_member())?)?;
        let info = read_member_info(joiner.get_info().map_err(malformed)?)?;
        if joiners.insert(member.clone(), info).is_some() {
            return Err(Error::invalid(format!("member {member} is listed twice")));
        }
    }
    let status = match reader.get_status() {
        Ok(SyncgroupStatus::PublishPending) => Status::PublishPending,
        Ok(SyncgroupStatus::PublishRejected) => Status::PublishRejected,
        Ok(SyncgroupStatus::Running) => Status::Running,
        Ok(SyncgroupStatus::Destroyed) => Status::Destroyed,
        Err(_) => return Err(Error::invalid("unknown syncgroup status")),
    };
    let spec_version = text(reader.get_spec_version())?;
    if spec_version.is_empty() || spec_version.len() > 64 {
        return Err(Error::invalid("spec version must be 1-64 bytes"));
    }
    let sg = Syncgroup {
        id: SyncgroupId(reader.get_id()),
        name: SyncgroupName::parse(text(reader.get_name())?)?,
        spec_version: spec_version.to_owned(),
        spec: read_spec(reader.get_spec().map_err(malformed)?)?,
        creator: identity(text(reader.get_creator())?)?,
        db: text(reader.get_db_name())?.to_owned(),
        status,
        joiners,
        former_writers: read_vector(reader.get_former_writers().map_err(malformed)?)?,
        former_lineages: read_lineages(reader.get_former_lineages().map_err(malformed)?)?,
    };
    sg.validate()?;
    Ok(sg)
}

/// Decodes the lineages of former writers: at most `MAX_MEMBERS`, each listed once.
fn read_lineages(list: capnp::primitive_list::Reader<'_, u64>) -> Result<BTreeSet<u64>> {
    if list.len() as usize > crate::syncgroup::MAX_MEMBERS {
        return Err(Error::invalid(format!(
            "a syncgroup has at most {} former writers",
            crate::syncgroup::MAX_MEMBERS
        )));
    }
    let lineages: BTreeSet<u64> = list.iter().collect();
    if lineages.len() != list.len() as usize {
        return Err(Error::invalid("a former writer's lineage is listed twice"));
    }
    Ok(lineages)
}

/// Fills `out` with one syncgroup version.
pub fn write_syncgroup_record(record: &SyncgroupRecord, mut out: syncgroup_rec::Builder<'_>) {
    let stamp = &record.stamp;
    let mut meta = out.reborrow().init_metadata();
    meta.set_id(stamp.device.0);
    meta.set_gen(stamp.generation.get());
    meta.set_obj_id(record.sg.id.to_hex().as_bytes());
    meta.set_cur_vers(stamp.version.to_hex().as_str());
    let mut time = meta.init_upd_time();
    time.set_wall_nanos(stamp.hlc.wall_nanos);
    time.set_logical(stamp.hlc.logical);
    write_syncgroup(&record.sg, out.init_sg());
}

/// Decodes and validates one syncgroup version.
pub fn read_syncgroup_record(reader: syncgroup_rec::Reader<'_>) -> Result<SyncgroupRecord> {
    let meta = reader.get_metadata().map_err(malformed)?;
    let sg = read_syncgroup(reader.get_sg().map_err(malformed)?)?;
    if meta.get_obj_id().map_err(malformed)? != sg.id.to_hex().as_bytes() {
        return Err(Error::invalid("syncgroup record's objId is not its id"));
    }
    if meta.get_id() == 0 || meta.get_gen() == 0 {
        return Err(Error::invalid(
            "syncgroup record with device 0 or generation 0",
        ));
    }
    let time = meta.get_upd_time().map_err(malformed)?;
    Ok(SyncgroupRecord {
        stamp: VersionStamp {
            device: DeviceId(meta.get_id()),
            generation: Generation::new(meta.get_gen()),
            hlc: Hlc {
                wall_nanos: time.get_wall_nanos(),
                logical: time.get_logical(),
            },
            version: Version::from_hex(text(meta.get_cur_vers())?)?,
        },
        sg,
    })
}

/// Fills `out` with syncgroup knowledge (each scope is a syncgroup id in hex).
pub fn write_syncgroup_knowledge(known: &SyncgroupKnowledge, out: knowledge::Builder<'_>) {
    let mut scopes = out.init_scopes(known.len() as u32);
    for (i, (id, vector)) in known.iter().enumerate() {
        let mut entry = scopes.reborrow().get(i as u32);
        entry.set_scope(id.to_hex().as_bytes());
        write_vector(vector, entry.init_vector());
    }
}

/// Decodes syncgroup knowledge.
pub fn read_syncgroup_knowledge(reader: knowledge::Reader<'_>) -> Result<SyncgroupKnowledge> {
    let mut known = SyncgroupKnowledge::new();
    for entry in reader.get_scopes().map_err(malformed)? {
        let scope = std::str::from_utf8(entry.get_scope().map_err(malformed)?)
            .map_err(|_| Error::invalid("syncgroup scope is not UTF-8"))?;
        let id = SyncgroupId::from_hex(scope)?;
        known.insert(id, read_vector(entry.get_vector().map_err(malformed)?)?);
    }
    Ok(known)
}

/// Parses an identity argument; errors start with `InvalidArgument:`.
pub fn identity(text: &str) -> Result<Fingerprint> {
    Fingerprint::parse(text)
        .map_err(|_| Error::invalid(format!("{text:?} is not an identity (64 hex digits)")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syncgroup::access::Level;

    fn member_id(i: usize) -> Fingerprint {
        Fingerprint::parse(&format!("{i:0>64x}")).unwrap()
    }

    /// A syncgroup version with `members` joiners, each granted read-write, and as many former
    /// writers: the fields that grow with membership.
    fn crowded(members: usize) -> SyncgroupRecord {
        let admin = member_id(0);
        let mut perms = Permissions::only(&admin);
        let mut joiners = BTreeMap::new();
        for i in 1..=members {
            perms.grant(Level::ReadWrite, &member_id(i));
            joiners.insert(
                member_id(i),
                MemberInfo {
                    sync_priority: 0,
                    is_server: false,
                    device: DeviceId(u64::MAX - i as u64),
                    address: format!("host-{i}.example:7701"),
                    name: String::new(),
                },
            );
        }
        SyncgroupRecord {
            stamp: VersionStamp {
                device: DeviceId(u64::MAX),
                generation: Generation::MAX,
                hlc: Hlc {
                    wall_nanos: i64::MAX,
                    logical: u32::MAX,
                },
                version: Version(u64::MAX),
            },
            sg: Syncgroup {
                id: SyncgroupId(u64::MAX),
                name: SyncgroupName::parse("host.example:7701/crowded").unwrap(),
                spec_version: "f".repeat(32),
                spec: Spec {
                    description: String::new(),
                    perms,
                    prefixes: vec![Scope::new("t", "")],
                    mount_tables: vec![],
                    is_private: false,
                },
                creator: admin,
                db: "db".into(),
                status: Status::Running,
                joiners,
                former_writers: (1..=members as u64)
                    .map(|i| (DeviceId(u64::MAX - i), Generation::new(i)))
                    .collect(),
                former_lineages: (1..=members as u64).map(|i| u64::MAX - i).collect(),
            },
        }
    }

    /// Also: a syncgroup at its member limit (more grants than `access::MAX_ENTRIES` allows,
    /// so larger than any valid one) stays within the size its stream bound is made for.
    #[test]
    fn a_syncgroup_version_never_encodes_larger_than_its_page_estimate() {
        for members in [0, 1, 10, 1000, crate::syncgroup::MAX_MEMBERS] {
            let record = crowded(members);
            let mut message = capnp::message::Builder::new_default();
            write_syncgroup_record(&record, message.init_root());
            let bytes = message.size_in_words() * 8;
            let estimate = crate::store::syncgroup_wire_estimate(&record).unwrap();
            assert!(bytes <= estimate, "{members} members: {bytes} > {estimate}");
            assert!(
                estimate <= crate::paging::MAX_SYNCGROUP_WIRE_BYTES,
                "{members} members"
            );
        }
    }

    #[test]
    fn syncgroup_versions_round_trip() {
        let admin = Fingerprint::parse(&"a".repeat(64)).unwrap();
        let mut perms = Permissions::only(&admin);
        perms.grant(Level::Read, &Fingerprint::parse(&"b".repeat(64)).unwrap());
        let record = SyncgroupRecord {
            stamp: VersionStamp {
                device: DeviceId(5),
                generation: Generation::new(2),
                hlc: Hlc {
                    wall_nanos: 99,
                    logical: 1,
                },
                version: Version(77),
            },
            sg: Syncgroup {
                id: SyncgroupId(3),
                name: SyncgroupName::parse("h:1/x").unwrap(),
                spec_version: "ab".into(),
                spec: Spec {
                    description: "d".into(),
                    perms,
                    prefixes: vec![Scope::new("t", ""), Scope::new("u", "p")],
                    mount_tables: vec!["m:1".into()],
                    is_private: true,
                },
                creator: admin.clone(),
                db: "db".into(),
                status: Status::Running,
                joiners: BTreeMap::from([(
                    admin,
                    MemberInfo {
                        sync_priority: 1,
                        is_server: true,
                        device: DeviceId(5),
                        address: "h:1".into(),
                        name: String::new(),
                    },
                )]),
                former_writers: [(DeviceId(9), Generation::new(4))].into_iter().collect(),
                former_lineages: BTreeSet::from([9]),
            },
        };
        let mut message = capnp::message::Builder::new_default();
        write_syncgroup_record(&record, message.init_root());
        let reader = message
            .get_root_as_reader::<syncgroup_rec::Reader<'_>>()
            .unwrap();
        assert_eq!(read_syncgroup_record(reader).unwrap(), record);

        let known = SyncgroupKnowledge::from([(
            SyncgroupId(3),
            [(DeviceId(5), Generation::new(2))].into_iter().collect(),
        )]);
        let mut message = capnp::message::Builder::new_default();
        write_syncgroup_knowledge(&known, message.init_root());
        let reader = message
            .get_root_as_reader::<knowledge::Reader<'_>>()
            .unwrap();
        assert_eq!(read_syncgroup_knowledge(reader).unwrap(), known);
    }
}
