//! A data directory written by an older build, opened by this one (`store::format`): the
//! format-1 fixture (`tests/fixtures/format1-data-dir`, made by the build before 6dee37c) is
//! upgraded at open and serves its syncgroup with its members, its proposal, its declared
//! peer and its rows, syncs with a fresh node, and is left at the current format; a store of
//! a format newer than this build is refused, naming the data directory and both formats.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::process::{BIN, Served, eventually_blocking as eventually};
use serde_json::Value;
use syncbase::store::format::{self, CURRENT, Found};
use syncbase_storage::Storage;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/format1-data-dir"
);
const FAMILY: &str = "127.0.0.1:47101/family";
const ADMIN: &str = "f175321cc3ba37cad145aec56e519f3ba45b7bdd7a3cf9208700decc4712d2fc";
const MEMBER_B: &str = "b8cf84a071ab70eb11e5d6c822c65dbfc46694b21e11f370a8b42a25f80572fa";
const MEMBER_C: &str = "bce3629fac2bf7eee285fe935d5744f154940968126bd5c943f48372315792be";

/// A copy of the fixture's data directory in a fresh temporary directory.
fn fixture_copy() -> tempfile::TempDir {
    let temp = tempfile::tempdir().unwrap();
    std::fs::create_dir(temp.path().join("lmdb")).unwrap();
    for file in [
        "client.token",
        "peer.crt",
        "peer.key",
        "store.marker",
        "lmdb/data.mdb",
    ] {
        std::fs::copy(Path::new(FIXTURE).join(file), temp.path().join(file)).unwrap();
    }
    // Git keeps no modes but the executable bit: a fresh checkout has the secrets readable by
    // others, which the node refuses. A real data directory has them private.
    use std::os::unix::fs::PermissionsExt;
    for secret in ["client.token", "peer.key"] {
        let private = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(temp.path().join(secret), private).unwrap();
    }
    temp
}

/// Opens the LMDB store of a stopped node's data directory.
fn storage(data_dir: &Path) -> std::sync::Arc<dyn Storage> {
    let config = syncbase::config::Config {
        data_dir: data_dir.to_path_buf(),
        ..Default::default()
    };
    syncbase_storage::open(&config.storage_config()).unwrap()
}

fn stored_format(data_dir: &Path) -> Found {
    let storage = storage(data_dir);
    let txn = storage.read().unwrap();
    format::found(txn.as_ref()).unwrap()
}

