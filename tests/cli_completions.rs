//! `syncbase --version` and `syncbase completions SHELL` as a user runs them: the version line
//! names the commit the binary was built from, and each shell's script completes the verbs.

mod common;

use std::process::Command;

use common::process::{BIN, stdout};

#[test]
fn version_prints_the_crate_version_and_the_commit() {
    let line = stdout(&Command::new(BIN).arg("--version").output().unwrap());
    let expected = format!("syncbase {} (", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&expected), "{line}");
    let commit = line.trim_end().strip_prefix(&expected).unwrap();
    let commit = commit.strip_suffix(')').expect("the commit in parentheses");
    let from_git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8(output.stdout).unwrap().trim().to_owned());
    match from_git {
        // Built from this checkout: its HEAD (build.rs reruns when HEAD moves).
        Some(head) => assert_eq!(commit, head),
        None => assert_eq!(commit, "unknown"),
    }
}

#[test]
fn completions_print_a_script_for_bash_zsh_and_fish() {
    let cases = [
        ("bash", "complete -F _syncbase"),
        ("zsh", "#compdef syncbase"),
        ("fish", "complete -c syncbase"),
    ];
    for (shell, marker) in cases {
        let script = stdout(
            &Command::new(BIN)
                .args(["completions", shell])
                .output()
                .unwrap(),
        );
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        assert!(script.contains("publish-invite"), "{shell}: sg verbs");
    }
    let refused = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "a bad command line");
    let error = String::from_utf8(refused.stderr).unwrap();
    assert!(
        error.contains("[possible values: bash, elvish, fish"),
        "{error}"
    );
}
