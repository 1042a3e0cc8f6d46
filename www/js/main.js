// The demo page: choose an upload link, drop files, watch them go. Plain ES modules, no bundler;
// the uploader is the wasm package served at /pkg.

import { acceptAttribute, describeLink, fetchLinkInfo, parseRequestCode, uploadUrlFor } from './link.js';
import { explainLinkFailure } from './messages.js';
import { formatAge, formatBytes, percentOf } from './format.js';
import { forget, recordFor, removeRecord, serverProgress } from './resume.js';
import { UploadQueue } from './queue.js';
import { CaptchaSlot } from './captcha.js';
import { ItemView } from './view.js';

const $ = (id) => document.getElementById(id);
const el = {
  banner: $('banner'),
  linkForm: $('link-form'),
  linkInput: $('request-input'),
  linkButton: $('link-form').querySelector('button'),
  linkStatus: $('link-status'),
  passwordForm: $('password-form'),
  password: $('password-input'),
  passwordToggle: $('password-toggle'),
  dropZone: $('drop-zone'),
  choose: $('choose-button'),
  fileInput: $('file-input'),
  dropHint: $('drop-hint'),
  resumeCard: $('resume-card'),
  resumeList: $('resume-list'),
  queueCard: $('queue-card'),
  queueList: $('queue'),
  queueSummary: $('queue-summary'),
  queueHold: $('queue-hold'),
  clearFinished: $('clear-finished'),
  template: $('upload-template'),
};

const captcha = new CaptchaSlot(
  { box: $('captcha-box'), slot: $('captcha-slot'), message: $('captcha-message') },
  () => retryLinkFailures(),
);

const state = {
  /** The wasm package's exports once loaded. */
  uploader: null,
  code: null,
  info: null,
  /** Unfinished uploads of this link, from localStorage, with what the server says. */
  unfinished: [],
  queue: null,
  views: new Map(),
  linkRequest: null,
};

// ---------------------------------------------------------------------------------------------
// Banner: problems of the page as a whole (the uploader did not load, the browser is offline).

const bannerReasons = new Map();
function setBanner(reason, text) {
  if (text) bannerReasons.set(reason, text);
  else bannerReasons.delete(reason);
  const texts = [...bannerReasons.values()];
  el.banner.hidden = texts.length === 0;
  el.banner.textContent = texts.join(' ');
}

window.addEventListener('offline', () => setBanner('offline', 'You are offline. Uploads wait and go on by themselves when the connection is back.'));
window.addEventListener('online', () => setBanner('offline', null));
if (!navigator.onLine) window.dispatchEvent(new Event('offline'));

// ---------------------------------------------------------------------------------------------
// The link.

function setLinkStatus(text, tone) {
  el.linkStatus.textContent = text;
  el.linkStatus.dataset.tone = tone ?? '';
}

async function openLink(code) {
  state.linkRequest?.abort();
  const request = new AbortController();
  state.linkRequest = request;
  state.code = null;
  state.info = null;
  el.passwordForm.hidden = true;
  captcha.hide();
  updateDropZone();
  setLinkStatus('Looking up the link…', 'info');
  let answer;
  try {
    answer = await fetchLinkInfo(code, request.signal);
  } catch {
    return; // superseded by a newer lookup
  }
  if (state.linkRequest !== request) return;
  if (!answer.ok) {
    el.linkInput.setAttribute('aria-invalid', 'true');
    setLinkStatus(explainLinkFailure(answer.status, answer.code), 'error');
    renderUnfinished();
    return;
  }
  el.linkInput.removeAttribute('aria-invalid');
  state.code = code;
  state.info = answer.info;
  el.linkInput.value = code;
  const url = new URL(window.location.href);
  if (url.searchParams.get('request') !== code) {
    url.searchParams.set('request', code);
    window.history.replaceState(null, '', url);
  }
  setLinkStatus(describeLink(answer.info), 'ok');
  el.passwordForm.hidden = !answer.info.requires_password;
  captcha.prepare(answer.info);
  el.fileInput.accept = acceptAttribute(answer.info);
  updateDropZone();
  await refreshUnfinished();
}

el.linkForm.addEventListener('submit', (event) => {
  event.preventDefault();
  if (state.queue?.busy) return;
  const code = parseRequestCode(el.linkInput.value);
  if (!code) {
    el.linkInput.setAttribute('aria-invalid', 'true');
    setLinkStatus('Paste the upload link you were given, or just its code.', 'error');
    el.linkInput.focus();
    return;
  }
  openLink(code);
});

el.passwordForm.addEventListener('submit', (event) => {
  event.preventDefault();
  retryLinkFailures();
});

el.passwordToggle.addEventListener('click', () => {
  const show = el.password.type === 'password';
  el.password.type = show ? 'text' : 'password';
  el.passwordToggle.textContent = show ? 'Hide' : 'Show';
  el.passwordToggle.setAttribute('aria-pressed', String(show));
});

el.password.addEventListener('input', () => el.password.removeAttribute('aria-invalid'));

