//! Sync through the `syncbase` binary as a user runs it: `serve --peer-listen` processes, `id`,
//! `peer add | list | remove`, `status` and `watch` against them, rows written on one node
//! read on the other, a removed peer no longer synced, an unreachable peer reported as
//! `ConnFail`, an untrusted node refused, and bad `peer add` input that must end with one
//! clear error line and a non-zero exit.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::process::{BIN, Served, eventually_blocking as eventually, failure};

/// The peer-syncing side of a served node (`serve --memory --peer-listen`).
impl Served {
    fn start_peer() -> Served {
        Served::start_in_temp_dir(&["--memory", "--peer-listen", "127.0.0.1:0"])
    }

    /// `syncbase peer add` of `other`, sharing table "t" of database "db".
    fn add_peer(&self, other: &Served) {
        let output = self.ok(&[
            "peer",
            "add",
            &other.peer_addr(),
            &other.fingerprint(),
            "db",
            "t",
        ]);
        assert!(output.starts_with("added peer "), "{output}");
    }
}

const SYNC_LIMIT: Duration = Duration::from_secs(10);

/// Two nodes that sync table "t" of "db" both ways.
fn linked_pair() -> (Served, Served) {
    let (a, b) = (Served::start_peer(), Served::start_peer());
    a.add_peer(&b);
    b.add_peer(&a);
    (a, b)
}

#[test]
fn id_prints_the_fingerprint_and_peer_address() {
    let node = Served::start_peer();
    let id = node.ok(&["id"]);
    // fingerprint, name (the host name by default), role, peer address, device id.
    let lines: Vec<&str> = id.lines().collect();
    assert_eq!(lines.len(), 5, "{id}");
    let fingerprint = lines[0].strip_prefix("fingerprint ").expect(&id);
    assert_eq!(fingerprint.len(), 64, "{id}");
    assert!(
        fingerprint
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{id}"
    );
    assert!(lines[1].starts_with("name "), "{id}");
    assert_eq!(lines[2], "role normal", "{id}");
    assert_eq!(
        lines[3],
        format!("peer-address {}", node.peer_addr()),
        "{id}"
    );
    assert!(node.peer_addr().starts_with("127.0.0.1:"));
    assert!(lines[4].starts_with("device-id "), "{id}");
    assert_eq!(node.fingerprint(), fingerprint, "stable across calls");
    assert_eq!(
        node.ok(&["peer", "list"]),
        "no peers (add one with `syncbase peer add`)\n"
    );
}

