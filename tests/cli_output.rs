//! The CLI's one output convention, through the `syncbase` binary: reading verbs print their
//! data, or with `--json` one JSON object per line with the documented fields; changing verbs
//! print one line that starts with what they did; keys and values print unambiguously (text
//! that looks like hex never looks like binary); `watch` shows a change's origin as a column
//! of its own; `status` opens with a one-line summary; counts agree with their nouns.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::process::{BIN, Served, stdout};
use serde_json::json;

/// `put` of raw bytes through stdin.
fn put_bytes(node: &Served, key: &str, value: &[u8]) {
    let mut put = node
        .command(&["put", "db", "t", key, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    put.stdin.take().unwrap().write_all(value).unwrap();
    assert!(put.wait().unwrap().success());
}

/// The exact bytes `get` writes into a pipe.
fn get_bytes(node: &Served, key: &str) -> Vec<u8> {
    let output = node.client(&["get", "db", "t", key]);
    assert!(output.status.success());
    output.stdout
}

#[test]
fn text_that_looks_like_hex_and_binary_never_print_alike() {
    let node = Served::start_in_temp_dir(&[]);
    node.ok(&["put", "db", "t", "text", "0x0001ff"]);
    put_bytes(&node, "bin", &[0, 1, 0xff]);
    node.ok(&["put", "db", "t", "quote", "\"0x0001ff\""]);
    node.ok(&["put", "db", "t", "tab", "a\tb"]);

    assert_eq!(
        node.ok(&["scan", "db", "t"]),
        "bin\t\"\\0\\u{1}\\xff\"\n\
         quote\t\"\\\"0x0001ff\\\"\"\n\
         tab\t\"a\\tb\"\n\
         text\t0x0001ff\n"
    );
    assert_eq!(
        node.json_lines(&["scan", "db", "t", "--json"]),
        [
            json!({"key": "bin", "value_hex": "0001ff"}),
            json!({"key": "quote", "value": "\"0x0001ff\""}),
            json!({"key": "tab", "value": "a\tb"}),
            json!({"key": "text", "value": "0x0001ff"}),
        ]
    );
    // Into a pipe, `get` writes the value's exact bytes.
    assert_eq!(get_bytes(&node, "text"), b"0x0001ff");
    assert_eq!(get_bytes(&node, "bin"), [0, 1, 0xff]);
}

/// On a terminal (a pseudo-terminal from util-linux's `script`, which Debian always has),
/// `get` shows the value as `scan` does, not its raw bytes.
#[test]
fn get_on_a_terminal_shows_the_value_as_scan_does() {
    let node = Served::start_in_temp_dir(&[]);
    put_bytes(&node, "bin", &[0, 1, 0xff]);
    let line = format!(
        "'{BIN}' get --data-dir '{}' db t bin",
        node.path().display()
    );
    let output = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script runs");
    assert_eq!(
        String::from_utf8_lossy(&stdout_bytes(&output)),
        "\"\\0\\u{1}\\xff\"\r\n"
    );
}

/// The stdout of a command that must have succeeded, as bytes.
fn stdout_bytes(output: &std::process::Output) -> Vec<u8> {
    assert!(output.status.success(), "{output:?}");
    output.stdout.clone()
}

/// A `watch` child and the lines it prints, read on a thread.
struct Watching {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watching {
    fn start(node: &Served, extra: &[&str]) -> Watching {
        let mut args = vec!["watch", "db", "t"];
        args.extend_from_slice(extra);
        let mut child = node
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("watch starts");
        let out = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Watching { child, lines }
    }

    fn next(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("watch printed a line")
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_shows_each_changes_origin_as_a_column_and_a_json_field() {
    let node = Served::start_in_temp_dir(&[]);
    node.ok(&["put", "db", "t", "a", "0x6869"]);
    let plain = Watching::start(&node, &["--initial"]);
    let json = Watching::start(&node, &["--initial", "--json"]);
    assert_eq!(plain.next(), "put\tinitial\tt\ta\t0x6869");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json.next()).unwrap(),
        json!({"op": "put", "origin": "initial", "table": "t", "key": "a", "value": "0x6869"})
    );
    // The watches are live once their initial rows are printed: write until one shows.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut round = 0;
    let line = loop {
        assert!(Instant::now() < deadline, "watch printed nothing live");
        put_bytes(&node, &format!("b{round}"), &[0xff]);
        if let Ok(line) = plain.lines.recv_timeout(Duration::from_millis(500)) {
            break line;
        }
        round += 1;
    };
    assert_eq!(line, "put\tlocal\tt\tb0\t\"\\xff\"");
    let first = serde_json::from_str::<serde_json::Value>(&json.next()).unwrap();
    assert_eq!(
        first,
        json!({"op": "put", "origin": "local", "table": "t", "key": "b0", "value_hex": "ff"})
    );
    for _ in 0..round {
        plain.next();
        json.next();
    }
    node.ok(&["delete", "db", "t", "a"]);
    assert_eq!(plain.next(), "delete\tlocal\tt\ta");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json.next()).unwrap(),
        json!({"op": "delete", "origin": "local", "table": "t", "key": "a"})
    );
}

/// A node with a row, a syncgroup and a peer that never answers.
fn populated() -> (Served, String, String) {
    let node = Served::start_in_temp_dir(&["--peer-listen", "127.0.0.1:0"]);
    node.ok(&["put", "db", "t", "k", "v"]);
    let name = format!("{}/sg", node.peer_addr());
    node.ok(&["sg", "create", "db", &name, "--prefix", "t"]);
    let peer = "ab".repeat(32);
    node.ok(&["peer", "add", "127.0.0.1:9", &peer, "db", "t/p"]);
    (node, name, peer)
}

/// Asserts `object` has every one of `fields`.
fn has_fields(what: &str, object: &serde_json::Value, fields: &[&str]) {
    for field in fields {
        assert!(
            object.get(field).is_some(),
            "{what} lacks {field:?}: {object}"
        );
    }
}

#[test]
fn every_reading_verb_prints_json_lines_with_the_documented_fields() {
    let (node, name, peer) = populated();
    let me = node.fingerprint();

    let id = node.json(&["id", "--json"]);
    assert_eq!(id["fingerprint"], me.as_str());
    assert_eq!(id["peer_address"], node.peer_addr().as_str());
    has_fields("id", &id, &["device_id", "epochs", "name", "role"]);
    assert_eq!(id["role"], "normal");

    let peers = node.json(&["peer", "list", "--json"]);
    assert_eq!(
        peers,
        json!({
            "fingerprint": peer,
            "name": null,
            "address": "127.0.0.1:9",
            "from_config": false,
            "declared": true,
            "syncgroups": 0,
            "databases": [{"database": "db", "scopes": [{"table": "t", "prefix": "p"}]}],
        })
    );

    let status = node.json(&["status", "--json"]);
    assert_eq!(status["fingerprint"], me.as_str());
    assert_eq!(status["syncgroups"], 1);
    assert_eq!(status["peers_connected"], 0);
    assert_eq!(status["peers"][0]["fingerprint"], peer.as_str());
    assert_eq!(status["peers"][0]["connected"], false);
    has_fields(
        "status",
        &status,
        &[
            "pending",
            "last_error",
            "proposals_waiting",
            "epochs",
            "store",
        ],
    );
    has_fields(
        "a status peer",
        &status["peers"][0],
        &[
            "last_caught_up_nanos",
            "records_received",
            "bytes_received",
            "records_sent",
            "bytes_sent",
            "pending_in",
            "pending_out",
            "records_refused",
            "last_error",
        ],
    );
    has_fields(
        "the store",
        &status["store"],
        &["file_bytes", "used_bytes", "max_map_bytes"],
    );
    assert_eq!(
        status["databases"][0]["live_rows"], 1,
        "{}",
        status["databases"]
    );

    let shown = node.json(&["sg", "show", &name, "--json"]);
    assert_eq!(shown["name"], name.as_str());
    assert_eq!(shown["database"], "db");
    assert_eq!(shown["status"], "running");
    assert_eq!(shown["creator"], me.as_str());
    assert_eq!(shown["prefixes"], json!([{"table": "t", "prefix": ""}]));
    assert_eq!(shown["members"][0]["fingerprint"], me.as_str());
    assert_eq!(shown["proposal"], false);
    has_fields(
        "sg show",
        &shown,
        &["id", "spec_version", "permissions", "pending", "left"],
    );
    assert_eq!(node.json(&["sg", "list", "--json"]), shown);

    assert_eq!(
        node.json(&["scan", "db", "t", "--json"]),
        json!({"key": "k", "value": "v"})
    );

    assert_eq!(
        node.json(&["ls", "--json"]),
        json!({"database": "db", "tables": 1, "live_rows": 1, "live_bytes": 3})
    );
    assert_eq!(
        node.json(&["ls", "db", "--json"]),
        json!({"database": "db", "table": "t", "live_rows": 1, "live_bytes": 3})
    );
}

#[test]
fn every_changing_verb_prints_one_line_saying_what_it_did() {
    let (node, name, _) = populated();
    let other = "cd".repeat(32);
    let expected: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["put", "db", "t", "k2", "value"],
            "stored k2 in table t of database db (5 bytes)".into(),
        ),
        (
            vec!["delete", "db", "t", "k2"],
            "deleted k2 in table t of database db".into(),
        ),
        (
            vec!["peer", "add", "127.0.0.1:9", &other, "db", "--prefix", "t"],
            format!("added peer {other} at 127.0.0.1:9: database db: t"),
        ),
        (
            vec![
                "peer",
                "add",
                "127.0.0.1:9",
                &other,
                "db",
                "--prefix",
                "u",
                "--name",
                "dee",
            ],
            format!("updated peer {other}: database db now also shares u; named dee"),
        ),
        (
            vec!["peer", "add", "127.0.0.1:9", &other, "db", "--prefix", "t"],
            format!("changed nothing: peer {other} already shares t of database db at 127.0.0.1:9"),
        ),
        (
            vec!["peer", "remove", &other, "db", "--prefix", "u"],
            format!("removed scope u of database db from peer {other}"),
        ),
        (
            vec!["peer", "remove", &other],
            format!("removed peer {other}"),
        ),
        (
            vec!["sg", "grant", &name, &other, "--level", "read"],
            format!("granted read in {name} to {other}"),
        ),
        (
            vec!["sg", "revoke", &name, &other],
            format!("revoked every permission of {other} in {name}"),
        ),
        (
            vec!["sg", "leave", &name],
            format!("left syncgroup {name} (its rows stay here; join again to resume syncing)"),
        ),
        (
            vec!["sg", "leave", &name],
            format!(
                "changed nothing: this node already left syncgroup {name} (`sg join` syncs it \
                 again)"
            ),
        ),
    ];
    for (args, line) in expected {
        assert_eq!(node.ok(&args), format!("{line}\n"), "{}", args.join(" "));
    }
    let second = format!("{}/second", node.peer_addr());
    assert_eq!(
        node.ok(&["sg", "create", "db", &second, "--prefix", "u"]),
        format!("created syncgroup {second} in database db\n")
    );
    assert_eq!(
        node.ok(&["sg", "destroy", &second]),
        format!(
            "destroyed syncgroup {second} (its rows stay on every node; members stop syncing \
             it as they learn it from an admin)\n"
        )
    );
    assert_eq!(
        node.ok(&["put", "db", "t", "one", "1"]),
        "stored one in table t of database db (1 byte)\n"
    );
}

