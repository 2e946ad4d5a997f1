//! `sg join` waits for the initial sync, through processes: the join returns only once the
//! joiner holds every row the admin had (a `get` right after it finds the last one, with no
//! polling), ending with one plain `initial sync ... complete` line when stdout is not a
//! terminal; `--no-wait` returns at once without it.

mod common;

use common::process::Served;

fn member() -> Served {
    Served::start_in_temp_dir(&["--memory", "--peer-listen", "127.0.0.1:0"])
}

/// A syncgroup on `admin` sharing table t, holding `rows` rows; returns its name.
fn shared_rows(admin: &Served, suffix: &str, rows: usize) -> String {
    for i in 0..rows {
        admin.ok(&["put", "db", "t", &format!("k{i:03}"), &format!("value {i}")]);
    }
    let name = format!("{}/{suffix}", admin.peer_addr());
    admin.ok(&["sg", "create", "db", &name, "--prefix", "t"]);
    name
}

fn invite(admin: &Served, name: &str) -> String {
    admin.ok(&["sg", "invite", name]).trim().to_owned()
}

#[test]
fn join_returns_once_the_initial_sync_completed() {
    let (a, b) = (member(), member());
    let name = shared_rows(&a, "wait", 60);
    let joined = b.ok(&["sg", "join", &invite(&a, &name)]);
    let last = joined.lines().last().unwrap();
    assert!(
        last.starts_with(&format!(
            "initial sync of {name} complete: received 60 records, "
        )) && last.ends_with(" from 1 member"),
        "{joined}"
    );
    assert!(
        !joined.contains('\r') && !joined.contains('\x1b'),
        "no bar off a terminal"
    );
    assert_eq!(b.get("k059").as_deref(), Some("value 59"));
    let status = b.ok(&["status"]);
    assert!(!status.contains("initial sync:"), "done: {status}");
}

#[test]
fn join_no_wait_returns_without_waiting() {
    let (a, b) = (member(), member());
    let name = shared_rows(&a, "nowait", 1);
    let joined = b.ok(&["sg", "join", "--no-wait", &invite(&a, &name)]);
    assert!(
        joined.starts_with(&format!("joined syncgroup {name}")),
        "{joined}"
    );
    assert!(!joined.contains("initial sync"), "{joined}");
}

#[test]
fn join_of_a_syncgroup_with_no_rows_completes_at_once() {
    let (a, b) = (member(), member());
    let name = shared_rows(&a, "empty", 0);
    let joined = b.ok(&["sg", "join", "--timeout", "20", &invite(&a, &name)]);
    let last = joined.lines().last().unwrap();
    assert!(
        last.starts_with(&format!(
            "initial sync of {name} complete: received 0 records, 0 bytes"
        )),
        "{joined}"
    );
}
