//! `syncbase gc DB` and the store's part of `syncbase status`, through processes: a node
//! with history (rows written three times, half of them deleted) collects it on demand and
//! says what it freed, in lines and as one JSON object; an unknown database is `NoExist:`;
//! `status` shows the store's size figures, each database's live data, and a member that
//! never reported holding collection back (and then `gc` frees nothing it shares).

mod common;

use common::process::{Served, failure};

const ROWS: usize = 10;

/// Writes rows k0..k9 three times (values `v<round><i>`), then deletes k5..k9.
fn write_history(node: &Served) {
    for round in 0..3 {
        for i in 0..ROWS {
            node.ok(&["put", "db", "t", &format!("k{i}"), &format!("v{round}{i}")]);
        }
    }
    for i in ROWS / 2..ROWS {
        node.ok(&["delete", "db", "t", &format!("k{i}")]);
    }
}

fn figure(lines: &str, name: &str) -> String {
    lines
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} line in {lines}"))
        .to_owned()
}

#[test]
fn gc_collects_a_nodes_history_and_prints_what_it_freed() {
    let node = Served::start_in_temp_dir(&[]);
    write_history(&node);

    let json: serde_json::Value = serde_json::from_str(&node.ok(&["gc", "db", "--json"]))
        .expect("gc --json prints one JSON object");
    assert_eq!(json["database"], "db");
    assert_eq!(
        json["tombstones"], 0,
        "a deleted row's tombstone is its head: it stays, as one key"
    );
    assert_eq!(
        json["versions"], 25,
        "every version but the heads: 3 puts of k5..k9 (deleted), 2 puts of k0..k4"
    );
    assert_eq!(node.get("k7"), None, "k7 stays deleted");
    assert!(json["records"].as_u64().unwrap() >= 30, "{json}");
    assert!(json["bytes"].as_u64().unwrap() > 0, "{json}");
    assert!(json["steps"].as_u64().unwrap() >= 1, "{json}");
    for side in ["before", "after"] {
        for field in ["file_bytes", "used_bytes", "map_bytes", "reserve_bytes"] {
            assert!(
                json[side][field].as_u64().unwrap() > 0,
                "{side}.{field}: {json}"
            );
        }
    }

    let again = node.ok(&["gc", "db"]);
    for name in ["records", "versions", "tombstones", "changes", "bytes"] {
        assert_eq!(
            figure(&again, name),
            "0",
            "nothing is left to free: {again}"
        );
    }
    assert_eq!(figure(&again, "steps"), "1");
    for name in ["file-bytes", "used-bytes", "map-bytes"] {
        assert!(figure(&again, name).contains(" -> "), "{again}");
    }
    for i in 0..ROWS / 2 {
        assert_eq!(
            node.get(&format!("k{i}")).as_deref(),
            Some(&*format!("v2{i}"))
        );
    }
    assert_eq!(node.get("k7"), None, "a collected delete stays deleted");

    let unknown = failure(&node.client(&["gc", "nodb"]));
    assert!(unknown.contains("NoExist:"), "{unknown}");
}

#[test]
fn status_shows_the_store_live_data_and_the_member_holding_collection_back() {
    let node = Served::start_in_temp_dir(&[]);
    write_history(&node);
    let status = node.ok(&["status"]);
    let store = status
        .lines()
        .find(|line| line.starts_with("store: "))
        .unwrap_or_else(|| panic!("no store line: {status}"));
    assert!(
        store.contains("bytes on disk") && store.contains("of at most"),
        "{store}"
    );
    assert!(
        status.contains("database db: 5 live rows, 30 live bytes"),
        "5 rows of table t, a 2-byte key and a 3-byte value each: {status}"
    );
    assert!(
        status.contains("  collection waits for no member"),
        "{status}"
    );

    let member = "ab".repeat(32);
    node.ok(&["peer", "add", "127.0.0.1:1", &member, "db", "t"]);
    let status = node.ok(&["status"]);
    assert!(
        status.contains("  member abababab... never reported: holds back collection of t/ ("),
        "{status}"
    );
    let json: serde_json::Value = serde_json::from_str(&node.ok(&["gc", "db", "--json"])).unwrap();
    assert_eq!(
        json["records"], 0,
        "a member that never reported holds every record of its scope back: {json}"
    );
}
