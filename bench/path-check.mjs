// The emulated path's self-check on its own (without the browser runs): for each shaped profile of
// bench/profiles.json, namespaces and forwarder up, `droppr-bench path-probe` (RTT and loss by
// UDP pings, rate over 1 and 6 CUBIC connections), everything down again. Exit 1 when a profile
// is out of tolerance.
//
// Usage: node bench/path-check.mjs --bench-bin B [--profiles P1,P4] [--seconds 3] [--out F]
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { pathUp, root, selfCheck } from './netpath.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : dflt; };
const benchBin = opt('bench-bin', join(process.env.CARGO_TARGET_DIR || join(root, 'target'), 'release/droppr-bench'));
const only = opt('profiles', null);
const seconds = Number(opt('seconds', '3'));
const out = opt('out', null);

const profiles = JSON.parse(readFileSync(join(root, 'bench/profiles.json'), 'utf8'))
  .filter((p) => p.rate_mbit || p.rtt_ms || p.loss_pct)
  .filter((p) => !only || only.split(',').includes(p.name));
const checks = [];
for (const profile of profiles) {
  const path = await pathUp(benchBin, profile);
  try {
    const c = await selfCheck(benchBin, profile, seconds);
    checks.push(c);
    console.error(`[path-check] ${profile.name} (${profile.label}): RTT ${c.rtt_ms_median.toFixed(1)} ms (p95 ${c.rtt_ms_p95.toFixed(1)}), `
      + `loss ${c.loss_pct_measured.toFixed(2)} % (${c.pings_lost}/${c.pings_sent} pings), 1 connection ${c.one_connection_mbit.toFixed(1)} Mbit/s, `
      + `6 connections ${c.six_connections_mbit.toFixed(1)} Mbit/s, ${c.congestion_control}: ${c.ok ? 'ok' : `OUT OF TOLERANCE: ${c.checks.join('; ')}`}`);
  } finally {
    await path.down();
  }
}
if (out) writeFileSync(out, JSON.stringify(checks, null, 2) + '\n');
process.exit(checks.every((c) => c.ok) ? 0 : 1);
