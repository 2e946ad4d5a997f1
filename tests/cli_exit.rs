//! How the `syncbase` processes end: every stop signal shuts `serve` down the same graceful
//! way and removes its address files; a client whose stdout is closed stops quietly with
//! status 0; a local write failure names stdout, never the node; a stale `node.addr` gets a
//! hint instead of a bare "Connection refused".

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::process::{BIN, Served, eventually_blocking, failure, stdout};

/// Runs `command` with its stdout a pipe whose read end is already closed.
fn with_closed_stdout(mut command: Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    command
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("the verb runs")
}

fn assert_quiet_success(what: &str, output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what}: exit {:?}, stderr: {stderr}",
        output.status
    );
    assert_eq!(stderr, "", "{what}: says nothing");
}

/// A node with rows, a syncgroup, a peer and a proposal-free state: every verb has something
/// to print.
fn populated_node() -> (Served, String) {
    let node = Served::start_in_temp_dir(&["--peer-listen", "127.0.0.1:0"]);
    for i in 0..50 {
        stdout(&node.client(&["put", "db", "t", &format!("k{i:02}"), "value"]));
    }
    let name = format!("{}/sg", node.peer_addr());
    stdout(&node.client(&["sg", "create", "db", &name, "--prefix", "t"]));
    let fingerprint = "ab".repeat(32);
    stdout(&node.client(&["peer", "add", "127.0.0.1:9", &fingerprint, "db", "t"]));
    (node, name)
}

#[test]
fn every_verb_that_prints_ends_quietly_with_status_0_when_stdout_is_closed() {
    let (node, name) = populated_node();
    let other = "cd".repeat(32);
    let verbs: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["id"],
        vec!["peer", "list"],
        vec!["peer", "add", "127.0.0.1:9", &other, "db", "t"],
        vec!["peer", "remove", &other],
        vec!["sg", "list"],
        vec!["sg", "show", &name],
        vec!["sg", "invite", &name],
        vec!["sg", "publish-invite", "db"],
        vec!["scan", "db", "t"],
        vec!["get", "db", "t", "k00"],
        vec!["delete", "db", "t", "k49"],
        vec!["watch", "db", "t", "--initial"],
        vec!["status", "--json"],
        vec!["id", "--json"],
        vec!["peer", "list", "--json"],
        vec!["sg", "list", "--json"],
        vec!["sg", "show", &name, "--json"],
        vec!["scan", "db", "t", "--json"],
        vec!["watch", "db", "t", "--initial", "--json"],
        vec!["put", "db", "t", "k48", "changed"],
    ];
    for verb in verbs {
        let output = with_closed_stdout(node.command(&verb));
        assert_quiet_success(&verb.join(" "), &output);
    }
    for flag in ["--help", "--version"] {
        let mut command = Command::new(BIN);
        command.arg(flag);
        assert_quiet_success(flag, &with_closed_stdout(command));
    }
}

#[test]
fn a_local_write_failure_names_stdout_and_never_the_node() {
    let (node, _) = populated_node();
    for verb in [
        vec!["scan", "db", "t"],
        vec!["watch", "db", "t", "--initial"],
        vec!["id"],
    ] {
        let mut command = node.command(&verb);
        let full = std::fs::File::create("/dev/full").unwrap();
        let output = command
            .stdout(full)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let line = failure(&output);
        assert!(line.contains("writing to stdout: "), "{verb:?}: {line}");
        assert!(!line.contains("remote"), "{verb:?}: {line}");
        assert_eq!(
            line.matches("No space left on device").count(),
            1,
            "{verb:?} names the cause once: {line}"
        );
    }
}

#[test]
fn every_stop_signal_shuts_serve_down_gracefully_and_removes_the_address_files() {
    for signal in ["HUP", "TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let node = Served::start(dir.path(), &["--peer-listen", "127.0.0.1:0"]);
        assert!(dir.path().join("peer.addr").exists());
        let status = node.signal(signal);
        assert!(status.success(), "SIG{signal}: {status:?}");
        for file in ["node.addr", "peer.addr"] {
            assert!(
                !dir.path().join(file).exists(),
                "SIG{signal} left {file} behind"
            );
        }
    }
}

#[test]
fn a_stale_node_addr_gets_a_hint_instead_of_a_bare_connection_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = Served::start(dir.path(), &[]);
    drop(node); // SIGKILL: no shutdown, node.addr stays behind.
    eventually_blocking("node.addr left behind", Duration::from_secs(5), || {
        dir.path().join("node.addr").exists()
    });
    let output = Command::new(BIN)
        .args(["status", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let line = failure(&output);
    let addr = std::fs::read_to_string(dir.path().join("node.addr")).unwrap();
    assert!(
        line.contains(&format!("no node is running at {}", addr.trim())),
        "{line}"
    );
    assert!(line.contains("node.addr"), "{line}");
    let start = format!(
        "start it with `syncbase serve --data-dir {}`",
        dir.path().display()
    );
    assert!(line.contains(&start), "{line}");
}

#[test]
fn a_refused_addr_flag_names_the_address_not_a_data_directory_to_serve() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("client.token");
    std::fs::write(&token, "0".repeat(64)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let addr = common::free_loopback_addr();
    let output = Command::new(BIN)
        .args(["status", "--addr", &addr, "--token-file"])
        .arg(&token)
        .output()
        .unwrap();
    let line = failure(&output);
    assert!(
        line.contains(&format!("no node is running at {addr} (given with --addr)")),
        "{line}"
    );
    assert!(line.contains("check the address"), "{line}");
    assert!(!line.contains("serve --data-dir"), "{line}");
}
