// Test files: random bytes (so a misplaced chunk can never go unnoticed), hashed as they are
// written, and the same hash of what the server stored.

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, utimes } from 'node:fs/promises';
import path from 'node:path';

import { workDir } from './env.mjs';

export const MiB = 1024 * 1024;

/**
 * Writes `size` random bytes to a new file in the scratch directory, optionally starting with
 * `head` (e.g. the magic bytes of a real file type). Returns `{path, name, size, sha256}`.
 */
export async function makeFile(name, size, head = Buffer.alloc(0)) {
  const file = path.join(workDir, name);
  const handle = await open(file, 'w');
  const hash = createHash('sha256');
  try {
    let written = 0;
    const write = async (buffer) => {
      hash.update(buffer);
      await handle.write(buffer);
      written += buffer.length;
    };
    if (head.length) await write(head.subarray(0, size));
    while (written < size) await write(randomBytes(Math.min(4 * MiB, size - written)));
  } finally {
    await handle.close();
  }
  // A fixed modification time: re-picking the file after a reload must look like the same file.
  const stamp = new Date('2026-01-02T03:04:05Z');
  await utimes(file, stamp, stamp);
  return { path: file, name, size, sha256: hash.digest('hex') };
}

export function sha256File(file) {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(file)
      .on('data', (piece) => hash.update(piece))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/**
 * The whole-file composite checksum computed here, from the file's bytes and the part boundaries
 * (inclusive `{start, end}`): SHA-256 over the parts' binary SHA-256 digests in offset order,
 * `sha256:<hex>-<parts>` (docs/PROTOCOL.md). Only the boundaries come from elsewhere.
 */
export async function compositeOfFile(file, parts) {
  const handle = await open(file, 'r');
  const outer = createHash('sha256');
  try {
    for (const { start, end } of [...parts].sort((a, b) => a.start - b.start)) {
      const inner = createHash('sha256');
      for (let at = start; at <= end;) {
        const buffer = Buffer.alloc(Math.min(4 * MiB, end + 1 - at));
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, at);
        if (bytesRead === 0) throw new Error(`${file} ends before byte ${at}`);
        inner.update(buffer.subarray(0, bytesRead));
        at += bytesRead;
      }
      outer.update(inner.digest());
    }
  } finally {
    await handle.close();
  }
  return `sha256:${outer.digest('hex')}-${parts.length}`;
}
