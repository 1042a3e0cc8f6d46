#!/usr/bin/env bash
# End-to-end tests: the demo page in Debian's Chromium (playwright-core), against the real
# release server. Builds what is missing, starts the server on a free loopback port with a
# temporary data directory and test hooks, creates the upload links the tests use, runs
# `node --test` on e2e/*.test.mjs one file at a time (one test kills and restarts the server),
# and stops the server by its PID whatever happens. Screenshots land in artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

target_dir="${CARGO_TARGET_DIR:-target}"
server_bin="${DROPPR_SERVER_BIN:-$target_dir/release/droppr-server}"
if [ -z "${DROPPR_SERVER_BIN:-}" ]; then
  cargo build --release -p droppr-server
fi
# The fault and kill-loop tiers drive the Rust client and the fault proxy as well.
client_bin="${DROPPR_CLIENT_BIN:-$target_dir/release/droppr-upload}"
faultproxy_bin="${DROPPR_FAULTPROXY_BIN:-$target_dir/release/droppr-faultproxy}"
if [ -z "${DROPPR_CLIENT_BIN:-}" ] || [ -z "${DROPPR_FAULTPROXY_BIN:-}" ]; then
  cargo build --release -p droppr-client -p droppr-proof
fi
if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund
fi

work=$(mktemp -d -t droppr-e2e.XXXXXX)
# The page imports the wasm package exactly as it ships: packed with `npm pack` (built first when
# missing or older than its sources) and unpacked; the Vite and webpack apps are built from the
# same tarball (e2e/package.test.mjs).
bash scripts/pack-package.sh "$work/package"
data_dir="$work/data"
pid_file="$work/server.pid"
server_log="$work/server.log"
mkdir -p "$data_dir" "$work/files" artifacts
stop_server() {
  # The tests may have restarted the server: the pid file names the one running now.
  if [ -s "$pid_file" ]; then
    pid=$(cat "$pid_file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT

port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
bind="127.0.0.1:$port"
create_link() { # FOLDER [request create options...] -> {"hash":..., "folder":...}
  "$server_bin" request create --data-dir "$data_dir" --bind "$bind" --folder "$@" \
    | node -e 'let s = ""; process.stdin.on("data", (d) => s += d).on("end", () => { const r = JSON.parse(s); console.log(JSON.stringify({ hash: r.hash, folder: r.folder })); })'
}
links=$(printf '{"open": %s, "password": %s, "strict": %s, "lockout": %s}' \
  "$(create_link e2e --extensions '*')" \
  "$(create_link e2e-password --password 'correct horse' --extensions '*')" \
  "$(create_link e2e-strict --max-size 1048576 --extensions 'jpg,png')" \
  "$(create_link e2e-lockout --password 'battery staple' --extensions '*')")

server_args=(serve --data-dir "$data_dir" --bind "$bind" --www-dir www --pkg-dir "$work/package/package" --test-hooks)
"$server_bin" "${server_args[@]}" >>"$server_log" 2>&1 &
echo $! >"$pid_file"
disown  # its end (even by SIGKILL in a test) is not a job for this shell to report

export DROPPR_E2E_URL="http://$bind"
export DROPPR_E2E_DATA_DIR="$data_dir"
export DROPPR_E2E_SERVER_BIN="$server_bin"
DROPPR_E2E_SERVER_ARGS=$(node -e 'console.log(JSON.stringify(process.argv.slice(1)))' "${server_args[@]}")
export DROPPR_E2E_SERVER_ARGS
export DROPPR_E2E_PIDFILE="$pid_file"
export DROPPR_E2E_SERVER_LOG="$server_log"
export DROPPR_E2E_LINKS="$links"
export DROPPR_E2E_WORK="$work/files"
export DROPPR_E2E_ARTIFACTS="$PWD/artifacts"
export DROPPR_E2E_CLIENT_BIN="$client_bin"
export DROPPR_E2E_FAULTPROXY_BIN="$faultproxy_bin"
export DROPPR_E2E_PACKAGE="$work/package"

node -e '
  const deadline = Date.now() + 15000;
  const poll = () => fetch(process.argv[1]).then((r) => { if (!r.ok) throw r; }).catch(() => {
    if (Date.now() > deadline) { console.error("[test-e2e] the server did not start"); process.exit(1); }
    setTimeout(poll, 100);
  });
  poll();' "$DROPPR_E2E_URL/healthz"

status=0
started=$(date +%s)
node --test --test-concurrency=1 --test-reporter=spec "${@:-e2e/}" || status=$?
echo "[test-e2e] end-to-end tests took $(( $(date +%s) - started )) s (status $status); screenshots in artifacts/"
if [ "$status" -ne 0 ]; then
  echo "[test-e2e] server log (last 40 lines):"
  tail -n 40 "$server_log" || true
fi
exit "$status"
