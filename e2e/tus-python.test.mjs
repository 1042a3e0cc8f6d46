// tuspy (PyPI, installed by scripts/bootstrap.sh into its venv) uploads to the tus endpoint with
// sha1 checksums, stops after two chunks and resumes from the server's offset (e2e/tus_tuspy.py).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { baseUrl, links, storedPath } from './support/env.mjs';
import { MiB, makeFile, sha256File } from './support/files.mjs';

const python = path.join(process.env.DROPPR_TUS_VENV || path.join(os.homedir(), '.cache/droppr/tus-venv'), 'bin/python');

test('tuspy uploads with checksums, stops, and resumes from where the server stands', async () => {
  const file = await makeFile('tus-python.bin', 5 * MiB + 99);
  const endpoint = `${baseUrl}/api/droppr/requests/${links.open.hash}/tus/`;
  const { stdout } = await promisify(execFile)(python, ['e2e/tus_tuspy.py', endpoint, file.path, file.name], { timeout: 60000 });
  const seen = JSON.parse(stdout.trim().split('\n').pop());
  assert.equal(seen.stopped_at, 2 * MiB);
  assert.equal(seen.resumed_from, 2 * MiB, 'the resumed uploader did not start from the server offset');
  assert.equal(seen.end, file.size);
  assert.equal(await sha256File(storedPath('open', file.name)), file.sha256, 'stored bytes differ');
});
