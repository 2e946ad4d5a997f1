use super::*;

/// A fingerprint of 64 `c`s.
pub(crate) fn id(c: char) -> Fingerprint {
    Fingerprint::parse(&c.to_string().repeat(64)).unwrap()
}

pub(crate) fn member(device: u64) -> MemberInfo {
    MemberInfo {
        sync_priority: 0,
        is_server: false,
        device: DeviceId(device),
        address: String::new(),
        name: String::new(),
    }
}

/// `h:1/photos` (id 7) over `t/p`: admin `a` (device 1), member `b` (device 2).
pub(crate) fn syncgroup() -> Syncgroup {
    Syncgroup {
        id: SyncgroupId(7),
        name: SyncgroupName::parse("h:1/photos").unwrap(),
        spec_version: "1".into(),
        spec: Spec {
            description: String::new(),
            perms: Permissions::only(&id('a')),
            prefixes: vec![Scope::new("t", "p")],
            mount_tables: vec![],
            is_private: false,
        },
        creator: id('a'),
        db: "db".into(),
        status: Status::Running,
        joiners: BTreeMap::from([(id('a'), member(1)), (id('b'), member(2))]),
        former_writers: GenVector::new(),
        former_lineages: Default::default(),
    }
}

/// `sg` as written by `device` at HLC wall time `wall`.
pub(crate) fn record(device: u64, wall: i64, sg: Syncgroup) -> SyncgroupRecord {
    SyncgroupRecord {
        stamp: VersionStamp {
            device: DeviceId(device),
            generation: Generation::FIRST,
            hlc: Hlc {
                wall_nanos: wall,
                logical: 0,
            },
            version: Version(wall as u64),
        },
        sg,
    }
}

#[test]
fn specs_need_prefixes_without_duplicates() {
    let mut spec = syncgroup().spec;
    spec.validate().unwrap();
    assert!(spec.covers("t", "px") && !spec.covers("t", "q") && !spec.covers("u", "p"));
    spec.prefixes.push(Scope::new("t", "p"));
    assert!(spec.validate().unwrap_err().to_string().contains("twice"));
    spec.prefixes.clear();
    assert!(
        spec.validate()
            .unwrap_err()
            .to_string()
            .contains("at least one prefix")
    );
    spec.prefixes.push(Scope::new("", "p"));
    assert!(
        spec.validate()
            .unwrap_err()
            .to_string()
            .starts_with("InvalidArgument: table name")
    );
}

#[test]
fn only_admins_versions_are_accepted() {
    let current = record(1, 10, syncgroup());
    let admin = id('a');
    let mut by_admin = syncgroup();
    by_admin.spec.description = "new".into();
    record(1, 20, by_admin.clone())
        .acceptable_from(&current, &admin)
        .unwrap();
    // Device 2 is member b, who is no admin.
    let error = record(2, 20, by_admin.clone())
        .acceptable_from(&current, &admin)
        .unwrap_err();
    assert!(error.to_string().starts_with("NoAccess:"), "{error}");
    // Nor may an unknown device write, or anyone change the prefixes.
    assert!(
        record(9, 20, by_admin.clone())
            .acceptable_from(&current, &admin)
            .is_err()
    );
    let mut moved = by_admin;
    moved.spec.prefixes = vec![Scope::new("t", "")];
    assert!(
        record(1, 20, moved)
            .acceptable_from(&current, &admin)
            .is_err()
    );
}

#[test]
fn a_version_granting_its_own_writer_admin_is_judged_by_the_current_copy() {
    let current = record(1, 10, syncgroup());
    let mut grab = syncgroup();
    grab.spec.perms.grant(access::Level::Admin, &id('b'));
    assert!(
        record(2, 20, grab.clone())
            .acceptable_from(&current, &id('b'))
            .is_err()
    );
}

#[test]
fn versions_travel_only_from_admins_even_when_written_by_one() {
    let current = record(1, 10, syncgroup());
    let mut by_admin = syncgroup();
    by_admin.spec.description = "new".into();
    // Member b relays a version naming admin a's device: unsigned, so it could be forged.
    let error = record(1, 20, by_admin)
        .acceptable_from(&current, &id('b'))
        .unwrap_err();
    assert!(error.to_string().contains("no admin of it here"), "{error}");
}

