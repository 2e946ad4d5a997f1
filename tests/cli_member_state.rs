//! What a member's CLI says of its standing and of its peers, through `syncbase serve`
//! processes over TLS: names chosen with `serve --name` shown beside fingerprints (`sg show`
//! members, `peer list`, `status`), a `peer add --name` label, and after `sg eject` the
//! ejected node's `sg show`, `sg list` and `status` saying `Ejected` and its put under the
//! prefix failing `NoAccess:`; after `sg revoke`, `Read revoked`, and `sg leave` saying a
//! new invite is needed to join again.

mod common;

use std::time::Duration;

use common::process::{Served, eventually_blocking, failure};

const LIMIT: Duration = Duration::from_secs(20);

/// A node with a peer listener that shows itself as `name`.
fn named(name: &str) -> Served {
    Served::start_in_temp_dir(&["--memory", "--peer-listen", "127.0.0.1:0", "--name", name])
}

fn eventually(what: &str, check: impl FnMut() -> bool) {
    eventually_blocking(what, LIMIT, check);
}

/// Whether some line of `text` holds every one of `parts` (columns are aligned with
/// padding, so a test names the cells, not the spaces between them).
fn has_line(text: &str, parts: &[&str]) -> bool {
    text.lines()
        .any(|line| parts.iter().all(|part| line.contains(part)))
}

/// `member` joins `name` with a fresh read-write invite from `admin`.
fn join(admin: &Served, member: &Served, name: &str) {
    let invite = admin.ok(&["sg", "invite", name, "--level", "read-write"]);
    member.ok(&["sg", "join", invite.trim()]);
}

#[test]
fn names_show_beside_fingerprints_and_an_ejected_member_says_so() {
    let a = named("alice");
    let b = named("bob");
    let (a_fp, b_fp) = (a.fingerprint(), b.fingerprint());
    let name = format!("{}/photos", a.peer_addr());
    a.ok(&["sg", "create", "db", &name, "--prefix", "t"]);
    join(&a, &b, &name);

    let shown = b.ok(&["sg", "show", &name]);
    assert!(has_line(&shown, &[&a_fp, "(alice)", "device "]), "{shown}");
    assert!(has_line(&shown, &[&b_fp, "(bob)", "device "]), "{shown}");
    let peers = b.ok(&["peer", "list"]);
    // Where each peer comes from: a member of one syncgroup held here, not `peer add`.
    assert!(
        has_line(&peers, &[&a_fp, " alice ", " 1 syncgroup "]),
        "{peers}"
    );
    let listed = b.json(&["peer", "list", "--json"]);
    assert_eq!(
        (listed["declared"].as_bool(), listed["syncgroups"].as_u64()),
        (Some(false), Some(1)),
        "{listed}"
    );
    let status = b.ok(&["status"]);
    assert!(status.contains(&format!("{a_fp} (alice) ")), "{status}");
    eventually("A to list B by its name", || {
        has_line(&a.ok(&["peer", "list"]), &[&b_fp, " bob "])
    });
    // A local label wins over the name the peer chose.
    let address = b.peer_addr();
    a.ok(&[
        "peer", "add", &address, &b_fp, "db", "u", "--name", "laptop",
    ]);
    let peers = a.ok(&["peer", "list"]);
    assert!(has_line(&peers, &[&b_fp, " laptop "]), "{peers}");

    eventually("B's status to show A's clock offset", || {
        b.ok(&["status"]).contains("  clock offset: ")
    });
    let measured = &b.json(&["status", "--json"])["peers"][0]["clock_offset_ms"];
    assert!(
        measured.as_f64().is_some_and(|ms| ms.abs() < 1_000.0),
        "{measured}"
    );
    b.ok(&["put", "db", "t", "before", "1"]);
    a.ok(&["sg", "eject", &name, &b_fp]);
    eventually("B to learn it was ejected", || {
        has_line(&b.ok(&["sg", "show", &name]), &["  status ", " Ejected"])
    });
    let shown = b.ok(&["sg", "show", &name]);
    assert!(
        shown.contains(&format!("Ejected (an admin, alice ({a_fp}), said so)")),
        "the admin by name and fingerprint: {shown}"
    );
    assert_eq!(
        b.json(&["sg", "show", &name, "--json"])["status"],
        "ejected"
    );
    assert!(
        !shown.contains(&b_fp),
        "no longer listed as a member or reader: {shown}"
    );
    let listed = b.ok(&["sg", "list"]);
    assert!(has_line(&listed, &[" Ejected ", " 1 member"]), "{listed}");
    let status = b.ok(&["status"]);
    assert!(
        status.contains(&format!("syncgroup {name}: Ejected")),
        "{status}"
    );
    let status = b.json(&["status", "--json"]);
    assert_eq!(
        status["attention"][0]["syncgroup"],
        name.as_str(),
        "{status}"
    );
    assert!(
        status["attention"][0]["lines"][0]
            .as_str()
            .is_some_and(|line| line.starts_with("Ejected")),
        "{status}"
    );
    let refused = failure(&b.client(&["put", "db", "t", "after", "2"]));
    assert!(
        refused.contains("NoAccess:") && refused.contains("ejected"),
        "{refused}"
    );
    b.ok(&["put", "db", "v", "unshared", "3"]);
}

