// What to tell people when an upload stops. Branches on the error's stable `code` (and HTTP
// `status`), never on its text; the server's own text is only a fallback.
//
// `scope` says what the failure means for the rest of the queue:
//   'file'    only this file is refused (too large, wrong type): the next file goes on;
//   'link'    the link itself refuses (password, expired): every file would fail the same way,
//             so the queue waits until the person fixes it;
//   'network' the server could not be reached: the queue waits, progress is kept;
//   'aborted' the person cancelled.

import { formatBytes } from './format.js';

function extensionOf(name) {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : '';
}

function allowedList(info) {
  const list = (info?.allowed_extensions ?? []).filter((e) => e !== '*');
  return list.map((e) => `.${e}`).join(', ');
}

/**
 * @param {{code?: string, status?: number, message?: string}} error from the uploader
 * @param {{file: File, info: object | null}} context
 * @returns {{text: string, scope: 'file' | 'link' | 'network' | 'aborted', focus?: 'password' | 'captcha'}}
 */
export function explainFailure(error, { file, info }) {
  const code = error?.code ?? '';
  const status = error?.status ?? 0;
  switch (code) {
    case 'aborted':
      return { text: 'Cancelled. The partial upload was removed from the server.', scope: 'aborted' };
    case 'password-required':
      return { text: 'This link needs a password. Enter it above, then press Retry.', scope: 'link', focus: 'password' };
    case 'wrong-password':
      return { text: 'Wrong password. Check it above, then press Retry.', scope: 'link', focus: 'password' };
    case 'locked-out':
      return { text: 'Too many wrong passwords. The server accepts new attempts after 15 minutes.', scope: 'link' };
    case 'captcha-required':
      return { text: 'This link asks for a captcha. Solve it above; the upload then goes on.', scope: 'link', focus: 'captcha' };
    case 'captcha-invalid':
      return { text: 'The captcha was not accepted (it may have expired). Solve it again above; the upload then goes on.', scope: 'link', focus: 'captcha' };
    case 'request-expired':
      return { text: 'This upload link has expired. Ask whoever sent it for a new one.', scope: 'link' };
    case 'request-not-found':
    case 'bad-request-hash':
      return { text: 'This upload link does not exist (any more). Check that you copied it whole.', scope: 'link' };
    case 'file-too-large': {
      const limit = info?.max_file_size ? ` This link takes files up to ${formatBytes(info.max_file_size)}` : '';
      return { text: `Too large: this file is ${formatBytes(file.size)}.${limit}${limit ? '.' : ''}`, scope: 'file' };
    }
    case 'type-not-allowed': {
      const ext = extensionOf(file.name);
      const allowed = allowedList(info);
      const what = ext ? `.${ext} files are` : 'Files without an extension are';
      return { text: `${what} not accepted by this link.${allowed ? ` Allowed: ${allowed}.` : ''}`, scope: 'file' };
    }
    case 'missing-extension': {
      const allowed = allowedList(info);
      return { text: `This link only takes files with a known extension${allowed ? ` (${allowed})` : ''}; this one has none.`, scope: 'file' };
    }
    case 'content-mismatch':
      return { text: `The contents of this file do not match its .${extensionOf(file.name)} extension, so the server refused it.`, scope: 'file' };
    case 'bad-path':
    case 'missing-name':
      return { text: 'The server cannot store a file under this name. Rename it and try again.', scope: 'file' };
    case 'chunk-too-large':
      return { text: 'The server refused the chunk size. Reload the page and try again.', scope: 'file' };
    case 'insufficient-storage':
      return { text: 'The server is out of space. Try again later or tell whoever sent the link.', scope: 'link' };
    case 'rate-limited':
      return { text: 'The server is busy and asked us to slow down. Press Retry in a minute; your progress is kept.', scope: 'network' };
    case 'retries-exhausted':
      return {
        text: 'The server could not be reached, even after several tries. Your progress is kept: press Retry when the connection is back.',
        scope: 'network',
      };
    case 'unreachable':
      return {
        text: 'The server did not answer at all. Check your connection; if it works, the server may not allow '
          + 'uploads from this page (CORS). Press Retry to try again.',
        scope: 'network',
      };
    case 'network-error':
      return { text: 'The connection failed. Your progress is kept: press Retry.', scope: 'network' };
    case 'server-inconsistent':
      return { text: 'The server lost track of this upload. Press Retry to start it again.', scope: 'file' };
    default:
      break;
  }
  if (status === 401) return { text: 'The server refused the password for this link.', scope: 'link', focus: 'password' };
  if (status === 403) return { text: 'The server does not allow uploads to this link from here.', scope: 'link' };
  if (status === 410) return { text: 'This upload link has expired. Ask whoever sent it for a new one.', scope: 'link' };
  if (status === 413) return { text: `Too large for this link (${formatBytes(file.size)}).`, scope: 'file' };
  if (status === 415) return { text: 'This type of file is not accepted by this link.', scope: 'file' };
  if (status === 429) return { text: 'The server is busy. Press Retry in a minute; your progress is kept.', scope: 'network' };
  if (status >= 500) return { text: 'The server had a problem. Press Retry; your progress is kept.', scope: 'network' };
  const detail = error?.message ? ` (${error.message})` : '';
  return { text: `The upload stopped${detail}.`, scope: 'file' };
}

/** What the link-info request's failure means, for the link card. */
export function explainLinkFailure(status, code) {
  if (code === 'request-expired' || status === 410) return 'This upload link has expired. Ask whoever sent it for a new one.';
  if (code === 'request-not-found' || status === 404) return 'No upload link with this code exists. Check that you copied it whole.';
  if (code === 'bad-request-hash' || status === 400) return 'That does not look like an upload link or code.';
  if (status === 429) return 'The server is busy. Try again in a minute.';
  if (status >= 500) return 'The server had a problem. Try again in a moment.';
  if (status === 0) return 'The server could not be reached. Check your connection and press Open again.';
  return `The server refused this link (HTTP ${status}).`;
}