/** After the password was fixed: send again what the link refused. */
function retryLinkFailures() {
  if (!state.queue) return;
  for (const item of [...state.queue.items].reverse()) {
    if (item.state === 'failed' && item.failureScope === 'link') state.queue.retry(item);
  }
  state.queue.release();
}

// ---------------------------------------------------------------------------------------------
// Picking and dropping files.

function ready() {
  return Boolean(state.uploader && state.info);
}

function updateDropZone() {
  const isReady = ready();
  el.dropZone.dataset.ready = String(isReady);
  el.choose.disabled = !isReady;
  let hint;
  if (!state.uploader) hint = 'Loading the uploader…';
  else if (!state.info) hint = 'Open an upload link first.';
  else hint = 'Several files upload at once. You can add more at any time.';
  el.dropHint.textContent = hint;
  const locked = Boolean(state.queue?.busy);
  el.linkInput.readOnly = locked;
  el.linkButton.disabled = locked;
  el.linkInput.title = locked ? 'Finish or cancel the uploads to change the link.' : '';
}

el.choose.addEventListener('click', () => el.fileInput.click());
el.fileInput.addEventListener('change', () => {
  const files = [...el.fileInput.files].map((file) => ({ file, relPath: file.webkitRelativePath || '' }));
  el.fileInput.value = ''; // picking the same file again must fire `change` again
  addFiles(files);
});

// Files dropped anywhere else must not make the browser navigate away from the uploads.
for (const type of ['dragover', 'drop']) {
  window.addEventListener(type, (event) => {
    if (!el.dropZone.contains(event.target)) event.preventDefault();
  });
}

let dragDepth = 0;
el.dropZone.addEventListener('dragenter', (event) => {
  event.preventDefault();
  dragDepth += 1;
  el.dropZone.classList.add('dragging');
});
el.dropZone.addEventListener('dragleave', () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) el.dropZone.classList.remove('dragging');
});
el.dropZone.addEventListener('dragover', (event) => {
  event.preventDefault();
  if (event.dataTransfer) event.dataTransfer.dropEffect = ready() ? 'copy' : 'none';
});
el.dropZone.addEventListener('drop', async (event) => {
  event.preventDefault();
  dragDepth = 0;
  el.dropZone.classList.remove('dragging');
  if (!ready() || !event.dataTransfer) return;
  addFiles(await droppedFiles(event.dataTransfer));
});

/** Files of a drop, with the folders' contents (and their relative paths) when folders are dropped. */
async function droppedFiles(transfer) {
  const entries = [...transfer.items]
    .filter((item) => item.kind === 'file')
    .map((item) => item.webkitGetAsEntry?.())
    .filter(Boolean);
  if (entries.length === 0) return [...transfer.files].map((file) => ({ file, relPath: '' }));
  const out = [];
  const walk = async (entry) => {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      const inFolder = entry.fullPath.split('/').filter(Boolean).length > 1;
      out.push({ file, relPath: inFolder ? entry.fullPath.replace(/^\/+/, '') : '' });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (batch.length === 0) break;
        for (const child of batch) await walk(child);
      }
    }
  };
  try {
    for (const entry of entries) await walk(entry);
  } catch {
    setBanner('drop', 'Some dropped files could not be read. Try choosing them with the button instead.');
  }
  return out;
}

function addFiles(entries) {
  if (!ready() || entries.length === 0) return;
  setBanner('drop', null);
  const withResume = entries.map((entry) => {
    const record = recordFor(state.unfinished, entry.file, entry.relPath);
    return { ...entry, resumedBytes: record?.server?.received ?? 0 };
  });
  const { duplicates } = state.queue.add(withResume);
  if (duplicates.length) {
    setBanner('drop', `Already in the list: ${duplicates.join(', ')}.`);
  }
  renderUnfinished();
}

// ---------------------------------------------------------------------------------------------
// Unfinished uploads from earlier visits.

async function refreshUnfinished() {
  if (!state.uploader || !state.code) {
    state.unfinished = [];
    renderUnfinished();
    return;
  }
  const uploadUrl = uploadUrlFor(state.code);
  // The package applies its own rules (age, validity); the page only asks the server how far each got.
  const records = await state.uploader.findUnfinishedUploads(uploadUrl);
  await Promise.all(records.map(async (record) => {
    record.server = await serverProgress(uploadUrl, record.uploadId);
  }));
  // Sessions the server no longer has (expired, finished, aborted) cannot be resumed.
  state.unfinished = records.filter((record) => {
    const stale = record.server?.gone || record.server?.complete;
    if (stale) removeRecord(record.key);
    return !stale;
  });
  renderUnfinished();
}

function isQueued(record) {
  return state.queue?.items.some((item) => item.name === record.name && item.file.size === record.size
    && Math.floor(item.file.lastModified) === record.lastModified && item.state !== 'cancelled');
}

