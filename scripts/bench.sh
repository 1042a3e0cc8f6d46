#!/usr/bin/env bash
# `npm run bench`: the benchmarks of ../shared/DESIGN.md, measured in one run (bench/README in
# docs/BENCHMARKS.md). Builds what is missing (release server, droppr-bench, the wasm package),
# checks the link emulator, runs the server ingest benchmark and the browser benchmark, then prints
# the tables and writes bench-out/{results.json,chart.svg,summary.md}.
#
#   npm run bench                         # everything (about 36 minutes on 2 cores)
#   npm run bench -- --quick              # smaller files and runs (about 13 minutes)
#   npm run bench -- --with-peers         # also install rustus 0.5.10 (once, about 7 minutes) for tus-js-client
#   npm run bench -- --only link,ingest   # some parts: link (the path self-check alone), ingest, browser, scaleout
#   npm run bench -- --only scaleout      # ingest through 1 vs 2 instances on one PostgreSQL + SeaweedFS (~2 min)
#   npm run bench -- --profiles P1,P2     # browser profiles (bench/profiles.json)
# rustus is used whenever it is installed (RUSTUS_BIN, or the cache below); only --with-peers installs it.
# Shaped profiles run over real TCP between network namespaces (bench/netpath.mjs): root, iproute2
# and gcc are needed (bootstrap.sh netpath installs the last two).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

quick=0
with_peers=0
only=link,ingest,browser,scaleout
profiles=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --with-peers) with_peers=1 ;;
    --only) only=$2; shift ;;
    --profiles) profiles=$2; shift ;;
    *) echo "[bench] unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
want() { [[ ",$only," == *",$1,"* ]]; }
say() { printf '[bench] %s\n' "$*" >&2; }

out=bench-out
mkdir -p "$out"
rm -f "$out"/{link-check,ingest,browser,scaleout,results}.json
printf '{"started": "%s", "loadavg_start": "%s", "quick": %s, "with_peers": %s}\n' \
  "$(date -u +%FT%TZ)" "$(cut -d' ' -f1-3 /proc/loadavg)" \
  "$([ $quick = 1 ] && echo true || echo false)" "$([ $with_peers = 1 ] && echo true || echo false)" >"$out/run-info.json"
started=$(date +%s)

target_dir="${CARGO_TARGET_DIR:-target}"
say "building the release server and droppr-bench"
cargo build --release -p droppr-server -p droppr-bench
server_bin="$target_dir/release/droppr-server"
bench_bin="$target_dir/release/droppr-bench"

if want link || want browser; then
  bash scripts/bootstrap.sh netpath
fi

if want browser; then
  if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/tus-js-client ]; then
    npm ci --no-audit --no-fund
  fi
  if [ ! -x /usr/bin/chromium ]; then
    bash scripts/bootstrap.sh browser
  fi
  # The uploader as the browser gets it: rebuilt when missing or older than its sources.
  pkg_wasm=uploader-wasm/pkg/droppr_uploader_bg.wasm
  if [ ! -f "$pkg_wasm" ] || [ -n "$(find uploader-wasm/src protocol/src uploader-wasm/Cargo.toml -newer "$pkg_wasm" 2>/dev/null | head -n 1)" ]; then
    bash scripts/bootstrap.sh wasm
    bash scripts/build-wasm.sh
  fi
  rustus_root="${XDG_CACHE_HOME:-$HOME/.cache}/droppr-bench/rustus-0.5.10"
  rustus_bin="${RUSTUS_BIN:-$rustus_root/bin/rustus}"
  if [ ! -x "$rustus_bin" ] && [ $with_peers = 1 ]; then
    say "installing rustus 0.5.10 into $rustus_root (about 7 minutes, once)"
    cargo install rustus --version 0.5.10 --root "$rustus_root"
  fi
fi

# The browser part checks each profile's path just before its runs; alone, `link` checks them all.
if want link && ! want browser; then
  say "emulated path self-check"
  secs=3; [ $quick = 1 ] && secs=2
  path_args=(--bench-bin "$bench_bin" --seconds "$secs" --out "$out/link-check.json")
  [ -n "$profiles" ] && path_args+=(--profiles "$profiles")
  node bench/path-check.mjs "${path_args[@]}" ||
    say "WARNING: a path missed its settings (machine too busy?): see the table"
fi

if want ingest; then
  say "server ingest"
  ingest_args=(ingest --server-bin "$server_bin" --work-dir "$out/ingest-data" --out "$out/ingest.json")
  [ $quick = 1 ] && ingest_args+=(--quick)
  "$bench_bin" "${ingest_args[@]}"
fi

if want scaleout; then
  # Real PostgreSQL and SeaweedFS on loopback (scripts/services.sh), stopped by PID on any exit.
  say "scale-out: ingest through 1 and 2 instances on one PostgreSQL and one SeaweedFS"
  bash scripts/bootstrap.sh services
  services_dir=$(mktemp -d -t droppr-bench-services.XXXXXX)
  trap 'bash scripts/services.sh stop "$services_dir"; rm -rf "$services_dir"' EXIT
  service_vars=$(bash scripts/services.sh start "$services_dir" all)
  eval "$service_vars"
  scaleout_args=(scaleout --server-bin "$server_bin" --work-dir "$out/scaleout-data" --out "$out/scaleout.json"
    --database "$DROPPR_TEST_DATABASE" --store "s3://$DROPPR_TEST_S3_BUCKET?endpoint=$DROPPR_TEST_S3_ENDPOINT"
    --services-dir "$services_dir")
  [ $quick = 1 ] && scaleout_args+=(--mib 160 --rounds 1)
  "$bench_bin" "${scaleout_args[@]}"
  bash scripts/services.sh stop "$services_dir"
  rm -rf "$services_dir"
  trap - EXIT
fi

if want browser; then
  say "browser uploads"
  browser_args=(--bench-bin "$bench_bin" --server-bin "$server_bin" --out "$out/browser.json" --server-log "$out/browser-server.log"
    --path-check-out "$out/link-check.json")
  rm -f "$out/browser-server.log"
  [ -x "$rustus_bin" ] && browser_args+=(--rustus-bin "$rustus_bin")
  [ $quick = 1 ] && browser_args+=(--quick)
  [ -n "$profiles" ] && browser_args+=(--profiles "$profiles")
  node bench/browser.mjs "${browser_args[@]}"
fi

node bench/report.mjs "$out"
say "done in $(( $(date +%s) - started )) s"
