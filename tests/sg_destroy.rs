//! `syncbase sg destroy` through `syncbase serve` processes over TLS: only an admin destroys
//! (`NoAccess:` for a member, `NoExist:` for an unknown name); the admin forgets the syncgroup
//! at once (gone from `sg list`, its name free for `sg create`, its invites void with an error
//! saying it was destroyed); an online member learns it promptly and an offline one when it
//! next reaches the admin, each then saying `Destroyed` (by whom, when) in `sg show`, `sg list`
//! and `status` and refusing app writes under the prefixes `NoAccess:` unless a declared peer
//! shares the row; `sg leave` then forgets it there.

mod common;

use std::time::Duration;

use common::process::{Served, eventually_blocking, failure};

const LIMIT: Duration = Duration::from_secs(30);

fn eventually(what: &str, check: impl FnMut() -> bool) {
    eventually_blocking(what, LIMIT, check);
}

/// Whether some line of `text` holds every one of `parts`.
fn has_line(text: &str, parts: &[&str]) -> bool {
    text.lines()
        .any(|line| parts.iter().all(|part| line.contains(part)))
}

/// The flags of a node with a peer listener named `name`.
fn flags(name: &str) -> [&str; 4] {
    ["--peer-listen", "127.0.0.1:0", "--name", name]
}

/// `member` joins `name` with a fresh read-write invite from `admin`, and catches up.
fn join(admin: &Served, member: &Served, name: &str) {
    let invite = admin.ok(&["sg", "invite", name, "--level", "read-write"]);
    member.ok(&["sg", "join", invite.trim()]);
    eventually("the member to catch up with the admin", || {
        !member.ok(&["sg", "show", name]).contains("pending")
    });
}

/// Waits until `member` says the syncgroup was destroyed.
fn learns_destroyed(member: &Served, name: &str) {
    eventually("the member to learn the syncgroup was destroyed", || {
        has_line(
            &member.ok(&["sg", "show", name]),
            &["  status ", "Destroyed"],
        )
    });
}

#[test]
fn an_admin_destroys_a_syncgroup_and_every_member_learns_it() {
    let a = Served::start_in_temp_dir(&flags("alice"));
    let b = Served::start_in_temp_dir(&flags("bob"));
    let c_dir = tempfile::tempdir().unwrap();
    let c = Served::start(c_dir.path(), &flags("carol"));
    let a_fp = a.fingerprint();
    let name = format!("{}/photos", a.peer_addr());
    a.ok(&["sg", "create", "db", &name, "--prefix", "t"]);
    join(&a, &b, &name);
    join(&a, &c, &name);
    let old_id = a.json(&["sg", "show", &name, "--json"])["id"].clone();
    let unused_invite = a.ok(&["sg", "invite", &name]);

    // Only an admin may destroy; an unknown name is NoExist.
    let refused = failure(&b.client(&["sg", "destroy", &name]));
    assert!(
        refused.contains("NoAccess:") && refused.contains("only an admin"),
        "{refused}"
    );
    let unknown = failure(&a.client(&["sg", "destroy", &format!("{}/nope", a.peer_addr())]));
    assert!(unknown.contains("NoExist:"), "{unknown}");

    // C is offline when A destroys it.
    assert!(c.stop());
    let said = a.ok(&["sg", "destroy", &name]);
    assert!(
        said.starts_with(&format!("destroyed syncgroup {name} ")),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "{said}");

    // On the admin it is gone: not listed, not shown, its name free for a new syncgroup.
    assert!(!a.ok(&["sg", "list"]).contains(&name));
    let gone = failure(&a.client(&["sg", "show", &name]));
    assert!(gone.contains("NoExist:"), "{gone}");
    a.ok(&["sg", "create", "db", &name, "--prefix", "u"]);
    let new_id = a.json(&["sg", "show", &name, "--json"])["id"].clone();
    assert_ne!(new_id, old_id, "a new syncgroup, a new id");

    // An online member learns it promptly and says so everywhere.
    learns_destroyed(&b, &name);
    let shown = b.ok(&["sg", "show", &name]);
    assert!(
        shown.contains(&format!("Destroyed by admin alice ({a_fp})")) && shown.contains(" ago"),
        "{shown}"
    );
    let json = b.json(&["sg", "show", &name, "--json"]);
    assert_eq!(json["status"], "destroyed", "{json}");
    assert_eq!(json["removed_by"], a_fp.as_str(), "{json}");
    assert!(
        json["removed_at_nanos"].as_i64().is_some_and(|at| at > 0),
        "{json}"
    );
    assert!(has_line(&b.ok(&["sg", "list"]), &[&name, " Destroyed "]));
    let listed = b.json(&["sg", "list", "--json"]);
    assert_eq!(listed["status"], "destroyed", "{listed}");
    let status = b.ok(&["status"]);
    assert!(
        status.contains(&format!(
            "syncgroup {name}: Destroyed by admin alice ({a_fp})"
        )),
        "{status}"
    );

    // Its app writes under the prefixes fail as an ejected member's do, unless a declared
    // peer shares the row; other tables are not concerned.
    let refused = failure(&b.client(&["put", "db", "t", "after", "1"]));
    assert!(
        refused.contains("NoAccess:") && refused.contains(&format!("`syncbase sg leave {name}`")),
        "{refused}"
    );
    b.ok(&["put", "db", "v", "unshared", "1"]);
    b.ok(&[
        "peer",
        "add",
        &a.peer_addr(),
        &a_fp,
        "db",
        "--prefix",
        "t/declared",
    ]);
    b.ok(&["put", "db", "t", "declared-row", "1"]);

    // The syncgroup's old invite is void, and says why.
    let d = Served::start_in_temp_dir(&flags("dave"));
    let void = failure(&d.client(&["sg", "join", unused_invite.trim(), "--no-wait"]));
    assert!(
        void.contains("NoExist:") && void.contains("destroyed"),
        "{void}"
    );

    // An offline member learns it when it next reaches the admin.
    let c = Served::start(c_dir.path(), &flags("carol"));
    learns_destroyed(&c, &name);
    assert!(failure(&c.client(&["put", "db", "t", "late", "1"])).contains("destroyed"));

    // Leaving forgets it: no longer listed, and the rows under its prefixes writable again.
    let forgot = b.ok(&["sg", "leave", &name]);
    assert!(
        forgot.starts_with(&format!("forgot destroyed syncgroup {name}")),
        "{forgot}"
    );
    assert!(!b.ok(&["sg", "list"]).contains(&name));
    b.ok(&["put", "db", "t", "after", "2"]);
}

