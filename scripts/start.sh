#!/usr/bin/env bash
# `npm start`: install what is missing, build, make sure a demo upload request exists, serve the demo
# page and the API on 127.0.0.1:8080 with the embedded default storage in ./data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/build.sh

BIN="${CARGO_TARGET_DIR:-target}/release/droppr-server"
DATA_DIR=${DROPPR_DATA_DIR:-./data}
BIND=${DROPPR_BIND:-127.0.0.1:8080}
export DROPPR_DATA_DIR="$DATA_DIR" DROPPR_BIND="$BIND"

demo=$("$BIN" request list | head -n 1)
if [ -z "$demo" ]; then
  echo "[start] creating a demo upload request (folder 'demo', any file type)"
  demo=$("$BIN" request create --folder demo --extensions '*')
fi
hash=$(node -e 'console.log(JSON.parse(process.argv[1]).hash)' "$demo")
upload_url=$(node -e 'console.log(JSON.parse(process.argv[1]).upload_url)' "$demo")

www_args=()
[ -d www ] && www_args=(--www-dir www)
[ -d uploader-wasm/pkg ] && www_args+=(--pkg-dir uploader-wasm/pkg)
echo
echo "  Droppr is running."
echo "  Demo page:   http://$BIND/?request=$hash"
echo "  Upload URL:  $upload_url"
echo "  Files land in $DATA_DIR/files/demo/. Stop with Ctrl-C."
echo
exec "$BIN" serve "${www_args[@]}"
