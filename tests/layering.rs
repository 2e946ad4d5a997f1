//! The engine's layering, checked on the source: no engine module names the node, the RPC
//! layer, Cap'n Proto, the CLI or the config (ARCHITECTURE.md, "Layers"), and every
//! `select!` in the sync engine is `biased` (so a seeded simulation replays exactly: an
//! unbiased `select!` draws from the runtime's own random source).

use std::path::{Path, PathBuf};

/// The engine: the modules that must run with no node, no socket and no Cap'n Proto.
const ENGINE: &[&str] = &[
    "src/address.rs",
    "src/genvec.rs",
    "src/clock.rs",
    "src/names.rs",
    "src/paging.rs",
    "src/retry.rs",
    "src/tally.rs",
    "src/error.rs",
    "src/store",
    "src/sync",
    "src/syncgroup",
];

/// What an engine module may not name.
const FORBIDDEN: &[&str] = &[
    "crate::node",
    "crate::rpc",
    "crate::cli",
    "crate::config",
    "crate::embedded",
    "crate::bench",
    "crate::schema",
    "capnp",
];

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).expect("engine directory") {
        files.extend(rust_files(&entry.expect("directory entry").path()));
    }
    files.retain(|file| file.extension().is_some_and(|ext| ext == "rs"));
    files
}

fn engine_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    ENGINE
        .iter()
        .flat_map(|part| rust_files(&root.join(part)))
        .collect()
}

/// Lines of code (not comments) in `file` matching `bad`.
fn offending_lines(file: &Path, bad: impl Fn(&str) -> bool) -> Vec<String> {
    let text = std::fs::read_to_string(file).expect("readable source");
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .filter(|(_, line)| bad(line))
        .map(|(number, line)| format!("{}:{}: {}", file.display(), number + 1, line.trim()))
        .collect()
}

#[test]
fn no_engine_module_imports_the_node_or_the_rpc_layer() {
    let files = engine_files();
    assert!(files.len() > 20, "engine sources not found: {files:?}");
    let offenders: Vec<String> = files
        .iter()
        .flat_map(|file| {
            offending_lines(file, |line| {
                FORBIDDEN.iter().any(|name| {
                    line.contains(name)
                        && !(*name == "capnp"
                            && !line.contains("capnp::")
                            && !line.contains("capnp_"))
                })
            })
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "engine modules name what sits above them:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn every_select_in_the_sync_engine_is_biased() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut unbiased = Vec::new();
    for file in rust_files(&root.join("src/sync")) {
        let text = std::fs::read_to_string(&file).expect("readable source");
        let lines: Vec<&str> = text.lines().collect();
        for (number, line) in lines.iter().enumerate() {
            if line.contains("select! {")
                && lines
                    .get(number + 1)
                    .is_none_or(|next| next.trim() != "biased;")
            {
                unbiased.push(format!("{}:{}", file.display(), number + 1));
            }
        }
    }
    assert!(
        unbiased.is_empty(),
        "select! without `biased;` (its branch order is random): {unbiased:?}"
    );
}