function renderUnfinished() {
  const shown = state.info ? state.unfinished.filter((record) => !isQueued(record)) : [];
  el.resumeCard.hidden = shown.length === 0;
  el.resumeList.replaceChildren(...shown.map((record) => {
    const li = document.createElement('li');
    li.className = 'resume-item';
    const text = document.createElement('div');
    const name = document.createElement('span');
    name.className = 'resume-name';
    name.textContent = record.name;
    const meta = document.createElement('span');
    meta.className = 'resume-meta';
    const progress = record.server
      ? `${percentOf(record.server.received, record.size)}% on the server`
      : 'progress unknown (server not reachable)';
    meta.textContent = `${formatBytes(record.size)} · ${progress} · ${formatAge(Date.now() - record.timestamp)}`;
    text.append(name, meta);
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'button quiet';
    button.textContent = 'Discard';
    button.setAttribute('aria-label', `Discard the unfinished upload of ${record.name}`);
    button.addEventListener('click', async () => {
      button.disabled = true;
      await forget(uploadUrlFor(state.code), record);
      state.unfinished = state.unfinished.filter((r) => r !== record);
      renderUnfinished();
      el.choose.focus();
    });
    li.append(text, button);
    return li;
  }));
}

// ---------------------------------------------------------------------------------------------
// The queue.

function renderQueue() {
  const { queue } = state;
  const ids = new Set(queue.items.map((item) => item.id));
  for (const [id, view] of state.views) {
    if (!ids.has(id)) {
      view.root.remove();
      state.views.delete(id);
    }
  }
  queue.items.forEach((item, index) => {
    let view = state.views.get(item.id);
    if (!view) {
      view = new ItemView(el.template, item, {
        toggle: (it) => (it.state === 'paused' ? queue.resume(it) : queue.pause(it)),
        retry: (it) => queue.retry(it),
        cancel: (it) => queue.cancel(it),
        remove: (it) => {
          queue.remove(it);
          el.choose.focus();
        },
      });
      state.views.set(item.id, view);
    }
    if (el.queueList.children[index] !== view.root) {
      el.queueList.insertBefore(view.root, el.queueList.children[index] ?? null);
    }
    view.render();
  });
  renderSummary();
}

function renderSummary() {
  const { queue } = state;
  const c = queue.counts();
  el.queueCard.hidden = c.total === 0;
  const parts = [`${c.done} of ${c.total} done`];
  if (c.failed) parts.push(`${c.failed} stopped`);
  if (c.queued) parts.push(`${c.queued} waiting`);
  el.queueSummary.textContent = parts.join(' · ');
  el.clearFinished.hidden = !queue.items.some((item) => item.state === 'done' || item.state === 'cancelled');
  el.queueHold.hidden = !queue.hold;
  el.queueHold.textContent = queue.hold?.text ?? '';
  updateDropZone();
}

function startQueue() {
  const queue = new UploadQueue(state.uploader, () => ({
    uploadUrl: uploadUrlFor(state.code),
    password: el.password.value,
    // A function: a token is good once, so only the run that sends it takes it.
    takeCaptchaToken: () => captcha.take(),
    info: state.info,
  }));
  state.queue = queue;
  let frame = 0;
  queue.addEventListener('change', (event) => {
    const item = event.detail;
    if (item && state.views.has(item.id)) {
      state.views.get(item.id).render();
      // Progress events come many times a frame; the summary can wait for the next one.
      if (!frame) frame = requestAnimationFrame(() => { frame = 0; renderSummary(); });
    } else {
      renderQueue();
    }
  });
  queue.addEventListener('failure', (event) => {
    const { explained } = event.detail;
    if (explained.focus === 'password' && !el.passwordForm.hidden) {
      el.password.setAttribute('aria-invalid', 'true');
    }
    if (explained.focus === 'captcha') captcha.show(state.info, explained.text);
  });
  queue.addEventListener('settled', () => refreshUnfinished());
  el.clearFinished.addEventListener('click', () => {
    queue.clearFinished();
    el.choose.focus();
  });
}

window.addEventListener('beforeunload', (event) => {
  if (state.queue?.items.some((item) => item.state === 'uploading')) {
    // Progress is kept and resumes after a reload, but leaving still stops the upload.
    event.preventDefault();
    event.returnValue = '';
  }
});

// ---------------------------------------------------------------------------------------------
// Start.

async function loadUploader() {
  try {
    const module = await import('/pkg/droppr_uploader.js');
    await module.default();
    return module;
  } catch (error) {
    console.warn('Droppr: the uploader package could not be loaded', error);
    setBanner('uploader', 'The uploader could not be loaded, so nothing can be sent from this page. '
      + 'If you run the server yourself, build the package with “npm run build” and restart it.');
    return null;
  }
}

async function main() {
  updateDropZone();
  const code = parseRequestCode(new URLSearchParams(window.location.search).get('request'));
  const lookup = code ? openLink(code) : Promise.resolve();
  if (!code) setLinkStatus('Paste the upload link you were given, or its code, and press Open.', 'info');
  state.uploader = await loadUploader();
  if (state.uploader) startQueue();
  updateDropZone();
  await lookup;
  await refreshUnfinished();
  if (!code) el.linkInput.focus();
}

main();
