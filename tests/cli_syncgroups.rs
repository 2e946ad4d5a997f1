//! Syncgroups through the `syncbase` binary as a user runs them: three `serve` processes over
//! TLS, a syncgroup created on A, invites minted with `sg invite`, B and C joining with
//! `sg join`, and a row written on C reaching A through B although A and C never connect
//! (A's member list has C, but C is a `--role leaf` that advertises no address and syncs only
//! with the server B). Then bad input: each refused with one error line, a stable id, a
//! non-zero exit, and nothing changed.

mod common;

use std::time::Duration;

use common::process::{Served, eventually_blocking, failure};

const LIMIT: Duration = Duration::from_secs(20);

impl Served {
    fn start_member(role: &str) -> Served {
        Served::start_in_temp_dir(&["--memory", "--peer-listen", "127.0.0.1:0", "--role", role])
    }
}

fn eventually(what: &str, check: impl FnMut() -> bool) {
    eventually_blocking(what, LIMIT, check);
}

#[test]
fn three_nodes_share_a_syncgroup_and_a_leafs_write_reaches_the_creator_through_the_server() {
    let a = Served::start_member("normal");
    let b = Served::start_member("server");
    let c = Served::start_member("leaf");
    let name = format!("{}/photos", a.peer_addr());

    let created = a.ok(&[
        "sg",
        "create",
        "db",
        &name,
        "--prefix",
        "t",
        "--description",
        "shared photos",
    ]);
    assert_eq!(
        created,
        format!("created syncgroup {name} in database db\n")
    );
    let shown = a.json(&["sg", "show", &name, "--json"]);
    assert_eq!(shown["status"], "running", "{shown}");
    assert_eq!(shown["description"], "shared photos", "{shown}");

    // B joins with an admin invite from A.
    let invite_b = a.ok(&["sg", "invite", &name, "--level", "admin"]);
    let invite_b = invite_b.trim();
    assert!(invite_b.starts_with("syncbase://"), "{invite_b}");
    let joined = b.ok(&["sg", "join", invite_b]);
    assert!(
        joined.starts_with(&format!("joined syncgroup {name} in database db")),
        "{joined}"
    );

    // Once B has caught up with A it is a full admin: it mints C's invite, and C joins at B.
    let mut invite_c = String::new();
    eventually("B to catch up and mint an invite", || {
        let output = b.client(&["sg", "invite", &name, "--level", "read-write"]);
        if output.status.success() {
            invite_c = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        } else {
            let error = String::from_utf8_lossy(&output.stderr);
            assert!(error.contains("BadState:"), "{error}");
        }
        output.status.success()
    });
    c.ok(&["sg", "join", &invite_c]);
    // A must know C as a writer before C's row reaches it: a row that arrives first is refused
    // and, until issue 10's refetch is built, never fetched again.
    eventually("A to list all three members", || {
        a.ok(&["sg", "show", &name]).matches(" device ").count() == 3
    });

    c.ok(&["put", "db", "t", "photo-1", "from C"]);
    eventually("C's row on A", || {
        a.get("photo-1").as_deref() == Some("from C")
    });
    a.ok(&["put", "db", "t", "photo-2", "from A"]);
    eventually("A's row on C", || {
        c.get("photo-2").as_deref() == Some("from A")
    });

    // A knows C as a member, but A and C never linked: C's rows came through B.
    let status = a.ok(&["status"]);
    let c_fp = c.fingerprint();
    let c_block: String = status
        .split('\n')
        .skip_while(|line| !line.starts_with(&c_fp))
        .take_while(|line| line.starts_with(&c_fp) || line.starts_with("  "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        c_block.contains("connected: no"),
        "A's view of C: {c_block}\n{status}"
    );
    assert!(
        c_block.contains("received: 0 records"),
        "A's view of C: {c_block}"
    );
    let listed = c.ok(&["sg", "list"]);
    assert!(
        listed.contains(&name) && listed.contains("3 members"),
        "{listed}"
    );
    let listed = c.json_lines(&["sg", "list", "--json"]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], name.as_str());
    assert_eq!(listed[0]["members"].as_array().map(Vec::len), Some(3));

    // B ejects C (B is an admin); C leaves; both show in what the nodes list.
    let ejected = b.ok(&["sg", "eject", &name, &c_fp]);
    assert!(ejected.starts_with("ejected "), "{ejected}");
    eventually("A to see C ejected", || {
        a.ok(&["sg", "show", &name]).matches(" device ").count() == 2
    });
    let left = c.ok(&["sg", "leave", &name]);
    assert!(
        left.starts_with(&format!("left syncgroup {name} ")),
        "{left}"
    );
    assert!(c.ok(&["sg", "list"]).contains("  left"));
    assert_eq!(c.json(&["sg", "list", "--json"])["left"], true);
}

