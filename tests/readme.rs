//! The README's shell blocks run as pasted. Every ```sh block is run with bash (`-e -o
//! pipefail`, so the first failing command fails the test, also one piped into `jq`) in a fresh directory, with `syncbase` on the PATH
//! (the binary under test) and `cargo run --release --` replaced by it, HOME a temporary
//! directory, and each `127.0.0.1:PORT` of the block moved to a free port (so runs beside
//! other tests and a user's node do not collide). The HTML comment on the line before a block
//! says how:
//!
//! - none: run as is;
//! - `<!-- readme-test: node -->`: first start `syncbase serve --listen 127.0.0.1:0` in the
//!   block's directory (the node an earlier block told the reader to start);
//! - `<!-- readme-test: continues -->`: it goes on from the runnable block before it (its
//!   nodes, its shell variables), so the two run as one script;
//! - `<!-- readme-test: skip: REASON -->`: not run (it blocks until Ctrl-C, holds
//!   placeholders, or installs from a registry), with the reason, which must not be empty.
//!
//! Background jobs a block starts (`syncbase serve ... &`) are stopped when it ends.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::process::{BIN, Served};
use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};

/// The longest a block may run.
const BLOCK_LIMIT: Duration = Duration::from_secs(60);

/// How a block is run, from its marker.
#[derive(Debug, Clone, PartialEq)]
enum How {
    Run,
    WithNode,
    Continues,
    Skip(String),
}

#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    how: How,
    code: String,
}

/// The ```sh blocks of `markdown`, each with the marker in the HTML just before it.
fn shell_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut marker: Option<String> = None;
    let mut open: Option<Block> = None;
    for (event, range) in Parser::new(markdown).into_offset_iter() {
        match event {
            Event::Html(html) | Event::InlineHtml(html) => marker = Some(html.trim().to_owned()),
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                let how = how(marker.take().as_deref());
                open = (info.as_ref() == "sh").then(|| Block {
                    line: markdown[..range.start].matches('\n').count() + 1,
                    how,
                    code: String::new(),
                });
            }
            Event::Text(text) => {
                if let Some(block) = &mut open {
                    block.code.push_str(&text);
                }
            }
            Event::End(TagEnd::CodeBlock) => blocks.extend(open.take()),
            Event::Start(Tag::Paragraph | Tag::Heading { .. } | Tag::List(_)) => marker = None,
            _ => {}
        }
    }
    blocks
}

/// The marker's meaning; a comment that is not a readme-test marker is none.
fn how(marker: Option<&str>) -> How {
    let Some(body) = marker
        .and_then(|html| html.strip_prefix("<!--"))
        .and_then(|html| html.strip_suffix("-->"))
        .and_then(|html| html.trim().strip_prefix("readme-test:"))
    else {
        return How::Run;
    };
    match body.trim() {
        "node" => How::WithNode,
        "continues" => How::Continues,
        other => match other.strip_prefix("skip:") {
            Some(reason) => How::Skip(reason.trim().to_owned()),
            None => panic!("unknown readme-test marker {other:?} (node, continues, skip: REASON)"),
        },
    }
}

/// `code` as the test runs it: `cargo run --release --` is the `syncbase` on the PATH, and
/// each distinct `127.0.0.1:PORT` gets a free port of its own.
fn as_run(code: &str) -> String {
    let code = code.replace("cargo run --release --", "syncbase");
    let mut ports = BTreeMap::new();
    let mut out = String::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("127.0.0.1:") {
        let (before, after) = rest.split_at(at + "127.0.0.1:".len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let port = &after[..digits];
        if port.is_empty() || port == "0" {
            out.push_str(port);
        } else {
            let free = ports.entry(port.to_owned()).or_insert_with(free_port);
            out.push_str(&free.to_string());
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs one block's code in `dir` as the module says; returns bash's output.
fn run_block(code: &str, dir: &Path) -> Output {
    let bin_dir = dir.join(".bin");
    let home = dir.join(".home");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::symlink(BIN, bin_dir.join("syncbase")).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!(
        "set -e -o pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT\n{}",
        as_run(code)
    );
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("PATH", path)
        .env("HOME", &home)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + BLOCK_LIMIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a block ran longer than {BLOCK_LIMIT:?}:\n{code}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The runnable blocks as scripts: a block that continues joins the script before it.
fn scripts(blocks: &[Block]) -> Vec<Block> {
    let mut scripts: Vec<Block> = Vec::new();
    for block in blocks {
        match &block.how {
            How::Skip(reason) => {
                assert!(
                    !reason.is_empty(),
                    "README line {}: a skip needs a reason",
                    block.line
                );
            }
            How::Continues => {
                let previous = scripts
                    .last_mut()
                    .unwrap_or_else(|| panic!("README line {}: continues no block", block.line));
                previous.code.push_str(&block.code);
            }
            How::Run | How::WithNode => scripts.push(Block {
                line: block.line,
                how: block.how.clone(),
                code: block.code.clone(),
            }),
        }
    }
    scripts
}

#[test]
fn every_readme_shell_block_runs_as_pasted_or_says_why_not() {
    let blocks = shell_blocks(&readme());
    let runnable = blocks.iter().filter(|b| !matches!(b.how, How::Skip(_)));
    assert!(
        runnable.count() >= 4,
        "too few runnable blocks: {blocks:#?}"
    );
    for script in scripts(&blocks) {
        let dir = tempfile::tempdir().unwrap();
        let _node = (script.how == How::WithNode)
            .then(|| Served::start(&dir.path().join("syncbase-data"), &[]));
        let output = run_block(&script.code, dir.path());
        assert!(
            output.status.success(),
            "README line {}: the block failed:\n{}\nstdout:\n{}\nstderr:\n{}",
            script.line,
            script.code,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn a_broken_command_in_a_block_fails_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let broken =
        "cargo run --release -- --version\ncargo run --release -- gett db t k\necho unreached\n";
    let output = run_block(broken, dir.path());
    assert!(!output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("syncbase "), "{stdout}");
    assert!(!stdout.contains("unreached"), "{stdout}");
}

#[test]
fn markers_and_ports_are_read_as_documented() {
    let markdown = "text\n\n<!-- readme-test: skip: blocks -->\n```sh\nsyncbase serve\n```\n\n\
                    <!-- readme-test: node -->\n```sh\nsyncbase get db t k\n```\n\n\
                    ```toml\nx = 1\n```\n\n```sh\necho 127.0.0.1:7700 127.0.0.1:7700 127.0.0.1:0\n```\n\n\
                    <!-- readme-test: continues -->\n```sh\necho more\n```\n";
    let blocks = shell_blocks(markdown);
    let hows: Vec<&How> = blocks.iter().map(|b| &b.how).collect();
    assert_eq!(
        hows,
        [
            &How::Skip("blocks".into()),
            &How::WithNode,
            &How::Run,
            &How::Continues
        ]
    );
    let scripts = scripts(&blocks);
    assert_eq!(scripts.len(), 2);
    assert!(
        scripts[1].code.ends_with("127.0.0.1:0\necho more\n"),
        "{:?}",
        scripts[1]
    );
    assert_eq!(blocks[1].line, 9);
    let run = as_run(&blocks[2].code);
    let ports: Vec<&str> = run.trim().split(' ').skip(1).collect();
    assert_eq!(ports[0], ports[1], "one port, one replacement: {run}");
    assert_ne!(ports[0], "127.0.0.1:7700");
    assert_eq!(ports[2], "127.0.0.1:0");
    assert_eq!(as_run("cargo run --release -- demo"), "syncbase demo");
}