#[test]
fn a_version_cannot_rebind_an_admins_identity_to_another_device() {
    let current = record(1, 10, syncgroup());
    // Device 9 claims, in its own version, to be admin a's device; only a itself may say so.
    let mut rebound = syncgroup();
    rebound.joiners.insert(id('a'), member(9));
    assert!(
        record(9, 20, rebound.clone())
            .acceptable_from(&current, &id('a'))
            .is_ok(),
        "the admin itself, authenticated, may move to a new device"
    );
    let mut impostor = current.clone();
    impostor.sg.spec.perms.grant(access::Level::Admin, &id('c'));
    assert!(
        record(9, 20, rebound)
            .acceptable_from(&impostor, &id('c'))
            .is_err(),
        "admin c may not write in a's name from a device bound to a only by this version"
    );
}

#[test]
fn ejecting_removes_the_member_everywhere() {
    let mut sg = syncgroup();
    sg.spec.perms.grant(access::Level::ReadWrite, &id('b'));
    assert!(sg.device_may_write(DeviceId(2), Generation::new(9), &id('b')));
    let before = sg.clone();
    assert!(sg.eject(&id('b')));
    assert!(!sg.device_may_write(DeviceId(2), Generation::new(9), &id('b')));
    // Its writes up to what the admin had seen stay valid; later ones do not.
    sg.remember_former_writers(&before, &known(&[(DeviceId(2), Generation::new(5))]));
    assert!(sg.device_may_write(DeviceId(2), Generation::new(5), &id('b')));
    assert!(!sg.device_may_write(DeviceId(2), Generation::new(6), &id('b')));
    assert_eq!(
        sg.former_writers.get(DeviceId(1)),
        Generation::NONE,
        "the admin kept Write"
    );
    assert!(!sg.allows(Tag::Read, &id('b')));
    assert!(!sg.eject(&id('b')));
}

#[test]
fn an_ejected_writers_later_records_are_valid_relayed_by_a_member_and_not_from_itself() {
    let mut sg = syncgroup();
    sg.spec.perms.grant(access::Level::ReadWrite, &id('b'));
    let before = sg.clone();
    assert!(sg.eject(&id('b')));
    sg.remember_former_writers(&before, &known(&[(DeviceId(2), Generation::new(5))]));
    // Member a accepted b's generation 9 before it learned of the eject: every member must
    // take it from a, or a and they diverge for ever.
    assert!(
        sg.device_may_write(DeviceId(2), Generation::new(9), &id('a')),
        "relayed by a member"
    );
    assert!(
        !sg.device_may_write(DeviceId(2), Generation::new(9), &id('b')),
        "from b itself"
    );
    assert!(
        !sg.device_may_write(DeviceId(2), Generation::new(9), &id('c')),
        "from a non-member"
    );
    assert!(
        !sg.device_may_write(DeviceId(7), Generation::FIRST, &id('a')),
        "a device no member ever wrote from"
    );
}

/// Data knowledge of table `t` holding `entries`.
fn known(entries: &[(DeviceId, Generation)]) -> Knowledge {
    let mut knowledge = Knowledge::new();
    knowledge.insert(Scope::new("t", ""), entries.iter().copied().collect());
    knowledge
}

#[test]
fn an_ejected_writers_records_from_its_earlier_epochs_stay_valid_up_to_what_the_admin_saw() {
    let mut sg = syncgroup();
    sg.spec.perms.grant(access::Level::ReadWrite, &id('b'));
    // b wrote as 2 at epoch 1, was restored from a copy, and joined again as epoch 2.
    let (earlier, current) = (DeviceId(2).with_epoch(1), DeviceId(2).with_epoch(2));
    sg.joiners.get_mut(&id('b')).unwrap().device = current;
    assert!(
        sg.device_may_write(earlier, Generation::new(9), &id('b')),
        "a member's lineage writes"
    );
    let before = sg.clone();
    assert!(sg.eject(&id('b')));
    sg.remember_former_writers(
        &before,
        &known(&[
            (earlier, Generation::new(7)),
            (current, Generation::new(3)),
            (DeviceId(9), Generation::new(4)),
        ]),
    );
    assert!(
        sg.device_may_write(earlier, Generation::new(7), &id('b')),
        "seen by the admin before the eject"
    );
    assert!(!sg.device_may_write(earlier, Generation::new(8), &id('b')));
    assert!(
        sg.device_may_write(current, Generation::new(3), &id('b'))
            && !sg.device_may_write(current, Generation::new(4), &id('b'))
    );
    assert_eq!(
        sg.former_writers.get(DeviceId(9)),
        Generation::NONE,
        "another lineage"
    );
}

