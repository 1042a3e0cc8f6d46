// Unfinished uploads, as the uploader remembers them in localStorage (one record per file,
// keyed by upload URL, name, size and lastModified). The record is only a hint; the server's
// answer about the session is the truth, so every listed upload is checked with it.

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * The records of `uploadUrl` that the uploader would still use.
 * @returns {{key: string, uploadId: string, name: string, size: number, lastModified: number, timestamp: number}[]}
 */
export function listUnfinished(prefix, uploadUrl) {
  const found = [];
  let storage;
  try {
    storage = window.localStorage;
  } catch {
    return found; // storage disabled: nothing can be resumed, nothing to list
  }
  for (let i = 0; i < storage.length; i += 1) {
    const key = storage.key(i);
    if (!key || !key.startsWith(prefix)) continue;
    let record;
    try {
      record = JSON.parse(storage.getItem(key) ?? '');
    } catch {
      continue;
    }
    if (!record || typeof record !== 'object') continue;
    const { uploadId, name, size, lastModified, timestamp } = record;
    if (record.uploadUrl !== uploadUrl || typeof uploadId !== 'string' || typeof name !== 'string') continue;
    if (!Number.isFinite(size) || !Number.isFinite(timestamp) || Date.now() - timestamp > DAY_MS) continue;
    found.push({ key, uploadId, name, size, lastModified: Number(lastModified) || 0, timestamp });
  }
  return found.sort((a, b) => b.timestamp - a.timestamp);
}

/** The record a picked file would resume, if any. */
export function recordFor(records, file, relPath) {
  const name = relPath || file.name;
  const lastModified = Math.floor(file.lastModified || 0);
  return records.find((r) => r.name === name && r.size === file.size && r.lastModified === lastModified) ?? null;
}

/**
 * How far the server got with a session: `{received, size, complete}`, `{gone: true}` when the
 * server no longer has it, or null when it could not be asked.
 */
export async function serverProgress(uploadUrl, uploadId) {
  let response;
  try {
    response = await fetch(`${uploadUrl}?upload_id=${encodeURIComponent(uploadId)}`, {
      headers: { Accept: 'application/json' },
    });
  } catch {
    return null;
  }
  if (response.status === 404) return { gone: true };
  if (!response.ok) return null;
  try {
    const status = await response.json();
    return { received: status.received_bytes ?? 0, size: status.size ?? 0, complete: Boolean(status.complete) };
  } catch {
    return null;
  }
}

/** Drops an unfinished upload: the server frees its space, the browser forgets it. */
export async function forget(uploadUrl, record) {
  removeRecord(record.key);
  try {
    await fetch(uploadUrl, { method: 'DELETE', headers: { 'X-Upload-Id': record.uploadId } });
  } catch {
    // The server sweeps idle sessions on its own; nothing else to do.
  }
}

export function removeRecord(key) {
  try {
    window.localStorage.removeItem(key);
  } catch {
    // storage disabled
  }
}