#[test]
fn two_served_nodes_sync_puts_and_deletes_and_show_status_and_watch() {
    let (a, b) = linked_pair();
    let (a_fp, b_fp) = (a.fingerprint(), b.fingerprint());
    a.ok(&["put", "db", "t", "k", "from a"]);
    eventually("a's put on b", SYNC_LIMIT, || {
        b.get("k").as_deref() == Some("from a")
    });
    b.ok(&["put", "db", "t", "j", "from b"]);
    eventually("b's put on a", SYNC_LIMIT, || {
        a.get("j").as_deref() == Some("from b")
    });
    assert!(a.ok(&["delete", "db", "t", "k"]).starts_with("deleted k "));
    eventually("a's delete on b", SYNC_LIMIT, || b.get("k").is_none());
    assert!(failure(&b.client(&["get", "db", "t", "k"])).contains("NoExist"));

    let list = a.ok(&["peer", "list"]);
    let addr = b.peer_addr();
    let width = addr.len().max("ADDRESS".len());
    assert_eq!(
        list,
        format!(
            "PEER{}  NAME  {:width$}  FROM      SHARES\n{b_fp}  -     {addr:width$}  peer add  db: t\n",
            " ".repeat(60),
            "ADDRESS"
        ),
        "{list}"
    );
    let listed = a.json(&["peer", "list", "--json"]);
    assert_eq!(
        listed,
        serde_json::json!({
            "fingerprint": b_fp,
            "name": null,
            "address": addr,
            "from_config": false,
            "declared": true,
            "syncgroups": 0,
            "databases": [{"database": "db", "scopes": [{"table": "t", "prefix": ""}]}],
        })
    );
    assert!(b.ok(&["peer", "list"]).contains(&a_fp));
    eventually("connected: yes on both", SYNC_LIMIT, || {
        a.ok(&["status"]).contains("connected: yes") && b.ok(&["status"]).contains("connected: yes")
    });
    let status = a.ok(&["status"]);
    assert!(status.contains(&b_fp), "{status}");
    assert!(status.contains("received: "), "{status}");
    assert!(
        status
            .lines()
            .next()
            .unwrap()
            .ends_with(", last error none"),
        "{status}"
    );
    assert!(!status.contains("  last error: "), "{status}");

    // `watch` on b prints a's later write, marked as synced.
    let mut watcher = Command::new(BIN)
        .args(["watch", "--data-dir"])
        .arg(b.path())
        .args(["db", "t"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch starts");
    let (lines, receive) = mpsc::channel();
    let out = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    // The watch starts from the changes after it is taken, so write until one shows.
    let deadline = Instant::now() + SYNC_LIMIT;
    let mut seen = None;
    for round in 0.. {
        assert!(Instant::now() < deadline, "watch printed nothing");
        a.ok(&["put", "db", "t", &format!("w{round}"), "watched"]);
        if let Ok(line) = receive.recv_timeout(Duration::from_millis(1000)) {
            seen = Some(line);
            break;
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    let line = seen.unwrap();
    assert!(
        line.starts_with("put\tsync\tt\tw") && line.ends_with("\twatched"),
        "{line:?}"
    );
}

#[test]
fn a_removed_peer_is_no_longer_listed_and_b_keeps_serving() {
    let (a, b) = linked_pair();
    let b_fp = b.fingerprint();
    a.ok(&["put", "db", "t", "before", "synced"]);
    eventually("a's put on b", SYNC_LIMIT, || b.get("before").is_some());

    // Given in upper case, named in its one spelling.
    assert_eq!(
        a.ok(&["peer", "remove", &b_fp.to_uppercase()]),
        format!("removed peer {b_fp}\n")
    );
    let again = failure(&a.client(&["peer", "remove", &b_fp]));
    assert!(again.contains("NoExist:"), "an unknown peer: {again}");
    assert!(!a.ok(&["peer", "list"]).contains(&b_fp));
    assert!(!a.ok(&["status"]).contains(&b_fp));

    // Neither direction syncs any more: b's later write stays on b, and a's later write
    // is not pushed to b over b's session that was open when b was removed.
    b.ok(&["put", "db", "t", "local", "on b"]);
    a.ok(&["put", "db", "t", "after", "not for b"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        b.get("after"),
        None,
        "a write made on a after removing b reached b"
    );
    assert_eq!(
        a.get("local"),
        None,
        "b's write after the removal reached a"
    );
    // b still serves its apps.
    assert_eq!(b.get("local").as_deref(), Some("on b"));
    assert_eq!(b.get("before").as_deref(), Some("synced"));
    a.ok(&["put", "db", "t", "a-local", "on a"]);
    assert_eq!(a.get("a-local").as_deref(), Some("on a"));
}

#[test]
fn an_unreachable_peer_shows_conn_fail_in_status() {
    let node = Served::start_peer();
    let nobody = "ab".repeat(32);
    node.ok(&[
        "peer",
        "add",
        &common::free_loopback_addr(),
        &nobody,
        "db",
        "t/p",
    ]);
    eventually("last error: ConnFail", SYNC_LIMIT, || {
        node.ok(&["status"]).contains("last error: ConnFail")
    });
    let status = node.ok(&["status"]);
    assert!(status.contains(&nobody), "{status}");
    assert!(status.contains("connected: no"), "{status}");
    assert!(status.contains("database db: t/p"), "{status}");
    // The node still serves its apps.
    node.ok(&["put", "db", "t", "k", "v"]);
    assert_eq!(node.get("k").as_deref(), Some("v"));
}

#[test]
fn bad_peer_add_input_fails_with_one_clear_line() {
    let node = Served::start_peer();
    let good = "cd".repeat(32);
    let address = common::free_loopback_addr();
    for fingerprint in ["not-hex", &"ab".repeat(31), &"zz".repeat(32)] {
        let args = ["peer", "add", &address, fingerprint, "db", "t"];
        let error = failure(&node.client(&args));
        assert!(error.contains("fingerprint"), "{fingerprint:?}: {error}");
    }
    for scope in ["/x", "t/\u{7}"] {
        let error = failure(&node.client(&["peer", "add", &address, &good, "db", scope]));
        assert!(error.contains("scope"), "{scope:?}: {error}");
    }
    // A command line clap refuses is reported as clap renders it (usage and tips included).
    let missing = node.client(&["peer", "add", &address, &good, "db"]);
    assert_eq!(missing.status.code(), Some(2));
    let error = String::from_utf8_lossy(&missing.stderr);
    assert!(error.contains("TABLE[/PREFIX]"), "no scope at all: {error}");
    let error = failure(&node.client(&["peer", "add", &address, &good, "", "t"]));
    assert!(error.contains("database"), "{error}");
    assert_eq!(
        node.ok(&["peer", "list"]),
        "no peers (add one with `syncbase peer add`)\n",
        "nothing was added"
    );
}

#[test]
fn a_node_the_other_does_not_know_is_refused_and_the_other_is_unaffected() {
    let (a, b) = linked_pair();
    let c = Served::start_peer();
    let c_fp = c.fingerprint();
    c.add_peer(&a);
    eventually("c's status shows a refusal", SYNC_LIMIT, || {
        let status = c.ok(&["status"]);
        status.contains("last error: ")
            && (status.contains("NoAccess") || status.contains("refused"))
    });
    let status = c.ok(&["status"]);
    assert!(status.contains("connected: no"), "{status}");

    // a is unaffected: it does not list c, serves its apps, and still syncs with b.
    assert!(!a.ok(&["peer", "list"]).contains(&c_fp));
    a.ok(&["put", "db", "t", "still", "syncing"]);
    assert_eq!(a.get("still").as_deref(), Some("syncing"));
    eventually("a's put on b", SYNC_LIMIT, || b.get("still").is_some());
    eventually("a connected to b", SYNC_LIMIT, || {
        a.ok(&["status"]).contains("connected: yes")
    });
    assert_eq!(c.get("still"), None, "c got nothing from a");
}
