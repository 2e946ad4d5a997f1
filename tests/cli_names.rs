//! Names and what the CLI prints of them, through `syncbase serve` processes: a table name
//! holding `/` and names holding Unicode's hidden characters (a bidi override, a line
//! separator) are refused naming the rule, `serve --name` too; keys take them (they are
//! data) and print escaped; `ls` pads wide names by display width; a bad fingerprint's
//! character is named as typed.

mod common;

use std::process::Command;

use common::process::{BIN, Served, failure};

#[test]
fn a_table_name_with_a_slash_is_refused_naming_the_scope_rule() {
    let node = Served::start_in_temp_dir(&["--memory"]);
    let error = failure(&node.client(&["put", "db2", "t/x", "k", "v"]));
    assert!(
        error.contains("InvalidArgument: table name \"t/x\" holds '/', which table names cannot"),
        "{error}"
    );
    assert!(
        error.contains("TABLE/PREFIX"),
        "names the scope rule: {error}"
    );
    assert!(
        !node.ok(&["ls"]).contains("db2"),
        "a refused put leaves no database behind"
    );
    node.ok(&["put", "db2", "t-x", "k", "v"]);
    assert!(
        node.ok(&["ls", "db2"]).contains("\nt-x "),
        "the suggested name works"
    );
}

#[test]
fn names_with_hidden_characters_are_refused_and_keys_print_escaped() {
    let node = Served::start_in_temp_dir(&["--memory"]);
    for name in ["evil\u{202e}gpj", "two\u{2028}lines", "zero\u{200b}width"] {
        let error = failure(&node.client(&["put", name, "t", "k", "v"]));
        assert!(
            error.contains("InvalidArgument: database name")
                && error.contains("invisible character U+"),
            "{error}"
        );
        let error = failure(&node.client(&["put", "db", name, "k", "v"]));
        assert!(error.contains("InvalidArgument: table name"), "{error}");
    }
    node.ok(&["put", "db", "t", "a\u{202e}b", "v"]);
    assert_eq!(node.ok(&["scan", "db", "t"]), "\"a\\u{202e}b\"\tv\n");
}

#[test]
fn serve_refuses_a_name_with_a_hidden_character() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--memory", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--name", "alice\u{202e}"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "serve must refuse the name");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invisible character U+202E"), "{stderr}");
}

#[test]
fn ls_pads_wide_names_by_display_width() {
    let node = Served::start_in_temp_dir(&["--memory"]);
    node.ok(&["put", "db", "t", "k", "v"]);
    node.ok(&["put", "日本", "t", "k", "v"]);
    assert_eq!(
        node.ok(&["ls"]),
        "DATABASE  TABLES  ROWS  BYTES\n\
         db        1       1     3\n\
         日本      1       1     3\n"
    );
}

#[test]
fn a_bad_fingerprint_character_is_named_as_typed() {
    let node = Served::start_in_temp_dir(&["--memory"]);
    let fingerprint = format!("{}G", "AB".repeat(31) + "C");
    let error = failure(&node.client(&[
        "peer",
        "add",
        "127.0.0.1:9",
        &fingerprint,
        "db",
        "--prefix",
        "t",
    ]));
    assert!(error.contains("character 'G' at byte 63"), "{error}");
}

#[test]
fn a_delete_in_a_database_that_does_not_exist_fails_and_creates_nothing() {
    let node = Served::start_in_temp_dir(&["--memory"]);
    let error = failure(&node.client(&["delete", "newdb", "t", "k"]));
    assert!(
        error.contains("NoExist:") && error.contains("newdb"),
        "{error}"
    );
    assert!(!node.ok(&["ls"]).contains("newdb"), "no stray database");
    node.ok(&["put", "newdb", "t", "k", "v"]);
    node.ok(&["delete", "newdb", "t", "k"]);
}
