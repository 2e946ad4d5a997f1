#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 120) and prints the executions per target.
# Not run by CI. Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`).
#
#   fuzz/run.sh 120              # all targets
#   fuzz/run.sh 60 delta_page    # some targets
#
# Each run starts from the committed seeds (fuzz/corpus/<target>) and keeps what it finds in
# fuzz/target/corpus-work/<target> (not committed). A crash stops its target and is written
# to fuzz/artifacts/<target>/; reproduce it with
#   cargo +nightly fuzz run -s none -a <target> fuzz/artifacts/<target>/<file>
# Built without a sanitizer (the targets run safe Rust; panics are what they look for) and
# with debug assertions, so an arithmetic overflow is a crash too.
set -uo pipefail
cd "$(dirname "$0")"
seconds="${1:-120}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(delta_page syncgroup_page knowledge store_keys records)
flags=(-s none -a)
cargo +nightly fuzz build "${flags[@]}" || exit 1
status=0
for target in "${targets[@]}"; do
    work="target/corpus-work/$target"
    mkdir -p "$work" "artifacts/$target"
    log="target/fuzz-$target.log"
    cargo +nightly fuzz run "${flags[@]}" "$target" "$work" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    if [ $rc -eq 0 ]; then
        echo "$target: ${execs:-?} executions in ${seconds} s, no crash"
    else
        status=1
        echo "$target: CRASH after ${execs:-?} executions (exit $rc); see fuzz/$log and fuzz/artifacts/$target/"
    fi
done
exit $status