#[test]
fn last_writer_wins_by_hlc_then_version() {
    let early = record(1, 10, syncgroup()).stamp;
    let late = record(1, 20, syncgroup()).stamp;
    assert!(late.wins_over(&early) && !early.wins_over(&late) && !late.wins_over(&late));
    assert!(late.wins_over(&VersionStamp::provisional(Version(u64::MAX))));
}

#[test]
fn pending_settles_once_knowledge_reaches_the_checkpoint() {
    let name = SyncgroupName::parse("h:1/x").unwrap();
    let mut local = LocalState {
        pending: Some([(DeviceId(1), Generation::new(3))].into_iter().collect()),
        ..LocalState::default()
    };
    assert!(
        local
            .check_settled(&name)
            .unwrap_err()
            .to_string()
            .starts_with("BadState:")
    );
    local.knowledge.set(DeviceId(1), Generation::new(2));
    assert!(!local.settle());
    local.knowledge.set(DeviceId(1), Generation::new(3));
    assert!(local.settle());
    local.check_settled(&name).unwrap();
}

#[test]
fn syncgroup_ids_are_exactly_sixteen_hex_digits() {
    let id = SyncgroupId(0xa);
    assert_eq!(SyncgroupId::from_hex(&id.to_hex()).unwrap(), id);
    for bad in [
        "+00000000000000a",
        "000000000000000a0",
        "0000000000000000",
        "g00000000000000a",
    ] {
        assert!(SyncgroupId::from_hex(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_members_records_from_a_later_epoch_are_still_its_own() {
    let mut sg = syncgroup();
    let epoch = DeviceId(1).with_epoch(3);
    assert_eq!(sg.member_of_device(epoch), Some(&id('a')));
    assert!(
        sg.device_may_write(epoch, Generation::FIRST, &id('b')),
        "a holds Write"
    );
    assert!(!sg.device_may_write(DeviceId(3).with_epoch(3), Generation::FIRST, &id('b')));
    sg.joiners
        .insert(id('c'), member(DeviceId(2).with_epoch(5).0));
    let error = sg.validate().unwrap_err().to_string();
    assert!(error.contains("another member's lineage"), "{error}");
}

/// `record(...)` destroyed.
fn destroyed(device: u64, wall: i64) -> SyncgroupRecord {
    let mut sg = syncgroup();
    sg.status = Status::Destroyed;
    record(device, wall, sg)
}

/// The version a node ends with after meeting `versions` in this order, each replacing the
/// held one when it supersedes it (as `store::syncgroups` applies them).
fn merged(versions: &[SyncgroupRecord]) -> SyncgroupRecord {
    let mut held = versions[0].clone();
    for version in &versions[1..] {
        if version.supersedes(&held) {
            held = version.clone();
        }
    }
    held
}

#[test]
fn a_destroy_wins_over_concurrent_versions_whatever_order_they_meet_in() {
    // A join (a new member), a grant and a spec change on other admins, all stamped after
    // the destroy (a later HLC would win last-writer-wins), and a second, earlier destroy.
    let mut joined = syncgroup();
    joined.joiners.insert(id('c'), member(3));
    let mut granted = syncgroup();
    granted.spec.perms.grant(access::Level::Admin, &id('b'));
    let mut described = syncgroup();
    described.spec.description = "changed".into();
    let destroy = destroyed(1, 20);
    let versions = [
        record(1, 10, syncgroup()),
        destroy.clone(),
        record(2, 30, joined),
        record(2, 40, granted),
        record(1, 50, described),
        destroyed(2, 15),
    ];
    // Every order of the six: each node meets them in its own.
    let mut order: Vec<usize> = (0..versions.len()).collect();
    let mut seen = 0;
    permutations(&mut order, 0, &mut |order| {
        let met: Vec<_> = order.iter().map(|&i| versions[i].clone()).collect();
        assert_eq!(merged(&met), destroy, "order {order:?} ended elsewhere");
        seen += 1;
    });
    assert_eq!(seen, 720);
}

#[test]
fn a_version_that_is_not_destroyed_never_replaces_a_destroyed_one() {
    let destroy = destroyed(1, 20);
    let later = record(2, 99, syncgroup());
    assert!(
        later.stamp.wins_over(&destroy.stamp),
        "later by last-writer-wins"
    );
    assert!(!later.supersedes(&destroy));
    assert!(destroy.supersedes(&later));
    // Two destroys settle by last-writer-wins, the same one on every node.
    assert!(destroyed(2, 30).supersedes(&destroy) && !destroy.supersedes(&destroyed(2, 30)));
}

#[test]
fn a_destroy_names_its_writer_and_time() {
    assert_eq!(destroyed(1, 20).destroyed(), Some((Some(&id('a')), 20)));
    assert_eq!(destroyed(9, 20).destroyed(), Some((None, 20)));
    assert_eq!(record(1, 20, syncgroup()).destroyed(), None);
}

#[test]
fn a_destroyed_copy_grants_nothing_to_anyone() {
    let mut sg = destroyed(1, 20).sg;
    sg.former_writers.raise(DeviceId(2), Generation::new(9));
    sg.former_lineages.insert(DeviceId(2).lineage());
    let held = LocalState::default().held_copy(sg.clone());
    for who in [id('a'), id('b')] {
        for tag in [Tag::Read, Tag::Write, Tag::Admin] {
            assert!(!held.allows(tag, &who), "{who} keeps {tag:?}");
        }
    }
    assert!(!held.device_may_write(DeviceId(2), Generation::FIRST, &id('a')));
    assert!(held.joiners.is_empty());
    // What `sg show` prints keeps the members it had.
    assert_eq!(
        LocalState::default().shown_copy(sg.clone()).joiners,
        sg.joiners
    );
}

#[test]
fn a_node_forgets_a_syncgroup_only_once_destroyed_and_left() {
    let left = LocalState {
        left: true,
        ..LocalState::default()
    };
    assert!(left.forgot(&destroyed(1, 20).sg));
    assert!(!left.forgot(&syncgroup()));
    assert!(!LocalState::default().forgot(&destroyed(1, 20).sg));
}

/// Calls `each` with every permutation of `items[at..]` (swapping each item into place in turn).
fn permutations(items: &mut Vec<usize>, at: usize, each: &mut impl FnMut(&[usize])) {
    if at == items.len() {
        each(items);
        return;
    }
    for i in at..items.len() {
        items.swap(at, i);
        permutations(items, at + 1, each);
        items.swap(at, i);
    }
}

#[test]
fn a_tombstone_keeps_the_destroyer_and_hides_the_other_members_and_admins() {
    let mut sg = syncgroup();
    sg.spec.perms.grant(access::Level::ReadWrite, &id('b'));
    sg.spec.perms.grant(access::Level::Admin, &id('c'));
    sg.status = Status::Destroyed;
    let destroyed = record(1, 50, sg);
    let tombstone = destroyed.tombstone();
    tombstone.sg.validate().unwrap();
    assert_eq!(tombstone.stamp, destroyed.stamp);
    assert_eq!(tombstone.sg.joiners.keys().collect::<Vec<_>>(), [&id('a')]);
    assert!(tombstone.sg.allows(Tag::Admin, &id('a')));
    assert!(!tombstone.sg.allows(Tag::Read, &id('b')));
    for (tag, list) in &tombstone.sg.spec.perms.0 {
        assert_eq!(
            list.allowed.iter().collect::<Vec<_>>(),
            [id('a').as_str()],
            "{tag:?}: only the destroyer; another admin is not revealed"
        );
    }
    assert_eq!(tombstone.destroyed(), Some((Some(&id('a')), 50)));
    // Taken by a member that held the live copy, from an admin.
    tombstone
        .acceptable_from(&record(1, 10, syncgroup()), &id('a'))
        .unwrap();
    let live = record(1, 10, syncgroup());
    assert_eq!(live.tombstone(), live, "a live version is served whole");
}