#[test]
fn a_member_whose_read_is_revoked_says_so() {
    let a = named("alice");
    let b = named("bob");
    let name = format!("{}/photos", a.peer_addr());
    a.ok(&["sg", "create", "db", &name, "--prefix", "t"]);
    join(&a, &b, &name);
    eventually("B to catch up", || {
        !b.ok(&["sg", "show", &name]).contains("pending")
    });
    a.ok(&["sg", "revoke", &name, &b.fingerprint()]);
    eventually("B to learn its Read was revoked", || {
        has_line(&b.ok(&["sg", "list"]), &[" Read revoked "])
    });
    let refused = failure(&b.client(&["put", "db", "t", "after", "2"]));
    assert!(
        refused.contains("NoAccess:") && refused.contains("Read was revoked"),
        "{refused}"
    );
    assert_eq!(
        b.ok(&["sg", "leave", &name]),
        format!(
            "left syncgroup {name} (its rows stay here; this node was read revoked, so joining \
             again needs a new invite from an admin: `syncbase sg join TOKEN`)\n"
        ),
        "a lost syncgroup cannot be resumed by joining again without an invite"
    );
}

#[test]
fn an_ejected_member_still_peered_on_the_prefix_is_warned_of_on_both_sides() {
    let a = named("alice");
    let b = named("bob");
    let (a_fp, b_fp) = (a.fingerprint(), b.fingerprint());
    let name = format!("{}/photos", a.peer_addr());
    a.ok(&["sg", "create", "db", &name, "--prefix", "t"]);
    join(&a, &b, &name);
    a.ok(&[
        "peer",
        "add",
        &b.peer_addr(),
        &b_fp,
        "db",
        "--prefix",
        "t/x",
    ]);
    b.ok(&[
        "peer",
        "add",
        &a.peer_addr(),
        &a_fp,
        "db",
        "--prefix",
        "t/x",
    ]);
    let output = a.client(&["sg", "eject", &name, &b_fp]);
    assert!(output.status.success());
    let warning = String::from_utf8_lossy(&output.stderr);
    assert!(
        warning.contains(&format!("warning: {b_fp} (t/x) is also a declared peer")),
        "the admin is told the rows keep syncing through the peering: {warning}"
    );
    eventually("B to learn it was ejected", || {
        has_line(&b.ok(&["sg", "list"]), &[" Ejected "])
    });
    // The syncgroup's peer entry goes just after the removal commits (`refresh_syncgroup_
    // peers`); until then the peer still also shares the syncgroup's prefix.
    eventually("B's status to name the declared peer and its scope", || {
        let status = b.ok(&["status"]);
        status.contains(&format!("still sync with declared peer {a_fp} (t/x)"))
    });
}
