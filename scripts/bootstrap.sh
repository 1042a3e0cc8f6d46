#!/usr/bin/env bash
# Installs what `npm start` and `npm test` need on a fresh machine of this kind (Debian 12, root,
# registries only). Idempotent: each step checks first and prints what it does; a step that is
# already satisfied costs a version check. Pins are in ../shared/TOOLCHAIN.md and must move in
# lockstep with Cargo.lock (wasm-bindgen) and package.json (playwright-core).
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_PACK_VERSION=0.15.1
WASM_BINDGEN_VERSION=0.2.130
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '[bootstrap] %s\n' "$*"; }
need_bin() { command -v "$1" >/dev/null 2>&1; }
# Only what the caller asks for: `bootstrap.sh rust` for server-only work, no argument for everything.
want=${1:-all}

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  if [ "$want" = all ] || [ "$want" = wasm ]; then
    say "adding rust target wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
  fi
fi

if [ "$want" = all ] || [ "$want" = wasm ]; then
  if ! need_bin wasm-bindgen || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
    # Not --locked: its lock file pins a webpki-roots the registry here does not serve (TOOLCHAIN.md).
    say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 3 minutes)"
    cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION" --force
  fi
  if ! need_bin wasm-pack || [ "$(wasm-pack --version | awk '{print $2}')" != "$WASM_PACK_VERSION" ]; then
    say "installing wasm-pack $WASM_PACK_VERSION (about 4-6 minutes)"
    cargo install wasm-pack --version "$WASM_PACK_VERSION" --locked --force
  fi
fi

if [ "$want" = all ] || [ "$want" = browser ] || [ "$want" = wasm ]; then
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    say "installing Debian chromium and chromium-driver"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
fi

if [ "$want" = all ] || [ "$want" = rust ]; then
  # The power-cut tier mounts droppr-faultfs (FUSE): fusermount3 and /etc/fuse.conf come with fuse3
  # (root mounts directly, other users go through fusermount3).
  if ! need_bin fusermount3; then
    say "installing fuse3 (FUSE mount helper) for the power-cut tier"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq fuse3 >/dev/null
  fi
fi

if [ "$want" = all ] || [ "$want" = netpath ]; then
  # The emulated path of the benchmark and the lossy-path test: namespaces (iproute2), `ss`, and
  # gcc for the CUBIC preload library (bench/netpath/cc_preload.c).
  if ! need_bin ip || ! need_bin ss || ! need_bin gcc || [ ! -f /usr/include/dlfcn.h ]; then
    say "installing iproute2, gcc and libc6-dev"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq iproute2 gcc libc6-dev >/dev/null
  fi
  if [ ! -c /dev/net/tun ]; then
    say "no /dev/net/tun: the emulated path needs the kernel's TUN driver"
    exit 1
  fi
fi

if [ "$want" = all ] || [ "$want" = services ]; then
  # The scale-out tier (issue 11): PostgreSQL (apt) and SeaweedFS (PyPI), started per test run by
  # scripts/services.sh on free loopback ports.
  bash scripts/services.sh install
fi

if [ "$want" = all ] || [ "$want" = python ]; then
  # tuspy (PyPI) for the tus tier (e2e/tus-python.test.mjs), in its own venv.
  TUSPY_VERSION=1.1.0
  tus_venv="${DROPPR_TUS_VENV:-$HOME/.cache/droppr/tus-venv}"
  if [ "$("$tus_venv/bin/python" -c 'import importlib.metadata as m; print(m.version("tuspy"))' 2>/dev/null)" != "$TUSPY_VERSION" ]; then
    say "installing tuspy $TUSPY_VERSION into $tus_venv"
    python3 -m venv "$tus_venv"
    "$tus_venv/bin/pip" install -q "tuspy==$TUSPY_VERSION"
  fi
fi

# node_modules is current when it was installed from this exact lock file (a merge or checkout can
# change the lock without making it newer than the install).
if [ -f package-lock.json ]; then
  lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ "$(cat node_modules/.droppr-lock-sha256 2>/dev/null)" != "$lock_sum" ]; then
    say "installing npm packages (npm ci)"
    npm ci --no-audit --no-fund
    echo "$lock_sum" > node_modules/.droppr-lock-sha256
  fi
fi
say "ready"
