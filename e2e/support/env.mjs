// What scripts/test-e2e.sh hands the tests: the running server, its data directory, how to
// restart it, the upload links it created, and where artifacts go.

import path from 'node:path';

function need(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run the end-to-end tests through scripts/test-e2e.sh`);
  }
  return value;
}

export const baseUrl = need('DROPPR_E2E_URL');
export const dataDir = need('DROPPR_E2E_DATA_DIR');
export const serverBin = need('DROPPR_E2E_SERVER_BIN');
/** The arguments the server was started with, so a restart is the same server. */
export const serverArgs = JSON.parse(need('DROPPR_E2E_SERVER_ARGS'));
/** The file holding the running server's PID; the script's trap stops whatever it names. */
export const pidFile = need('DROPPR_E2E_PIDFILE');
export const serverLog = need('DROPPR_E2E_SERVER_LOG');
/** `{name: {hash, folder}}` of the links created for the tests. */
export const links = JSON.parse(need('DROPPR_E2E_LINKS'));
/** Scratch space for generated files (removed by the script). */
export const workDir = need('DROPPR_E2E_WORK');
export const artifactsDir = path.resolve(process.env.DROPPR_E2E_ARTIFACTS || 'artifacts');

/** Where a finished upload of `link` lands. */
export function storedPath(link, relPath) {
  return path.join(dataDir, 'files', links[link].folder, relPath);
}
