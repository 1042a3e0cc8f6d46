// The Rust tools of the fault and kill-loop tiers: the fault-injecting proxy (droppr-faultproxy)
// and the Rust upload client (droppr-upload), both built by scripts/test-e2e.sh.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the end-to-end tests through scripts/test-e2e.sh`);
  return value;
}

/**
 * Starts the proxy in front of the server. `faults` are its options without dashes, e.g.
 * `{ seed: 3, 'drop-mid-body': 0.05 }`. Returns `{ url, figures(), stop() }`; `figures()` asks
 * the proxy for its counters.
 */
export async function startFaultProxy(upstreamUrl, faults) {
  const args = ['--upstream', new URL(upstreamUrl).host];
  for (const [name, value] of Object.entries(faults)) args.push(`--${name}`, String(value));
  const child = spawn(need('DROPPR_E2E_FAULTPROXY_BIN'), args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const pending = [];
  lines.on('line', (line) => pending.shift()?.(JSON.parse(line)));
  const next = () => new Promise((resolve) => pending.push(resolve));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const { listen } = await Promise.race([
    next(),
    exited.then((code) => { throw new Error(`droppr-faultproxy exited with ${code}`); }),
  ]);
  return {
    url: `http://${listen}`,
    figures() {
      const answer = next();
      child.stdin.write('\n');
      return answer;
    },
    async stop() {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Runs droppr-upload on `file` to `uploadUrl` with extra `options` (e.g. `['--shuffle-seed', 3]`).
 * Resolves with its JSON report, or rejects with its error output.
 */
export function rustUpload(uploadUrl, file, options = []) {
  const child = spawn(need('DROPPR_E2E_CLIENT_BIN'), ['--url', uploadUrl, file, ...options.map(String)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const done = new Promise((resolve, reject) => {
    child.on('exit', (code) => {
      if (code === 0) resolve(JSON.parse(out));
      else reject(new Error(`droppr-upload ${file} exited with ${code}: ${err}`));
    });
  });
  return { pid: child.pid, done, kill: () => child.kill('SIGKILL') };
}
