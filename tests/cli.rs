//! The `syncbase` binary as a user runs it: `serve` in its own process, the client verbs
//! against it through the data directory, restart on the same LMDB directory, and bad input
//! (a port in use, an unwritable data dir, bad configs, no running node, a read of a
//! database that does not exist) that must end with one clear error line and a non-zero exit.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::process::{BIN, Served, failure, stdout};

#[test]
fn client_verbs_work_against_a_served_node_and_data_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = Served::start(dir.path(), &[]);
    stdout(&node.client(&["put", "db", "t", "a", "alpha"]));
    stdout(&node.client(&["put", "db", "t", "b", "beta"]));
    let mut put_stdin = Command::new(BIN)
        .args(["put", "--data-dir"])
        .arg(dir.path())
        .args(["db", "t", "bin", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    put_stdin
        .stdin
        .take()
        .unwrap()
        .write_all(&[0, 1, 0xff])
        .unwrap();
    assert!(put_stdin.wait().unwrap().success());
    assert_eq!(stdout(&node.client(&["get", "db", "t", "a"])), "alpha");
    assert_eq!(
        stdout(&node.client(&["scan", "db", "t"])),
        "a\talpha\nb\tbeta\nbin\t\"\\0\\u{1}\\xff\"\n"
    );
    assert_eq!(
        stdout(&node.client(&["scan", "db", "t", "b"])),
        "b\tbeta\nbin\t\"\\0\\u{1}\\xff\"\n"
    );
    assert_eq!(
        stdout(&node.client(&["delete", "db", "t", "b"])),
        "deleted b in table t of database db\n"
    );
    assert_eq!(
        stdout(&node.client(&["delete", "db", "t", "b"])),
        "deleted b in table t of database db (it was absent here; the delete is recorded and \
         syncs all the same)\n"
    );
    assert!(failure(&node.client(&["get", "db", "t", "b"])).contains("NoExist"));
    let token = std::fs::read_to_string(dir.path().join("client.token")).unwrap();
    assert!(node.stop(), "serve exits cleanly on SIGTERM");
    assert!(
        !dir.path().join("node.addr").exists(),
        "the address file is removed on exit"
    );

    let node = Served::start(dir.path(), &[]);
    assert_eq!(stdout(&node.client(&["get", "db", "t", "a"])), "alpha");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("client.token")).unwrap(),
        token
    );
    assert!(node.stop());
}

#[test]
fn a_get_or_scan_of_an_unknown_database_says_so_and_creates_nothing() {
    let node = Served::start_in_temp_dir(&[]);
    for read in [&["get", "nodb", "t", "k"][..], &["scan", "nodb", "t"][..]] {
        let message = failure(&node.client(read));
        assert!(
            message.contains("NoExist:") && message.contains("\"nodb\" does not exist"),
            "{message}"
        );
    }
    let collected = failure(&node.client(&["gc", "nodb"]));
    assert!(
        collected.contains("NoExist:"),
        "no database was made: {collected}"
    );
    assert!(node.stop());
}

#[test]
fn a_second_node_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = Served::start(dir.path(), &["--memory"]);
    let output = Command::new(BIN)
        .args(["serve", "--memory", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(failure(&output).contains("in use by another syncbase node"));
    stdout(&node.client(&["put", "db", "t", "k", "still serving"]));
    assert!(node.stop());
}

#[test]
fn a_memory_node_keeps_no_rows_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let node = Served::start(dir.path(), &["--memory"]);
    stdout(&node.client(&["put", "db", "t", "k", "v"]));
    assert_eq!(stdout(&node.client(&["get", "db", "t", "k"])), "v");
    assert!(!dir.path().join("lmdb").exists());
    assert!(node.stop());
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--memory", "--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let error = failure(&output);
    assert!(error.contains(&addr) && error.contains("in use"), "{error}");
}

#[test]
fn an_unwritable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "not a directory").unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(file.join("data"))
        .output()
        .unwrap();
    let error = failure(&output);
    assert!(
        error.contains("data directory") && error.contains("file/data"),
        "{error}"
    );
}

#[test]
fn bad_configs_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        ("[storage]\nbakend = \"lmdb\"\n", "bakend"),
        (
            "[storage]\nbackend = \"rocksdb\"\n",
            "known backends: memory, lmdb",
        ),
        ("listen = \"not an address\"\n", "listen"),
        ("[storage]\nmap_size = 5\n", "map_size"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let output = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let error = failure(&output);
        assert!(error.contains(expected), "{text:?}: {error}");
    }
}

