//! `syncbase serve` as a child process, and the client verbs run against it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_syncbase");

/// A `syncbase serve` child process, killed if a test fails before stopping it.
pub struct Served {
    child: Child,
    data_dir: PathBuf,
    /// The temporary data directory the node owns, if any; removed after the node is killed.
    _temp: Option<tempfile::TempDir>,
}

impl Served {
    /// `syncbase serve --listen 127.0.0.1:0 --data-dir DATA_DIR EXTRA…`, once it wrote
    /// `node.addr`.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Served {
        Self::spawn(data_dir.to_path_buf(), None, extra)
    }

    /// Like `start`, on a fresh temporary data directory of its own.
    pub fn start_in_temp_dir(extra: &[&str]) -> Served {
        let temp = tempfile::tempdir().unwrap();
        Self::spawn(temp.path().to_path_buf(), Some(temp), extra)
    }

    fn spawn(data_dir: PathBuf, temp: Option<tempfile::TempDir>, extra: &[&str]) -> Served {
        let child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("syncbase serve starts");
        let served = Served {
            child,
            data_dir,
            _temp: temp,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !served.path().join("node.addr").exists() {
            assert!(Instant::now() < deadline, "the node never wrote node.addr");
            std::thread::sleep(Duration::from_millis(20));
        }
        served
    }

    /// The serve process's id (to read its /proc entry).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn path(&self) -> &Path {
        &self.data_dir
    }

    /// Runs a client verb (`args[0]`, or `peer args[1]` / `sg args[1]`) against this node.
    pub fn client(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("client runs")
    }

    /// The command line of a client verb against this node, to spawn as the test likes.
    pub fn command(&self, args: &[&str]) -> Command {
        let verb = if matches!(args[0], "peer" | "sg") {
            2
        } else {
            1
        };
        let mut command = Command::new(BIN);
        command
            .args(&args[..verb])
            .arg("--data-dir")
            .arg(self.path())
            .args(&args[verb..]);
        command
    }

    /// The stdout of a client verb that must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        stdout(&self.client(args))
    }

    /// The JSON lines a client verb that must succeed prints (its `--json` output).
    pub fn json_lines(&self, args: &[&str]) -> Vec<serde_json::Value> {
        self.ok(args)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// The one JSON object a client verb that must succeed prints (its `--json` output).
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut lines = self.json_lines(args);
        assert_eq!(lines.len(), 1, "one JSON line expected: {lines:?}");
        lines.remove(0)
    }

    /// The peer address recorded in `peer.addr` (needs `--peer-listen`).
    pub fn peer_addr(&self) -> String {
        std::fs::read_to_string(self.path().join("peer.addr"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The fingerprint `syncbase id` prints.
    pub fn fingerprint(&self) -> String {
        self.ok(&["id"])
            .lines()
            .find_map(|line| line.strip_prefix("fingerprint "))
            .expect("id prints a fingerprint")
            .to_owned()
    }

    /// `syncbase get db t KEY`: the value, or None if the row is absent.
    pub fn get(&self, key: &str) -> Option<String> {
        let output = self.client(&["get", "db", "t", key]);
        output
            .status
            .success()
            .then(|| String::from_utf8(output.stdout).unwrap())
    }

    /// Sends SIGTERM and returns the exit status's success.
    pub fn stop(self) -> bool {
        self.signal("TERM").success()
    }

    /// Sends the signal `name` (`TERM`, `HUP`, ...) and returns the exit status.
    pub fn signal(mut self, name: &str) -> ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill runs");
        self.child.wait().expect("serve exits")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stdout of a command that must have succeeded.
pub fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The one stderr line of a command that must have failed.
pub fn failure(output: &Output) -> String {
    assert!(!output.status.success(), "should have failed");
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert_eq!(
        stderr.lines().count(),
        1,
        "one error line expected: {stderr}"
    );
    stderr
}

/// Polls `check` until it holds, failing after `limit` (for tests without a runtime).
pub fn eventually_blocking(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}
