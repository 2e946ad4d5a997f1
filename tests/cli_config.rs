//! Finding a node's files as a user does: `serve --help` points at the config keys, a config
//! file's relative `data_dir` is its own directory's whatever the current directory, and
//! `syncbase id` of a stopped node reads its fingerprint from the data directory.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{BIN, Served, failure, stdout};

#[test]
fn serve_help_lists_the_config_keys_and_names_the_readme() {
    let help = stdout(
        &Command::new(BIN)
            .args(["serve", "--help"])
            .output()
            .unwrap(),
    );
    assert!(help.contains("README"), "{help}");
    assert!(!help.contains("src/config.rs"), "{help}");
    for key in [
        "data_dir",
        "max_map_size",
        "collect_interval_secs",
        "[[sync.peers]]",
    ] {
        assert!(help.contains(key), "serve --help lacks {key}");
    }
}

#[test]
fn a_relative_data_dir_in_a_config_file_is_under_the_files_directory() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let file = home.path().join("node.toml");
    std::fs::write(&file, "data_dir = \"data\"\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--memory", "--config"])
        .arg(&file)
        .current_dir(elsewhere.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr_file = home.path().join("data/node.addr");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !addr_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let written = addr_file.exists();
    // A client verb given the same file, from a third directory, finds the node.
    let put = Command::new(BIN)
        .args(["put", "--config"])
        .arg(&file)
        .args(["db", "t", "k", "v"])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        written,
        "node.addr is not under the config file's directory"
    );
    assert!(
        !elsewhere.path().join("data").exists(),
        "data_dir followed the cwd"
    );
    stdout(&put);
}

#[test]
fn id_of_a_stopped_node_reads_its_fingerprint_from_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let node = Served::start(dir.path(), &["--memory"]);
    let fingerprint = node.fingerprint();
    assert!(node.stop());
    let offline = stdout(
        &Command::new(BIN)
            .args(["id", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap(),
    );
    assert_eq!(
        offline.lines().next(),
        Some(format!("fingerprint {fingerprint}").as_str()),
        "{offline}"
    );
    assert!(offline.contains("not running"), "{offline}");
    // A data directory no node ever used still says the node is not found.
    let empty = tempfile::tempdir().unwrap();
    let error = failure(
        &Command::new(BIN)
            .args(["id", "--data-dir"])
            .arg(empty.path())
            .output()
            .unwrap(),
    );
    assert!(
        error.contains("no node has run with data directory"),
        "{error}"
    );
}
