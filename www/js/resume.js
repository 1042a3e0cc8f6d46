// Unfinished uploads: the package's `findUnfinishedUploads(uploadUrl)` lists the records it would
// resume (its own rules); a record is only a hint, so every listed upload is checked with the
// server, whose answer about the session is the truth.

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
