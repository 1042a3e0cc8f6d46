// The upload link (a Droppr "request"): reading its code from what people paste, and asking the
// server what it accepts.

import { formatBytes, formatExpiry } from './format.js';

const HASH = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * The request code from a bare code, a page URL with `?request=`, or an API or share URL
 * (`.../requests/{hash}/...`, `.../request/{hash}`). Null when nothing fits.
 */
export function parseRequestCode(text) {
  const value = (text ?? '').trim();
  if (!value) return null;
  if (HASH.test(value)) return value;
  let url;
  try {
    url = new URL(value, window.location.href);
  } catch {
    return null;
  }
  const fromQuery = url.searchParams.get('request');
  if (fromQuery && HASH.test(fromQuery)) return fromQuery;
  const match = url.pathname.match(/\/requests?\/([A-Za-z0-9_-]{1,64})(?:\/|$)/);
  return match ? match[1] : null;
}

/** The upload URL the uploader talks to (relative, so it follows the page's origin). */
export function uploadUrlFor(code) {
  return `/api/droppr/requests/${encodeURIComponent(code)}/upload-chunk`;
}

/**
 * Asks the server about a link. Resolves to `{ok: true, info}` or `{ok: false, status, code}`
 * (status 0 when the server could not be reached).
 */
export async function fetchLinkInfo(code, signal) {
  let response;
  try {
    response = await fetch(`/api/droppr/requests/${encodeURIComponent(code)}`, {
      headers: { Accept: 'application/json' },
      signal,
    });
  } catch (error) {
    if (error?.name === 'AbortError') throw error;
    return { ok: false, status: 0, code: 'network-error' };
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) return { ok: false, status: response.status, code: body?.code ?? '' };
  if (!body || typeof body !== 'object') return { ok: false, status: 502, code: '' };
  return { ok: true, info: body };
}

/** A calm sentence or two about what the link takes. */
export function describeLink(info) {
  const extensions = info.allowed_extensions ?? [];
  const types = extensions.length === 0 || extensions.includes('*')
    ? 'Any type of file'
    : `${extensions.map((e) => `.${e}`).join(', ')} files`;
  const size = info.max_file_size > 0 ? `up to ${formatBytes(info.max_file_size)} each` : 'any size';
  const sentences = [`${types}, ${size}.`];
  if (info.folder) sentences.push(`Files go to “${info.folder}”.`);
  sentences.push(`The link ${formatExpiry(info.expires_in)}.`);
  return sentences.join(' ');
}

/** The `accept` attribute for the file picker: a hint only, the server decides. */
export function acceptAttribute(info) {
  const extensions = info?.allowed_extensions ?? [];
  if (extensions.length === 0 || extensions.includes('*')) return '';
  return extensions.map((e) => `.${e}`).join(',');
}
