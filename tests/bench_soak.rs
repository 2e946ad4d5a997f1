//! `syncbase bench soak` run briefly through the built binary (issue 12, item 4): two nodes,
//! 100 writes a second each for 20 s. Its JSON lines parse and carry every field, the nodes
//! converge, and each store ends within the bound, 3 x live bytes + 16 MiB.

use std::process::Command;

use serde_json::Value;

const FIXED_BYTES: u64 = 16 << 20;
const LINE_FIELDS: [&str; 9] = [
    "t_s",
    "node",
    "writes",
    "store_bytes",
    "live_bytes",
    "ratio",
    "rss_bytes",
    "pending",
    "lag",
];
const SUMMARY_FIELDS: [&str; 12] = [
    "node",
    "first",
    "last",
    "slope_bytes_per_min",
    "levelled",
    "bound_bytes",
    "within_bound",
    "converged",
    "converge_s",
    "raw_lmdb_bytes",
    "store_vs_raw_lmdb",
    "rows",
];

fn run_soak() -> Vec<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_syncbase"))
        .args(["bench", "soak", "--minutes", "0.3333", "--rate", "100"])
        .args(["--every", "5", "--nodes", "2"])
        .output()
        .expect("the syncbase binary runs");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert!(
        output.status.success(),
        "bench soak failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn number(line: &Value, field: &str) -> f64 {
    line[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number in {line}"))
}

#[test]
fn a_short_soak_converges_within_the_bound() {
    let lines = run_soak();
    let (summaries, samples): (Vec<&Value>, Vec<&Value>) = lines
        .iter()
        .partition(|line| line["bench"] == "soak-summary");
    // A set at the start, one every 5 s, and one at the end: at least 5 per node.
    assert!(samples.len() >= 10, "{} sample lines", samples.len());
    for line in &samples {
        assert_eq!(line["bench"], "soak", "{line}");
        for field in LINE_FIELDS {
            number(line, field);
        }
        let expected =
            number(line, "store_bytes") / (number(line, "live_bytes") + 16.0 * 1048576.0);
        assert!((number(line, "ratio") - expected).abs() < 1e-9, "{line}");
    }
    assert_eq!(summaries.len(), 2, "one summary per node");
    for summary in summaries {
        for field in SUMMARY_FIELDS {
            assert!(summary.get(field).is_some(), "{field} missing in {summary}");
        }
        assert_eq!(summary["converged"], true, "{summary}");
        let last = &summary["last"];
        let writes = number(last, "writes");
        assert!(
            writes >= 1500.0,
            "only {writes} writes in 20 s at 100/s: {summary}"
        );
        let (store, live) = (number(last, "store_bytes"), number(last, "live_bytes"));
        eprintln!(
            "node {}: store {store} B, live {live} B, {writes} writes",
            summary["node"]
        );
        assert!(
            live > 0.0 && number(summary, "raw_lmdb_bytes") > live,
            "{summary}"
        );
        assert!(
            store as u64 <= 3 * live as u64 + FIXED_BYTES,
            "store {store} B over 3 x live {live} B + 16 MiB: {summary}"
        );
    }
}
