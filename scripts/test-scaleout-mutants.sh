#!/usr/bin/env bash
# Mutation check of the scale-out defences (optional, not part of `npm test`): builds the server once
# per mutant, each with one defence removed (cargo features of droppr-server that nothing else
# enables), and expects its test in server/tests/scaleout.rs to FAIL against it.
#   mutant-local-rate-limits  rate limits in each instance's memory only (no shared buckets in PostgreSQL)
#   mutant-no-name-lock       no lock across instances while a finished upload takes its name
#   mutant-local-outbox       each instance's hook events in its own droppr.db (no shared outbox)
#   mutant-local-part-claims  no claims of parts across instances (two may store one part number at once)
# Starts PostgreSQL and SeaweedFS through scripts/services.sh like the tier itself. Prints one line per
# mutant; exits 1 if any survives. About 1 minute per mutant (a rebuild of droppr-server, then its test).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/bootstrap.sh rust
bash scripts/services.sh install

survived=0
for pair in mutant-local-rate-limits:rate_limits_count_requests_on_every_instance \
  mutant-no-name-lock:races_between_two_instances_on_s3 \
  mutant-local-outbox:hook_events_are_delivered_once_by_any_live_instance \
  mutant-local-part-claims:races_between_two_instances_on_s3; do
  mutant=${pair%%:*} test=${pair#*:}
  printf '\n=== %s (%s)\n' "$mutant" "$test"
  # A build failure must not pass for a killed mutant: build first, then run.
  cargo test -q -p droppr-server --features "$mutant" --test scaleout --no-run
  log="target/scaleout-$mutant.log"
  if cargo test -q -p droppr-server --features "$mutant" --test scaleout -- --exact "$test" >"$log" 2>&1; then
    echo "SURVIVED: $mutant (the test passed without this defence; see $log)"
    survived=1
  else
    echo "killed: $mutant: $(grep -m1 -E "panicked at" -A2 "$log" | tr '\n' ' ' | cut -c1-300)"
  fi
done
exit "$survived"