/// `scan photos TABLE` as (key, value) lines.
fn rows(node: &Served, table: &str) -> Vec<String> {
    node.ok(&["scan", "photos", table])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn members(syncgroup: &Value) -> Vec<(String, String, String)> {
    let mut members: Vec<(String, String, String)> = syncgroup["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| {
            (
                member["fingerprint"].as_str().unwrap().to_owned(),
                member["device"].as_str().unwrap().to_owned(),
                member["address"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    members.sort();
    members
}

#[test]
fn a_format_1_data_directory_is_upgraded_and_serves_and_syncs_all_it_held() {
    let temp = fixture_copy();
    assert_eq!(
        stored_format(temp.path()),
        Found::At(1),
        "the fixture is format 1"
    );
    let old = Served::start(temp.path(), &["--peer-listen", "127.0.0.1:0"]);
    assert_eq!(old.fingerprint(), ADMIN);

    let family = old.json(&["sg", "show", FAMILY, "--json"]);
    assert_eq!(family["database"], "photos");
    assert_eq!(family["status"], "running");
    assert_eq!(family["creator"], ADMIN);
    assert_eq!(
        members(&family),
        vec![
            (
                MEMBER_B.into(),
                "9ae49b10682ba846".into(),
                "127.0.0.1:47201".into()
            ),
            (
                MEMBER_C.into(),
                "adcd559736996721".into(),
                "127.0.0.1:47301".into()
            ),
            (
                ADMIN.into(),
                "eaf757c7e70cb17e".into(),
                "127.0.0.1:47101".into()
            ),
        ]
    );
    assert!(
        family["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|member| member["name"].is_null()),
        "format 1 members had no names: {family}"
    );
    let listed = old.json_lines(&["sg", "list", "--json"]);
    let trip = listed
        .iter()
        .find(|sg| sg["name"] == "127.0.0.1:47101/trip")
        .unwrap_or_else(|| panic!("the proposal is kept: {listed:?}"));
    assert_eq!(
        (&trip["proposal"], &trip["publisher"]),
        (&Value::Bool(true), &Value::from(MEMBER_C))
    );

    let peers = old.json_lines(&["peer", "list", "--json"]);
    let declared = peers
        .iter()
        .find(|peer| peer["fingerprint"] == MEMBER_B)
        .unwrap_or_else(|| panic!("the declared peer is kept: {peers:?}"));
    assert_eq!(declared["declared"], true);
    assert_eq!(declared["address"], "127.0.0.1:47201");
    assert!(declared["name"].is_null(), "{declared}");
    let notes = declared["databases"][0]["scopes"].as_array().unwrap();
    assert!(
        notes.iter().any(|scope| scope["table"] == "notes"),
        "{declared}"
    );

    assert_eq!(
        rows(&old, "meta"),
        [
            "cat.jpg\t{\"w\":640}",
            "from-b.jpg\t{\"w\":100}",
            "from-c.jpg\t{\"w\":200}"
        ]
    );
    assert_eq!(rows(&old, "notes"), ["n1\tfirst note", "n2\tsecond note"]);
    assert!(
        !old.client(&["get", "photos", "meta", "dog.jpg"])
            .status
            .success(),
        "the delete is kept"
    );

    // A fresh node declared both ways on `notes` gets the old rows, and the old node its row.
    let fresh = Served::start_in_temp_dir(&["--memory", "--peer-listen", "127.0.0.1:0"]);
    for (from, to) in [(&old, &fresh), (&fresh, &old)] {
        let shares = [
            "peer",
            "add",
            &to.peer_addr(),
            &to.fingerprint(),
            "photos",
            "notes",
        ];
        from.ok(&shares);
    }
    fresh.ok(&["put", "photos", "notes", "n3", "third note"]);
    eventually(
        "the old rows reach the fresh node",
        Duration::from_secs(20),
        || {
            fresh
                .client(&["get", "photos", "notes", "n1"])
                .status
                .success()
                && fresh
                    .client(&["get", "photos", "notes", "n2"])
                    .status
                    .success()
        },
    );
    eventually(
        "the fresh row reaches the old node",
        Duration::from_secs(20),
        || {
            old.client(&["get", "photos", "notes", "n3"])
                .status
                .success()
        },
    );

    assert!(old.stop());
    assert_eq!(stored_format(temp.path()), Found::At(CURRENT));
    let again = Served::start(temp.path(), &[]);
    assert_eq!(
        rows(&again, "notes").len(),
        3,
        "opens again at the current format"
    );
    assert!(again.stop());
}

/// A `serve` child killed when dropped (a failed assertion leaves no process behind).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_upgrade_logs_one_line_naming_both_formats() {
    let temp = fixture_copy();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let mut child = Child(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(temp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    eventually("the node serves", Duration::from_secs(20), || {
        temp.path().join("node.addr").exists()
    });
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.0.wait().unwrap().success());
    let stderr = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("upgraded store format"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let expected = format!("upgraded store format 1 -> {CURRENT}");
    assert!(lines[0].contains(&expected), "{stderr}");
}

#[test]
fn a_store_newer_than_this_build_is_refused_naming_the_data_directory_and_both_formats() {
    let temp = fixture_copy();
    {
        let storage = storage(temp.path());
        let mut txn = storage.write().unwrap();
        txn.put(b"i\xfeformat", &(CURRENT + 1).to_be_bytes())
            .unwrap();
        txn.commit().unwrap();
    }
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(temp.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let dir = temp.path().display().to_string();
    for part in [
        "BadState: ",
        dir.as_str(),
        &format!("store format {}", CURRENT + 1),
        &format!("this build's format {CURRENT}"),
        "newer build",
    ] {
        assert!(stderr.contains(part), "{part:?} missing: {stderr}");
    }
    assert!(!stderr.contains("corrupt"), "{stderr}");
    assert_eq!(
        stored_format(temp.path()),
        Found::At(CURRENT + 1),
        "left alone"
    );
}
