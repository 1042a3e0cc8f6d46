#!/usr/bin/env bash
# Mutation check of the power-cut tier (optional, not part of `npm test`): builds the server once per
# mutant, each with one durability defence removed (cargo features of droppr-server that nothing
# else enables), and expects server/tests/powercut.rs to FAIL against every one of them.
#   mutant-no-chunk-sync     no fdatasync of a chunk's bytes before its range is recorded
#   mutant-no-link-dir-sync  no fsync of the folder after the finished file is linked into it
#   mutant-no-mkdir-parent-sync  no fsync of a parent after a folder for finished files is made in it
# Needs root and /dev/fuse, like the tier itself. Prints one line per mutant; exits 1 if any survives.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/bootstrap.sh rust

survived=0
for mutant in mutant-no-chunk-sync mutant-no-link-dir-sync mutant-no-mkdir-parent-sync; do
  printf '\n=== %s\n' "$mutant"
  # A build failure must not pass for a killed mutant: build first, then run.
  cargo test -q -p droppr-server --features "$mutant" --test powercut --no-run
  log="target/powercut-$mutant.log"
  if cargo test -q -p droppr-server --features "$mutant" --test powercut -- --nocapture >"$log" 2>&1; then
    echo "SURVIVED: $mutant (the power-cut test passed without this defence; see $log)"
    survived=1
  else
    echo "killed: $mutant: $(grep -m1 -E "panicked|acknowledged range|not on disk|survives a power cut" -A1 "$log" | tr '\n' ' ' | cut -c1-300)"
  fi
done
exit "$survived"
