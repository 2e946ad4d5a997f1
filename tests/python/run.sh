#!/usr/bin/env bash
# Runs the foreign-client (Python, pycapnp) test against a fresh in-memory syncbase node.
#
#   bash tests/python/run.sh            # builds the node with `cargo build --bin syncbase`
#   SYNCBASE_BIN=/path/to/syncbase bash tests/python/run.sh
#
# Env: SYNCBASE_BIN (skip the build, use this binary), PYVENV (virtualenv dir; default
# target/pyvenv), PYTHON (interpreter for the venv; default python3).
# Exit code: the test's (0 = every check passed).
set -euo pipefail

PYCAPNP_VERSION=2.2.4
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"
cd "$REPO"

log() { printf '[run.sh] %s\n' "$*" >&2; }

# ---- Python virtualenv with pycapnp ----
VENV="${PYVENV:-$REPO/target/pyvenv}"
VPY="$VENV/bin/python"
if [[ -x "$VPY" ]] && "$VPY" -c "import importlib.metadata as m, sys; sys.exit(m.version('pycapnp') != '$PYCAPNP_VERSION')" 2>/dev/null; then
  log "reusing virtualenv $VENV (pycapnp $PYCAPNP_VERSION)"
else
  log "creating virtualenv $VENV"
  mkdir -p "$(dirname "$VENV")"
  "${PYTHON:-python3}" -m venv --clear "$VENV"
  "$VPY" -m pip install --disable-pip-version-check --quiet "pycapnp==$PYCAPNP_VERSION"
fi

# ---- the node binary ----
if [[ -n "${SYNCBASE_BIN:-}" ]]; then
  BIN="$SYNCBASE_BIN"
else
  log "building: cargo build --bin syncbase"
  cargo build --bin syncbase >&2
  BIN="$REPO/target/debug/syncbase"
fi
[[ -x "$BIN" ]] || { log "node binary not found or not executable: $BIN"; exit 2; }

# ---- start the node ----
DIR="$(mktemp -d "${TMPDIR:-/tmp}/syncbase-pytest.XXXXXX")"
NODE_PID=""
cleanup() {
  local rc=$?
  if [[ -n "$NODE_PID" ]] && kill -0 "$NODE_PID" 2>/dev/null; then
    kill "$NODE_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -s "$DIR/node.log" ]]; then
    log "node log (last 40 lines):"
    tail -n 40 "$DIR/node.log" >&2 || true
  fi
  rm -rf "$DIR"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting $BIN serve --memory --data-dir $DIR --listen 127.0.0.1:0 --peer-listen 127.0.0.1:0"
"$BIN" serve --memory --data-dir "$DIR" --listen 127.0.0.1:0 --peer-listen 127.0.0.1:0 >"$DIR/node.log" 2>&1 &
NODE_PID=$!

# Wait (up to 30 s) for the node to record its address: "host:port\n".
ADDR=""
for _ in $(seq 300); do
  # Complete once its first line is terminated by the newline.
  if [[ -s "$DIR/node.addr" && "$(head -n 1 "$DIR/node.addr" | wc -l)" -eq 1 ]]; then
    ADDR="$(head -n 1 "$DIR/node.addr" | tr -d '[:space:]')"
    [[ -n "$ADDR" ]] && break
  fi
  if ! kill -0 "$NODE_PID" 2>/dev/null; then
    log "node exited before writing $DIR/node.addr"
    exit 2
  fi
  sleep 0.1
done
[[ -n "$ADDR" ]] || { log "timed out after 30 s waiting for $DIR/node.addr"; exit 2; }
for _ in $(seq 50); do [[ -s "$DIR/client.token" ]] && break; sleep 0.1; done
[[ -s "$DIR/client.token" ]] || { log "node wrote no $DIR/client.token"; exit 2; }
log "node pid $NODE_PID listening on $ADDR"

# ---- the README's example, then the test ----
# The example runs first, as a user runs it (from the repository's root, given the data
# dir), so the test's closing `N passed, M failed` stays the last line.
set +e
log "running examples/python/example.py --data-dir $DIR"
"$VPY" examples/python/example.py --data-dir "$DIR" >&2
EXAMPLE_RC=$?
"$VPY" "$SCRIPT_DIR/test_client.py" --addr "$ADDR" --token-file "$DIR/client.token" --schema-dir "$REPO/schema"
RC=$?
set -e
if [[ $EXAMPLE_RC -ne 0 ]]; then
  log "examples/python/example.py failed (exit $EXAMPLE_RC)"
  exit "$EXAMPLE_RC"
fi
exit $RC
