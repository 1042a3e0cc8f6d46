// Drawing upload items. Each item's element is made once from the <template> and then only
// updated, so focus stays on a button whose label changes (Pause <-> Resume) and screen
// readers are not flooded: the progress bar and the stats change quietly, the message line is
// a polite live region that only changes when the words do.

import { formatBytes, formatDuration, formatSpeed, percentOf } from './format.js';

const BADGES = {
  queued: 'Waiting',
  uploading: 'Uploading',
  paused: 'Paused',
  done: 'Done',
  failed: 'Stopped',
  cancelled: 'Cancelled',
};

export class ItemView {
  constructor(template, item, actions) {
    this.item = item;
    this.root = template.content.firstElementChild.cloneNode(true);
    this.root.dataset.itemId = String(item.id);
    this.bar = this.root.querySelector('.bar');
    this.fill = this.root.querySelector('.bar-fill');
    this.badge = this.root.querySelector('.badge');
    this.meta = this.root.querySelector('.upload-meta');
    this.message = this.root.querySelector('.upload-message');
    this.stats = Object.fromEntries(
      [...this.root.querySelectorAll('[data-stat]')].map((el) => [el.dataset.stat, el]),
    );
    this.buttons = Object.fromEntries(
      [...this.root.querySelectorAll('[data-action]')].map((el) => [el.dataset.action, el]),
    );
    const name = this.root.querySelector('.upload-name');
    name.textContent = item.name;
    name.title = item.name;
    this.bar.setAttribute('aria-label', `Progress of ${item.name}`);
    for (const [action, button] of Object.entries(this.buttons)) {
      button.setAttribute('aria-label', `${button.textContent} ${item.name}`);
      button.addEventListener('click', () => actions[action](item));
    }
    this.last = {};
  }

  /** Sets text (or an attribute) only when it changes. */
  set(key, value, apply) {
    if (this.last[key] === value) return;
    this.last[key] = value;
    apply(value);
  }

  render() {
    const { item } = this;
    const stats = item.stats;
    const loaded = item.state === 'done' ? item.total : item.loaded;
    const percent = percentOf(loaded, item.total);
    const running = item.state === 'uploading';

    this.set('state', item.state, (v) => { this.root.dataset.state = v; });
    this.set('badge', BADGES[item.state], (v) => { this.badge.textContent = v; });
    this.set('uploadId', item.uploadId ?? '', (v) => { this.root.dataset.uploadId = v; });
    // The whole-file checksum the uploader and the server agreed on, for whoever wants to check.
    this.set('checksum', item.result?.checksum ?? '', (v) => {
      this.root.dataset.checksum = v;
      this.meta.title = v ? `Whole-file checksum: ${v}` : '';
    });
    this.root.dataset.loaded = String(loaded);
    this.root.dataset.total = String(item.total);

    const metaParts = [formatBytes(item.total)];
    if (item.resumedBytes && item.state !== 'done') {
      metaParts.push(`resumes at ${percentOf(item.resumedBytes, item.total)}%`);
    }
    this.set('meta', metaParts.join(' · '), (v) => { this.meta.textContent = v; });

    this.set('percent', percent, (v) => {
      this.fill.style.width = `${v}%`;
      this.bar.setAttribute('aria-valuenow', String(v));
      this.stats.percent.textContent = `${v}%`;
    });
    this.set('bytes', `${formatBytes(loaded)} of ${formatBytes(item.total)}`, (v) => {
      this.bar.setAttribute('aria-valuetext', `${percent}%, ${v}`);
    });

    // While nothing moves (a retry, an outage), the last speed and time left would be stale.
    const moving = running && stats && item.live?.tone !== 'warn';
    const eta = moving && stats.eta !== null && stats.speed > 0 ? stats.eta : null;
    this.root.dataset.eta = eta === null ? '' : String(eta);
    this.set('speed', moving ? formatSpeed(stats.speed) : '–', (v) => { this.stats.speed.textContent = v; });
    this.set('eta', formatDuration(eta), (v) => { this.stats.eta.textContent = v; });
    const chunks = stats ? `${stats.completedChunks} / ${stats.totalChunks}` : '–';
    this.set('chunks', chunks, (v) => { this.stats.chunks.textContent = v; });
    const connections = running && stats ? String(stats.activeUploads) : (item.isActive ? '0' : '–');
    this.set('connections', connections, (v) => { this.stats.connections.textContent = v; });
    this.set('connectionsTitle', stats ? `up to ${stats.parallelism} at once, ${formatBytes(stats.chunkSize)} chunks` : '', (v) => {
      this.stats.connections.title = v;
    });

    const message = item.message;
    this.set('message', message ? message.text : '', (v) => { this.message.textContent = v; });
    this.set('tone', message ? message.tone : '', (v) => { this.message.dataset.tone = v; });

    const { toggle, retry, cancel, remove } = this.buttons;
    this.set('toggle', item.state === 'paused' ? 'Resume' : 'Pause', (v) => {
      toggle.textContent = v;
      toggle.setAttribute('aria-label', `${v} ${item.name}`);
    });
    this.set('buttons', item.state, () => {
      toggle.hidden = !item.isActive;
      cancel.hidden = !item.isActive;
      // Sending a file the link refused again cannot help; a failed connection or password can.
      retry.hidden = !((item.state === 'failed' && item.failureScope !== 'file') || item.state === 'cancelled');
      remove.hidden = item.isActive;
      // A keyboard user whose button just disappeared stays on this item, not at the page top.
      const focused = document.activeElement;
      if (focused instanceof HTMLElement && focused.hidden && this.root.contains(focused)) {
        const next = [retry, toggle, remove, cancel].find((b) => !b.hidden);
        next?.focus();
      }
    });
  }
}