#[test]
fn bad_syncgroup_input_fails_with_one_clear_line_and_changes_nothing() {
    let a = Served::start_member("normal");
    let b = Served::start_member("normal");
    let name = format!("{}/x", a.peer_addr());
    a.ok(&["sg", "create", "db", &name, "--prefix", "t"]);
    let before = a.ok(&["sg", "list"]);

    let here = |suffix: &str| format!("{}/{suffix}", a.peer_addr());
    let (dup, r, unknown) = (here("dup"), here("r"), here("unknown"));
    let (a_fp, ff) = (a.fingerprint(), "f".repeat(64));
    #[rustfmt::skip]
    let cases: Vec<(&Served, Vec<&str>, &str)> = vec![
        (&a, vec!["create", "db", &dup, "--prefix", "t", "--prefix", "t"], "InvalidArgument:"),
        (&a, vec!["create", "db", "no-port/x", "--prefix", "t"], "InvalidArgument:"),
        (&a, vec!["create", "db", &name, "--prefix", "t"], "Exist:"),
        (&a, vec!["create", "db", &r, "--prefix", "t", "--reader", "alice"], "InvalidArgument:"),
        (&a, vec!["show", &unknown], "NoExist:"),
        (&a, vec!["invite", &unknown], "NoExist:"),
        (&a, vec!["eject", &name, &ff], "NoExist:"),
        (&b, vec!["join", "syncbase://not-a-token"], "InvalidArgument:"),
        (&b, vec!["join", &name], "InvalidArgument:"),
        (&b, vec!["join", &name, "--admin", &a_fp], "NoAccess:"),
    ];
    for (node, args, id) in cases {
        let full: Vec<&str> = std::iter::once("sg").chain(args.iter().copied()).collect();
        let error = failure(&node.client(&full));
        assert!(error.contains(id), "sg {args:?}: {error}");
    }

    // An invite used up by B cannot admit a third node; an expired one admits nobody.
    let token = a.ok(&["sg", "invite", &name]);
    b.ok(&["sg", "join", token.trim()]);
    let c = Served::start_member("normal");
    let error = failure(&c.client(&["sg", "join", token.trim()]));
    assert!(error.contains("NoAccess:"), "{error}");
    let expiring = a.ok(&["sg", "invite", &name, "--expires", "1"]);
    std::thread::sleep(Duration::from_millis(1100));
    let error = failure(&c.client(&["sg", "join", expiring.trim()]));
    assert!(
        error.contains("NoAccess:") && error.contains("expired"),
        "{error}"
    );
    // An invite for no joins, or one that expires at once, is refused at the command line
    // (they admitted one join, and never expired).
    for zero in [["--uses", "0"], ["--expires", "0"]] {
        let args = ["sg", "invite", name.as_str(), zero[0], zero[1]];
        let refused = a.client(&args);
        assert_eq!(refused.status.code(), Some(2), "{zero:?}");
        let error = String::from_utf8_lossy(&refused.stderr);
        assert!(error.contains(zero[0]), "{zero:?}: {error}");
    }
    // A tampered secret is refused the same way.
    let mut tampered = a.ok(&["sg", "invite", &name]).trim().to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let error = failure(&c.client(&["sg", "join", &tampered]));
    assert!(error.contains("NoAccess:"), "{error}");

    assert!(c.ok(&["sg", "list"]).starts_with("no syncgroups"));
    let after = a.ok(&["sg", "list"]);
    // Cells compared, not padding: a wider cell moves the columns after it.
    let cells = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(
        cells(&before.replace("1 member", "2 members")),
        cells(&after),
        "only B joined"
    );
}

#[test]
fn permissions_granted_and_revoked_through_the_cli_decide_who_may_join() {
    let a = Served::start_member("normal");
    let b = Served::start_member("normal");
    let name = format!("{}/granted", a.peer_addr());
    a.ok(&["sg", "create", "db", &name, "--prefix", "t"]);
    let (a_fp, b_fp) = (a.fingerprint(), b.fingerprint());
    let join_by_name = || b.client(&["sg", "join", &name, "--admin", &a_fp]);

    assert!(failure(&join_by_name()).contains("NoAccess:"));
    let granted = a.ok(&["sg", "grant", &name, &b_fp, "--level", "read-write"]);
    assert_eq!(granted, format!("granted read-write in {name} to {b_fp}\n"));
    let writers = &a.json(&["sg", "show", &name, "--json"])["permissions"]["Write"]["allowed"];
    let mut expected = vec![a_fp.clone(), b_fp.clone()];
    expected.sort();
    assert_eq!(writers, &serde_json::json!(expected));
    let joined = join_by_name();
    assert!(
        joined.status.success(),
        "{}",
        String::from_utf8_lossy(&joined.stderr)
    );

    assert_eq!(
        a.ok(&["sg", "revoke", &name, &b_fp]),
        format!("revoked every permission of {b_fp} in {name}\n")
    );
    assert!(failure(&join_by_name()).contains("NoAccess:"));
    assert!(failure(&a.client(&["sg", "revoke", &name, &b_fp])).contains("NoExist:"));
    assert!(failure(&a.client(&["sg", "grant", &name, "nobody"])).contains("InvalidArgument:"));
}
