#!/usr/bin/env bash
# Browser tests of the uploader: wasm-bindgen-test in headless Chromium against the real server.
# Starts the release server on a free loopback port with a temporary data directory and test
# hooks, creates the upload links the tests use, compiles their URLs into the tests
# (option_env!), runs them, checks the uploaded files byte for byte on the server's disk, and
# stops the server by its PID whatever happens. Arguments go to wasm-pack test (e.g. `--test upload`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

cargo build --release -p droppr-server
server_bin="${CARGO_TARGET_DIR:-target}/release/droppr-server"

data_dir=$(mktemp -d -t droppr-wasm-tests.XXXXXX)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$data_dir"
}
trap cleanup EXIT

port=$(node scripts/wasm/free-port.mjs)
create_link() { # FOLDER EXTENSIONS [ARGS...] -> upload URL (absolute, on the address the server will bind)
  "$server_bin" request create --data-dir "$data_dir" --bind "127.0.0.1:$port" \
    --folder "$1" --extensions "$2" "${@:3}" | node scripts/wasm/json-field.mjs upload_url
}
open_url=$(create_link wasm-tests '*')
strict_url=$(create_link wasm-strict 'jpg,jpeg,png,mp4')
password_url=$(create_link wasm-tests '*' --password hook-secret)

"$server_bin" serve --data-dir "$data_dir" --bind "127.0.0.1:$port" --test-hooks \
  >"$data_dir/server.log" 2>&1 &
server_pid=$!
node scripts/wasm/wait-http.mjs "http://127.0.0.1:$port/healthz" 30

export DROPPR_TEST_SERVER="http://127.0.0.1:$port"
export DROPPR_TEST_UPLOAD_URL="$open_url"
export DROPPR_TEST_STRICT_URL="$strict_url"
export DROPPR_TEST_PASSWORD_URL="$password_url"
# The runner's timeout covers a whole test binary; retries wait real seconds.
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-240}"

status=0
started=$(date +%s)
# Compiled as the package ships (opt-level z, LTO, panic=abort: scripts/wasm/release-env.sh), not
# as a dev build; the shipped .wasm and glue themselves are what the end-to-end tier runs.
(source scripts/wasm/release-env.sh && wasm-pack test --headless --chrome --mode no-install --release uploader-wasm "$@") \
  || status=$?
echo "[test-wasm] browser tests took $(( $(date +%s) - started )) s (status $status)"

if [ "$status" -eq 0 ]; then
  echo "[test-wasm] checking the uploaded files on the server's disk"
  # Every test's file must be there, unless only some tests were asked for.
  required=()
  [ "$#" -eq 0 ] && required=(identical parallel retried retry-after paused resumed expired corrupt
    chunk-events hooked blob offline-open offline-resume checksummed)
  node scripts/wasm/verify-files.mjs "$data_dir/files/wasm-tests" "${required[@]}" || status=$?
fi
if [ "$status" -ne 0 ]; then
  echo "[test-wasm] server log (last 40 lines):"
  tail -n 40 "$data_dir/server.log" || true
fi
exit "$status"