#[test]
fn a_member_admitted_by_an_admin_unaware_of_the_destroy_learns_it_from_either_admin() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a_listen = common::free_loopback_addr();
    let a_flags = ["--peer-listen", a_listen.as_str(), "--name", "alice"];
    let a = Served::start(a_dir.path(), &a_flags);
    let a_fp = a.fingerprint();
    let b_listen = common::free_loopback_addr();
    let b_flags = ["--peer-listen", b_listen.as_str(), "--name", "bob"];
    let b = Served::start(b_dir.path(), &b_flags);
    let name = format!("{}/g8", a.peer_addr());
    a.ok(&["sg", "create", "db", &name, "--prefix", "t8"]);
    let invite = a.ok(&["sg", "invite", &name, "--level", "admin"]);
    b.ok(&["sg", "join", invite.trim()]);
    eventually("b to catch up with a", || {
        !b.ok(&["sg", "show", &name]).contains("pending")
    });

    // B is offline while A destroys it; then A is offline while B admits C.
    assert!(b.stop());
    a.ok(&["sg", "destroy", &name]);
    assert!(a.stop());
    let b = Served::start(b_dir.path(), &b_flags);
    let c = Served::start_in_temp_dir(&flags("carol"));
    let invite = b.ok(&["sg", "invite", &name, "--level", "admin"]);
    c.ok(&["sg", "join", invite.trim()]);
    eventually("c to catch up with b", || {
        !c.ok(&["sg", "show", &name]).contains("pending")
    });

    // A comes back: neither its destroyed version nor B's lists C, yet C learns it.
    let _a = Served::start(a_dir.path(), &a_flags);
    learns_destroyed(&b, &name);
    learns_destroyed(&c, &name);
    let refused = failure(&c.client(&["put", "db", "t8", "late", "1"]));
    assert!(
        refused.contains("NoAccess:") && refused.contains("destroyed"),
        "{refused}"
    );
    let no_invite = failure(&c.client(&["sg", "invite", &name]));
    assert!(no_invite.contains("destroyed"), "{no_invite}");
    eventually("c to stop syncing with a and b", || {
        let peers = c.ok(&["peer", "list"]);
        !peers.contains(&a_fp) && !peers.contains(&b.fingerprint())
    });
    let status = c.ok(&["status"]);
    assert!(
        status.contains("collection waits for no member") && status.contains("Destroyed by admin"),
        "{status}"
    );
}

#[test]
fn a_member_that_learns_of_a_destroy_online_or_after_a_restart_no_longer_lists_the_admin_as_a_peer()
{
    let a = Served::start_in_temp_dir(&flags("alice"));
    let b_dir = tempfile::tempdir().unwrap();
    let b = Served::start(b_dir.path(), &flags("bob"));
    let a_fp = a.fingerprint();
    let name = format!("{}/z", a.peer_addr());
    a.ok(&["sg", "create", "photos", &name, "--prefix", "t4"]);
    join(&a, &b, &name);
    assert!(b.ok(&["peer", "list"]).contains(&a_fp));
    a.ok(&["sg", "destroy", &name]);
    learns_destroyed(&b, &name);
    eventually("b to drop a from its peers", || {
        !b.ok(&["peer", "list"]).contains(&a_fp)
    });
    let status = b.ok(&["status"]);
    assert!(
        !status.contains("holds no Read capability") && status.contains(" 0 syncgroups,"),
        "{status}"
    );
    assert!(b.stop());
    let b = Served::start(b_dir.path(), &flags("bob"));
    assert!(!b.ok(&["peer", "list"]).contains(&a_fp));
}

#[test]
fn the_host_reuses_the_name_of_a_syncgroup_another_admin_destroyed() {
    let a = Served::start_in_temp_dir(&flags("alice"));
    let b = Served::start_in_temp_dir(&flags("bob"));
    let name = format!("{}/g7", a.peer_addr());
    a.ok(&["sg", "create", "db", &name, "--prefix", "t7"]);
    let old_id = a.json(&["sg", "show", &name, "--json"])["id"].clone();
    let invite = a.ok(&["sg", "invite", &name, "--level", "admin"]);
    b.ok(&["sg", "join", invite.trim()]);
    b.ok(&["sg", "destroy", &name]);
    learns_destroyed(&a, &name);

    a.ok(&["sg", "create", "db", &name, "--prefix", "t7"]);
    let shown = a.json(&["sg", "show", &name, "--json"]);
    assert_ne!(shown["id"], old_id, "{shown}");
    assert_eq!(shown["status"], "running", "{shown}");
    a.ok(&["put", "db", "t7", "new", "1"]);
}
