//! The module maps (the `//!` list at the top of `lib.rs` and of each module that keeps one)
//! name every module declared beside them, so a new module cannot be left off its map.

use std::path::Path;

/// Files whose `//!` doc lists each of their modules.
const MAPS: &[&str] = &[
    "src/lib.rs",
    "src/cli/mod.rs",
    "src/rpc/mod.rs",
    "src/store/mod.rs",
    "src/syncgroup/mod.rs",
];

/// The modules `source` declares (`mod x;`, `pub mod x;`), test modules left out.
fn declared(source: &str) -> Vec<String> {
    let mut modules = Vec::new();
    let mut after_cfg_test = false;
    for line in source.lines().map(str::trim) {
        let declaration = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("pub(crate) mod "))
            .or_else(|| line.strip_prefix("mod "));
        if let Some(name) = declaration.and_then(|rest| rest.strip_suffix(';'))
            && !after_cfg_test
        {
            modules.push(name.to_owned());
        }
        after_cfg_test = line == "#[cfg(test)]";
    }
    modules
}

/// The names the `//!` list items of `source` start with (`- [`x`]:` or `- `x`:`).
fn mapped(source: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|line| line.strip_prefix("//! - "))
        .filter_map(|item| {
            let name = item.split(':').next()?;
            Some(
                name.trim_matches(|c| c == '[' || c == ']' || c == '`')
                    .to_owned(),
            )
        })
        .collect()
}

#[test]
fn every_module_is_on_its_parents_map_once() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for map in MAPS {
        let source = std::fs::read_to_string(root.join(map)).unwrap();
        let (mut declared, mut mapped) = (declared(&source), mapped(&source));
        assert!(!declared.is_empty(), "{map} declares no module");
        declared.sort();
        mapped.sort();
        assert_eq!(
            mapped, declared,
            "{map}: its map (left) and its modules (right)"
        );
    }
}
