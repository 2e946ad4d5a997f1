//! A node whose disk refuses to grow its store, as a user meets it: `serve` runs with a file
//! size limit (`RLIMIT_FSIZE`, SIGXFSZ ignored, so writes past it fail with `EFBIG`, one of
//! the out-of-space errors), puts fill it, and each failed put must say `StorageFull:` with
//! the fix, while the node's log records the failure once and its repeats with a count. And a
//! node whose store reaches its configured maximum: the LMDB map grows (logged) from a small
//! initial size without a failed put, then puts past the maximum less the reserve fail with
//! `StorageFull:` naming `storage.max_map_size`.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::process::{BIN, eventually_blocking};

/// The `serve` child, killed if the test fails before stopping it.
struct Limited(Child);

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `syncbase serve` on `data`, its files limited to `kib` KiB, logging to `log`.
fn serve_with_file_limit(data: &Path, log: &Path, kib: u64) -> Limited {
    let script = format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\"");
    let child = Command::new("bash")
        .args(["-c", &script])
        .arg(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("bash runs");
    let served = Limited(child);
    eventually_blocking("node.addr", Duration::from_secs(20), || {
        data.join("node.addr").exists()
    });
    served
}

/// `syncbase serve` on `data` with the TOML config `config`, logging to `log`.
fn serve_with_config(data: &Path, log: &Path, config: &str) -> Limited {
    let file = data.with_extension("toml");
    std::fs::write(&file, config).unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("syncbase serve starts");
    let served = Limited(child);
    eventually_blocking("node.addr", Duration::from_secs(20), || {
        data.join("node.addr").exists()
    });
    served
}

/// `syncbase put db t KEY -` with `value` on stdin.
fn put(data: &Path, key: &str, value: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(["put", "--data-dir"])
        .arg(data)
        .args(["db", "t", key, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(value).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn out_of_space_on_disk_is_storage_full_with_the_fix_and_logged_once_with_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("serve.log"));
    let node = serve_with_file_limit(&data, &log, 4096);
    let value = vec![b'x'; 512 * 1024];
    let mut failures = Vec::new();
    for i in 0..64 {
        let output = put(&data, &format!("k{i}"), &value);
        if !output.status.success() {
            failures.push(String::from_utf8(output.stderr).unwrap());
            if failures.len() == 6 {
                break;
            }
        }
    }
    drop(node);
    assert_eq!(failures.len(), 6, "4 MiB of files fill up within 64 puts");
    for failure in &failures {
        assert!(
            failure.starts_with("syncbase: error: StorageFull: storage is full: "),
            "{failure}"
        );
        assert!(failure.contains("file size limit"), "{failure}");
    }
    let log = std::fs::read_to_string(&log).unwrap();
    let logged: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("storage commit failed"))
        .collect();
    assert!(
        logged
            .first()
            .is_some_and(|line| line.contains("StorageFull:")),
        "{log}"
    );
    assert_eq!(
        logged.len(),
        3,
        "6 identical failures are logged at the 1st, 2nd and 4th: {logged:#?}"
    );
}

#[test]
fn the_map_grows_from_its_initial_size_and_a_store_at_its_maximum_names_the_key_to_raise() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("serve.log"));
    let config = "[storage]\nmap_size = 1048576\nmax_map_size = 8388608\n";
    let node = serve_with_config(&data, &log, config);
    let value = vec![b'x'; 512 * 1024];
    let mut written = 0;
    let mut failures = Vec::new();
    for i in 0..64 {
        let output = put(&data, &format!("k{i}"), &value);
        if output.status.success() {
            written += 1;
        } else {
            failures.push(String::from_utf8(output.stderr).unwrap());
            if failures.len() == 2 {
                break;
            }
        }
    }
    drop(node);
    assert!(
        failures.len() == 2 && written >= 4,
        "the first 2 MiB fit a 1 MiB map that grows; 32 MiB do not fit 8 MiB: {written} written, {failures:#?}"
    );
    for failure in &failures {
        assert!(
            failure.starts_with("syncbase: error: StorageFull: storage is full: "),
            "{failure}"
        );
    }
    assert!(
        failures[1].contains("storage.max_map_size") && failures[1].contains("syncbase gc"),
        "a store at its maximum says what to do: {}",
        failures[1]
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("LMDB map resized"), "{log}");
}