#[test]
fn status_opens_with_a_summary_and_counts_agree_with_their_nouns() {
    let (node, name, peer) = populated();
    let status = node.ok(&["status"]);
    let first = status.lines().next().unwrap();
    let me = node.fingerprint();
    assert!(
        first.starts_with(&format!(
            "node {}...: 0 of 1 peer connected, 1 syncgroup, 0 log entries pending, last error ",
            &me[..8]
        )),
        "{status}"
    );
    assert!(
        status.contains(&format!("\n{peer} 127.0.0.1:9\n")),
        "{status}"
    );
    assert!(status.contains("database db: 1 live row, "), "{status}");
    let list = node.ok(&["sg", "list"]);
    assert_eq!(
        list.lines().nth(1).map(|line| {
            line.split("  ")
                .filter(|cell| !cell.is_empty())
                .collect::<Vec<_>>()
        }),
        Some(vec![name.as_str(), "db", "running", "1 member"]),
        "{list}"
    );
    assert!(list.lines().next().unwrap().starts_with("NAME "), "{list}");
}

#[test]
fn a_memory_node_says_its_store_is_in_memory_not_on_disk() {
    let node = Served::start_in_temp_dir(&["--memory"]);
    let status = node.ok(&["status"]);
    assert!(
        status.contains("\nstore: in memory, ") && !status.contains("on disk,"),
        "{status}"
    );
    assert_eq!(
        node.json(&["status", "--json"])["store"]["backend"],
        "memory"
    );
    let (lmdb, _, _) = populated();
    assert!(lmdb.ok(&["status"]).contains("bytes on disk"));
    assert_eq!(lmdb.json(&["status", "--json"])["store"]["backend"], "lmdb");
}

#[test]
fn the_output_rule_is_in_the_help() {
    let help = stdout(&Command::new(BIN).args(["scan", "--help"]).output().unwrap());
    assert!(help.contains(r#""\0\u{1}\xff""#), "{help}");
    let help = stdout(
        &Command::new(BIN)
            .args(["watch", "--help"])
            .output()
            .unwrap(),
    );
    assert!(help.contains("ORIGIN"), "{help}");
}
