//! `syncbase ls`, through processes: an empty node says there is nothing and how to create
//! a database; the databases list with their tables, live rows and live bytes (the figures
//! `status` shows); one database's tables list by name, a table whose rows were all deleted
//! left out, odd names escaped as `scan` escapes them; `--json` prints one object per line;
//! an unknown database or table is `NoExist:` naming it and how to list what exists.

mod common;

use common::process::{Served, failure};

/// Puts `key` = `value` in `db`'s `table`.
fn put(node: &Served, db: &str, table: &str, key: &str, value: &str) {
    node.ok(&["put", db, table, key, value]);
}

#[test]
fn an_empty_node_says_there_is_nothing_and_how_to_create_a_database() {
    let node = Served::start_in_temp_dir(&[]);
    let out = node.ok(&["ls"]);
    assert_eq!(
        out,
        "no databases on this node; a put creates one: syncbase put DB TABLE KEY VALUE\n"
    );
    assert_eq!(node.ok(&["ls", "--json"]), "", "no database, no JSON line");
}

#[test]
fn ls_lists_databases_then_tables_with_the_live_data_status_shows() {
    let node = Served::start_in_temp_dir(&[]);
    put(&node, "app", "users", "alice", "hi");
    put(&node, "app", "users", "bob", "hello");
    put(&node, "app", "a", "k", "v");
    put(&node, "app", "ab", "k", "v");
    put(&node, "app", "gone", "k", "v");
    node.ok(&["delete", "app", "gone", "k"]);
    put(&node, "logs", "t", "k", "12345");

    // Bytes per live row: table name + key + value.
    let users =
        ("users".len() * 2 + "alice".len() + "hi".len() + "bob".len() + "hello".len()) as u64;
    let app_bytes = users + 3 + 4;
    assert_eq!(
        node.ok(&["ls"]),
        format!(
            "DATABASE  TABLES  ROWS  BYTES\n\
             app       3       4     {app_bytes}\n\
             logs      1       1     7\n"
        )
    );
    let status = node.ok(&["status"]);
    assert!(
        status.contains(&format!(
            "database app: 4 live rows, {app_bytes} live bytes"
        )),
        "ls and status count live data alike: {status}"
    );

    assert_eq!(
        node.ok(&["ls", "app"]),
        format!(
            "TABLE  ROWS  BYTES\n\
             a      1     3\n\
             ab     1     4\n\
             users  2     {users}\n"
        ),
        "\"gone\" holds only a tombstone: not listed, as scan shows it empty"
    );
    assert_eq!(node.ok(&["scan", "app", "gone"]), "");
    assert_eq!(
        node.ok(&["ls", "app", "ab"]),
        "TABLE  ROWS  BYTES\nab     1     4\n"
    );

    let databases = node.json_lines(&["ls", "--json"]);
    assert_eq!(
        databases,
        [
            serde_json::json!({"database": "app", "tables": 3, "live_rows": 4, "live_bytes": app_bytes}),
            serde_json::json!({"database": "logs", "tables": 1, "live_rows": 1, "live_bytes": 7}),
        ]
    );
    let tables = node.json_lines(&["ls", "app", "--json"]);
    assert_eq!(tables.len(), 3);
    assert_eq!(
        tables[2],
        serde_json::json!({"database": "app", "table": "users", "live_rows": 2, "live_bytes": users})
    );
}

#[test]
fn odd_names_print_escaped_as_scan_prints_them() {
    let node = Served::start_in_temp_dir(&[]);
    put(&node, " db", "\"quoted", "k", "v");
    put(&node, " db", "caf\u{e9} it's", "k", "v");
    let out = node.ok(&["ls"]);
    assert_eq!(
        out.lines().nth(1),
        Some(r#"" db"     2       2     21"#),
        "{out}"
    );
    let out = node.ok(&["ls", " db"]);
    assert_eq!(
        out.lines().skip(1).collect::<Vec<_>>(),
        [r#""\"quoted"  1     9"#, "caf\u{e9} it's   1     12"],
        "{out}"
    );
    let json = node.json_lines(&["ls", " db", "--json"]);
    assert_eq!(json[0]["table"], "\"quoted", "JSON carries the name itself");
}

#[test]
fn a_database_without_live_rows_says_how_to_create_a_table() {
    let node = Served::start_in_temp_dir(&[]);
    put(&node, "db", "t", "k", "v");
    node.ok(&["delete", "db", "t", "k"]);
    assert_eq!(
        node.ok(&["ls", "db"]),
        "no tables in database db: it has no live row; a put creates one: syncbase put db \
         TABLE KEY VALUE\n"
    );
    assert_eq!(
        node.ok(&["ls"]).lines().nth(1),
        Some("db        0       0     0")
    );
}

#[test]
fn an_unknown_database_or_table_is_no_exist_naming_it_and_how_to_list() {
    let node = Served::start_in_temp_dir(&[]);
    put(&node, "db", "t", "k", "v");
    let error = failure(&node.client(&["ls", "nope"]));
    assert!(error.contains("NoExist:"), "{error}");
    assert!(error.contains("\"nope\""), "{error}");
    assert!(error.contains("syncbase ls"), "{error}");
    let error = failure(&node.client(&["ls", "db", "other"]));
    assert!(
        error.contains("NoExist: no table \"other\" in database \"db\""),
        "{error}"
    );
    assert!(error.contains("syncbase ls db"), "{error}");
    assert_eq!(
        node.ok(&["ls"]).lines().count(),
        2,
        "listing created no database"
    );
}

#[test]
fn ls_without_a_node_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(common::process::BIN)
        .args(["ls", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let error = failure(&output);
    assert!(error.contains("syncbase serve --data-dir"), "{error}");
}