#[test]
fn a_client_without_a_node_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["get", "--data-dir"])
        .arg(dir.path())
        .args(["db", "t", "k"])
        .output()
        .unwrap();
    let error = failure(&output);
    let dir = dir.path().display();
    assert!(
        error.contains(&format!("{dir}/client.token does not exist")),
        "{error}"
    );
    assert!(
        error.contains(&format!("syncbase serve --data-dir {dir}")),
        "{error}"
    );
}

#[test]
fn syncbase_alone_prints_the_help_not_one_line() {
    let output = Command::new(BIN).output().unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    for expected in ["Usage:", "serve", "put", "sg", "status"] {
        assert!(text.contains(expected), "no {expected:?} in: {text}");
    }
}

#[test]
fn a_bad_command_line_keeps_clap_tips() {
    let typo = Command::new(BIN).arg("gett").output().unwrap();
    assert_eq!(typo.status.code(), Some(2));
    let text = String::from_utf8_lossy(&typo.stderr);
    assert!(text.contains("'get'"), "no similar verb suggested: {text}");
    let negative = Command::new(BIN)
        .args(["put", "db", "t", "k", "-5"])
        .output()
        .unwrap();
    assert_eq!(negative.status.code(), Some(2));
    let text = String::from_utf8_lossy(&negative.stderr);
    assert!(text.contains("-- -5"), "no `-- -5` tip: {text}");
}

#[test]
fn a_log_written_to_a_file_has_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--memory", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !dir.path().join("node.addr").exists() {
        assert!(std::time::Instant::now() < deadline, "no node.addr");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(text.contains("shut down"), "the log has lines: {text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text:?}"
    );
}

#[test]
fn help_describes_every_verb() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    let help = stdout(&output);
    for verb in ["serve", "put", "get", "delete", "scan", "bench"] {
        assert!(help.contains(verb), "--help lacks {verb}");
    }
}

/// `syncbase watch` whose stdout reader pauses (a pager, a slow pipe) while 16 rows of nearly
/// the largest value commit: once the reader reads again, every row is printed and the watch
/// is still running (it died with "Message has 13107466 words, which is too large").
#[test]
fn watch_with_a_paused_stdout_reader_prints_every_large_row_once_it_reads_again() {
    use std::io::BufRead;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let node = Served::start_in_temp_dir(&[]);
    let mut watcher = Command::new(BIN)
        .args(["watch", "--data-dir"])
        .arg(node.path())
        .args(["db", "t"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch starts");
    let (lines, receive) = mpsc::channel::<String>();
    let (resume, paused) = mpsc::channel::<()>();
    let out = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut out = std::io::BufReader::new(out);
        let mut line = String::new();
        // The first line proves the watch is live; then the reader pauses until told.
        if out.read_line(&mut line).unwrap_or(0) == 0 || lines.send(line).is_err() {
            return;
        }
        if paused.recv().is_err() {
            return;
        }
        for line in out.lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    for round in 0.. {
        assert!(Instant::now() < deadline, "watch printed nothing");
        stdout(&node.client(&["put", "db", "t", "ping", &format!("{round}")]));
        if receive.recv_timeout(Duration::from_millis(500)).is_ok() {
            break;
        }
    }
    let big = "x".repeat(4_000_000);
    for i in 0..16 {
        let mut put = Command::new(BIN)
            .args(["put", "--data-dir"])
            .arg(node.path())
            .args(["db", "t", &format!("big{i:02}"), "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        put.stdin.take().unwrap().write_all(big.as_bytes()).unwrap();
        assert!(put.wait().unwrap().success());
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        watcher.try_wait().unwrap().is_none(),
        "watch ended while its reader paused"
    );
    resume.send(()).unwrap();
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while printed.len() < 16 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = receive.recv_timeout(left) else {
            let _ = watcher.kill();
            let output = watcher.wait_with_output().unwrap();
            panic!(
                "printed {} of 16 rows; watch said: {}",
                printed.len(),
                String::from_utf8_lossy(&output.stderr)
            );
        };
        if line.starts_with("put\tlocal\tt\tbig") {
            printed.push(line);
        }
    }
    for (i, line) in printed.iter().enumerate() {
        let expected = format!("put\tlocal\tt\tbig{i:02}\t{big}");
        assert!(line == &expected, "row {i}: {} bytes", line.len());
    }
    assert!(watcher.try_wait().unwrap().is_none(), "watch still runs");
    let _ = watcher.kill();
    let _ = watcher.wait();
}
