//! `syncbase sim` as a user runs it: a small sweep reports what it ran, and conflicting or
//! out-of-range flags are refused by the parser instead of being ignored.

use std::process::Command;

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_syncbase"))
        .arg("sim")
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn a_sweep_reports_the_jobs_it_ran_not_more_than_its_seeds() {
    let out = sim(&[
        "--seeds",
        "2",
        "--nodes",
        "3",
        "--operations",
        "20",
        "--jobs",
        "64",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("\"seeds\":2,\"passed\":2,\"failed\":0"),
        "{stdout}"
    );
    assert!(stdout.contains("\"jobs\":2,"), "{stdout}");
}

#[test]
fn a_replay_refuses_a_sweep_flag_and_nodes_out_of_range() {
    for args in [
        &["--seed", "1", "--first", "5"][..],
        &["--seed", "1", "--seeds", "5"][..],
        &["--nodes", "2"][..],
        &["--trace"][..],
    ] {
        let out = sim(args);
        assert_eq!(out.status.code(), Some(2), "{args:?} is a usage error");
        assert!(!out.stderr.is_empty(), "{args:?} says why");
    }
}
