//! `syncbase demo` as a new user runs it: the built binary as a process, which must end by
//! itself with the partition, the heal, one winner on all three nodes and a summary; and with
//! `--keep`, the CLI lines it prints must reach its nodes as pasted, until Ctrl-C stops it
//! and removes their directories.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_syncbase");
/// The most a short demo may take, its three nodes' start included.
const DEMO_LIMIT: Duration = Duration::from_secs(60);

/// Starts `syncbase demo ARGS` with stdout piped, and a thread forwarding its lines.
fn start_demo(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .arg("demo")
        .args(args)
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("syncbase demo starts");
    let stdout = child.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

/// Every line until the output ends, failing after `limit`.
fn all_lines(lines: &mpsc::Receiver<String>, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return seen,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the demo ran past {limit:?}: {seen:#?}")
            }
        }
    }
}

/// The lines up to and including the first that `last` accepts, failing after `limit`.
fn lines_until(
    lines: &mpsc::Receiver<String>,
    limit: Duration,
    last: impl Fn(&str) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let done = last(&line);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(error) => panic!("{error:?} before the awaited line: {seen:#?}"),
        }
    }
}

/// The value every node holds at `color` once healed, from the `same winner` line.
fn winner(output: &[String]) -> String {
    let line = output
        .iter()
        .find_map(|line| line.trim().strip_prefix("same winner on all three nodes: "))
        .unwrap_or_else(|| panic!("no `same winner` line: {output:#?}"));
    line.trim_matches('"').to_owned()
}

/// The number after `before` in the summary line, followed by `after` (`p50 4.1 ms`).
fn figure(summary: &str, before: &str, after: &str) -> f64 {
    let (_, rest) = summary
        .split_once(before)
        .unwrap_or_else(|| panic!("{summary}"));
    let number = rest.trim_start().split(' ').next().unwrap();
    assert!(
        rest.trim_start()[number.len()..]
            .trim_start()
            .starts_with(after),
        "{summary}"
    );
    number
        .parse()
        .unwrap_or_else(|_| panic!("{number:?} in {summary}"))
}

#[test]
fn the_demo_shows_a_partition_its_heal_one_winner_everywhere_and_a_summary() {
    let started = Instant::now();
    let (mut child, lines) = start_demo(&["--seconds", "4"]);
    let output = all_lines(&lines, DEMO_LIMIT);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}: {output:#?}");
    assert!(started.elapsed() < DEMO_LIMIT);
    let text = output.join("\n");
    assert!(!text.contains('\x1b'), "colour on a pipe: {text}");

    let partition = output
        .iter()
        .position(|l| l.starts_with("== partition"))
        .expect(&text);
    let heal = output
        .iter()
        .position(|l| l.starts_with("== heal"))
        .expect(&text);
    assert!(partition < heal, "{text}");
    let cut_off = &output[partition..heal];
    assert!(
        cut_off
            .iter()
            .any(|l| l.contains("put p2") && l.contains("alice not reached, bob not reached")),
        "carol's write crossed the partition: {text}"
    );
    assert!(
        cut_off
            .iter()
            .any(|l| l.contains("put p1") && l.contains("carol not reached")),
        "alice's write reached carol during the partition: {text}"
    );
    let healed = &output[heal..];
    for arrival in ["carol  has p1", "alice  has p2", "bob    has p2"] {
        assert!(
            healed.iter().any(|l| l.trim().starts_with(arrival)),
            "{arrival}: {text}"
        );
    }
    let winner = winner(&output);
    let agreed = format!("color: alice {winner:?}, bob {winner:?}, carol {winner:?}");
    assert!(
        healed.iter().any(|l| l.trim() == agreed),
        "{agreed}: {text}"
    );
    assert!(
        text.contains("last-writer-wins on the hybrid logical clock"),
        "{text}"
    );

    let summary = output.last().expect("output");
    assert!(summary.starts_with("summary: "), "{text}");
    assert!(
        figure(summary, "summary:", "records written") >= 6.0,
        "{summary}"
    );
    assert!(figure(summary, "p50", "ms") > 0.0, "{summary}");
    assert!(
        figure(summary, "p95", "ms") >= figure(summary, "p50", "ms"),
        "{summary}"
    );
    assert!(
        figure(summary, "written,", "") > 0.0,
        "bytes synced: {summary}"
    );
}

#[test]
fn with_keep_the_printed_cli_lines_reach_the_demo_nodes_until_ctrl_c() {
    let (mut child, lines) = start_demo(&["--seconds", "3", "--keep"]);
    // alice's lines come first: get, scan, status.
    let output = lines_until(&lines, DEMO_LIMIT, |line| line.contains(" status --addr"));
    let get = output
        .iter()
        .rev()
        .find(|line| line.contains(" get --addr"))
        .unwrap_or_else(|| panic!("no get line: {output:#?}"));
    let words = shlex::split(get.trim()).expect("the line is valid shell");
    let ran = Command::new(&words[0]).args(&words[1..]).output().unwrap();
    assert!(ran.status.success(), "{get}: {ran:?}");
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        winner(&output),
        "{get}"
    );
    // Each node's status page answers on the address printed for it.
    let page = output
        .iter()
        .find_map(|line| line.split("status page: http://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no status page line: {output:#?}"));
    let mut stream = std::net::TcpStream::connect(page).expect("the page's port is open");
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {page}\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.0 200") && answer.contains("# HELP"),
        "{answer}"
    );
    // The nodes carry their demo names: alice's status shows bob and carol by name.
    let status = output
        .iter()
        .rev()
        .find(|line| line.contains(" status --addr"))
        .unwrap_or_else(|| panic!("no status line: {output:#?}"));
    let status_words = shlex::split(status.trim()).expect("the line is valid shell");
    let shown = Command::new(&status_words[0])
        .args(&status_words[1..])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("(bob)") && shown.contains("(carol)"),
        "{status}: {shown}"
    );
    let token = words
        .iter()
        .skip_while(|w| *w != "--token-file")
        .nth(1)
        .unwrap();
    let data_dir = Path::new(token).parent().unwrap().to_path_buf();
    assert!(data_dir.exists());

    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    let rest = all_lines(&lines, Duration::from_secs(30));
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}: {rest:#?}");
    assert!(!data_dir.exists(), "{} left behind", data_dir.display());
}
