// Gathers the parts of one `npm run bench` (bench-out/{link-check,ingest,browser,scaleout,run-info}.json) into
// bench-out/results.json, prints the tables and the targets (../shared/DESIGN.md, issue 13) on stdout,
// draws bench-out/chart.svg (goodput by profile and client) and writes bench-out/summary.md (the
// tables as Markdown, for docs/BENCHMARKS.md). A part that did not run is left out.
//
// Usage: node bench/report.mjs [bench-out]
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

const dir = process.argv[2] || 'bench-out';
const read = (name) => (existsSync(join(dir, name)) ? JSON.parse(readFileSync(join(dir, name), 'utf8')) : null);
const linkCheck = read('link-check.json');
const ingest = read('ingest.json');
const browser = read('browser.json');
const scaleout = read('scaleout.json');
const runInfo = read('run-info.json') || {};
const MIB = 1024 * 1024;
// Server CPU-seconds per GiB of ingest before issue 13 (the full ingest run of 2026-11-28, 4 and 64
// streams): the reference the issue's target halves.
const CPU_SECS_PER_GIB_BEFORE = { 4: 1.30, 64: 1.30 };
// The npm package's size target: 50 KB gzipped, read as 50,000 bytes.
const PACKAGE_GZIP_LIMIT = 50000;
const LOSS_FREE_SHAPED = (p) => p.rate_mbit && !p.loss_pct && !p.files;
// Speed ratios this close to 1 are ties (run-to-run noise of a link-limited upload).
const TIE = 0.98;

const fmt = (x, digits = 1) => (x === null || x === undefined || Number.isNaN(x) ? '–' : x.toFixed(digits));
const pct = (x) => (x === null || x === undefined ? '–' : `${(x * 100).toFixed(0)} %`);
const times = (x) => (x === null || x === undefined ? '–' : `${x.toFixed(2)}x`);

const cpu = os.cpus();
const machine = {
  cpu: cpu.length ? cpu[0].model : 'unknown',
  cores: cpu.length,
  memory_gib: Math.round(os.totalmem() / 2 ** 30),
  kernel: os.release(),
  loadavg_start: runInfo.loadavg_start ?? null,
  loadavg_end: os.loadavg().map((x) => Number(x.toFixed(2))),
};

// --- browser: goodput, ratios, speed-ups
function result(profile, client, bytes = null) {
  return browser?.results.find((r) => r.profile === profile && r.client === client && !r.error && (bytes === null || r.bytes === bytes)) || null;
}
const linkLabel = (p) => (p.rate_mbit
  ? `${p.rate_mbit} Mbit/s, ${p.rtt_ms} ms${p.loss_pct ? `, ${p.loss_pct} % loss` : ''}${p.jitter_ms ? `, ${p.jitter_ms} ms jitter` : ''}`
  : 'unshaped');
/** The (profile, file size) pairs measured, in profile order. */
const cases = [];
if (browser) {
  for (const p of browser.profiles) {
    const sizes = [...new Set(browser.results.filter((r) => r.profile === p.name).map((r) => r.bytes))];
    for (const bytes of sizes) cases.push({ profile: p, bytes });
  }
}
const browserRows = [];
for (const { profile: p, bytes } of cases) {
  for (const c of browser.clients) {
    const r = browser.results.find((x) => x.profile === p.name && x.client === c.id && x.bytes === bytes);
    if (!r) continue;
    browserRows.push({
      profile: p.name,
      link: linkLabel(p),
      client: c.id,
      label: c.label,
      file_mib: r.bytes / MIB,
      error: r.error || null,
      capped: Boolean(r.capped),
      seconds: r.seconds ?? null,
      goodput_mb_per_s: r.goodput_mb_per_s ?? null,
      goodput_mbit: r.goodput_mbit ?? null,
      ratio_to_link: r.ratio_to_link ?? null,
      repeats: r.repeats ?? null,
    });
  }
}
function speedup(profile, bytes, over) {
  const a = result(profile, 'droppr-auto', bytes);
  const b = result(profile, over, bytes);
  return a && b ? a.goodput_mbit / b.goodput_mbit : null;
}
const speedups = cases.filter(({ profile: p }) => !p.files).map(({ profile: p, bytes }) => ({
  profile: p.name,
  file_mib: bytes / MIB,
  auto_over_seq: speedup(p.name, bytes, 'droppr-seq'),
  auto_over_tus_1: speedup(p.name, bytes, 'tus-1'),
  auto_over_tus_4: speedup(p.name, bytes, 'tus-4'),
}));

// --- targets of DESIGN.md
const targets = [];
function target(name, measured, pass, note = '') {
  targets.push({ target: name, measured, status: pass === null ? 'not measured' : pass ? 'met' : 'BELOW', note });
}
if (browser) {
  // Issue 13: at least 0.9 of the link on every loss-free shaped profile (the largest file).
  for (const p of browser.profiles.filter(LOSS_FREE_SHAPED)) {
    const sizes = cases.filter((c) => c.profile.name === p.name).map((c) => c.bytes);
    const r = sizes.length ? result(p.name, 'droppr-auto', Math.max(...sizes)) : null;
    target(`${p.name}: goodput >= 90 % of the link (${r ? r.bytes / MIB : '?'} MiB)`, r ? pct(r.ratio_to_link) : '–', r ? r.ratio_to_link >= 0.9 : null);
  }
  // At least 1.1x the better of tus-js-client (1 request, parallelUploads 4) everywhere.
  for (const x of speedups) {
    const both = [x.auto_over_tus_1, x.auto_over_tus_4].filter((v) => v !== null);
    const worst = both.length ? Math.min(...both) : null;
    target(`${x.profile} ${x.file_mib} MiB: >= 1.1x the better tus-js-client (1 request / 4 parallel)`,
      `${times(x.auto_over_tus_1)} / ${times(x.auto_over_tus_4)}`, worst === null ? null : worst >= 1.1);
  }
  // At least 3x maxParallelChunks 1 on the lossy 1 Gbit/s and 100 Mbit/s profiles.
  for (const x of speedups.filter((s) => { const p = browser.profiles.find((q) => q.name === s.profile); return p.loss_pct && p.rate_mbit >= 100; })) {
    target(`${x.profile} ${x.file_mib} MiB: >= 3x maxParallelChunks 1`, times(x.auto_over_seq), x.auto_over_seq === null ? null : x.auto_over_seq >= 3);
  }
  // Many small files (profiles with `files`): all of the run's bytes over its whole time.
  for (const p of browser.profiles.filter((q) => q.files)) {
    const ours = result(p.name, 'droppr-files', null);
    const tusOne = result(p.name, 'tus-files-1', null);
    const files = ours ? Math.round(ours.bytes / (p.file_kib * 1024)) : p.files;
    const over = ours && tusOne ? ours.goodput_mbit / tusOne.goodput_mbit : null;
    const others = ['droppr-files-1', 'tus-files-6', 'uppy-tus'].map((id) => result(p.name, id, null)).filter(Boolean);
    target(`${p.name}: ${files} files of ${p.file_kib} KiB: >= 0.8 of the link, >= 1.5x tus-js-client one at a time`,
      ours ? `${pct(ours.ratio_to_link)}; ${times(over)}` : '–', ours && over !== null ? ours.ratio_to_link >= 0.8 && over >= 1.5 : null,
      others.map((r) => `${r.label} ${fmt(r.goodput_mb_per_s, 2)} MB/s`).join('; '));
  }
  if (browser.package) {
    target('wasm + JS glue <= 50 KB gzipped', `${browser.package.gzip_bytes} bytes`, browser.package.gzip_bytes <= PACKAGE_GZIP_LIMIT,
      `gzip -9 of the package the browser runs used (built ${browser.package.built}); 50 KB read as 50,000 bytes`);
  }
}
if (ingest) {
  // The reference is the faster of the two probe patterns around each run (the harsher choice);
  // the note gives the ratio to the classic one (one fdatasync at the end) too.
  for (const n of [4, 64]) {
    const r = ingest.runs.find((x) => x.streams === n);
    const classic = r ? r.mb_per_s / endSyncAround(r) : null;
    target(`ingest at ${n} streams >= 90 % of the disk`, r ? `${pct(r.ratio_to_disk)} (${fmt(r.mb_per_s, 0)} of ${fmt(r.disk_mb_per_s, 0)} MB/s)` : '–',
      r ? r.ratio_to_disk >= 0.9 : null, r ? `${pct(classic)} of the one-fdatasync probe (${fmt(endSyncAround(r), 0)} MB/s)` : '');
  }
  for (const n of [4, 64]) {
    const r = ingest.runs.find((x) => x.streams === n);
    const perGib = r ? r.server_cpu_secs / (r.bytes / 2 ** 30) : null;
    const before = CPU_SECS_PER_GIB_BEFORE[n];
    target(`server CPU at ${n} streams: at most half of the ${fmt(before, 2)} CPU-s/GiB before issue 13`, r ? `${fmt(perGib, 2)} CPU-s/GiB (${pct(perGib / before)})` : '–',
      r ? perGib <= before / 2 : null, 'server CPU-seconds over the bytes of the run; every byte is SHA-256 hashed (chunk checksums, issue 10)');
  }
  const peak = Math.max(...ingest.runs.map((r) => r.peak_rss_bytes || 0), ...ingest.completions.map((c) => c.peak_rss_bytes || 0));
  target('server memory < 64 MiB (peak RSS, all ingest runs)', `${fmt(peak / MIB)} MiB`, peak > 0 ? peak < 64 * MIB : null);
  const c4 = ingest.completions.find((c) => c.size === 4096 * MIB) || null;
  target('completion of a 4 GiB upload after its last chunk < 50 ms', c4
    ? `${fmt(c4.completion_overhead_ms)} ms over a plain chunk (server finalize ${fmt(c4.server_finalize_ms)} ms)`
    : '–', c4 ? c4.completion_overhead_ms < 50 : null, 'the last chunk\'s answer minus that of the chunks before it');
}

/** Mean rate of the one-fdatasync probes just before and after run `r`. */
function endSyncAround(r) {
  const i = ingest.runs.indexOf(r);
  const a = ingest.disk[i];
  const b = ingest.disk[i + 1];
  return a && b ? (a.end_sync_mb_per_s + b.end_sync_mb_per_s) / 2 : NaN;
}

// --- text tables
function table(headers, rows) {
  const cells = [headers, ...rows.map((r) => r.map((c) => String(c)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  const line = (r) => r.map((c, i) => c.padEnd(widths[i])).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}
function markdown(headers, rows) {
  return [`| ${headers.join(' | ')} |`, `|${headers.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

const sections = [];
const pathChecks = linkCheck || browser?.path_checks || null;
if (pathChecks?.length) {
  const setLabel = (x) => `${x.rate_mbit} Mbit/s, ${x.rtt_ms} ms${x.loss_pct ? `, ${x.loss_pct} %` : ''}${x.jitter_ms ? `, jitter ${x.jitter_ms} ms` : ''}`;
  sections.push(['Emulated path self-check (real TCP between namespaces)', ['profile', 'set', 'RTT median / p95', 'loss per direction (pings)', 'one connection', '6 connections', 'sockets', 'ok'],
    pathChecks.map((c) => [c.profile, setLabel(c.set), `${fmt(c.rtt_ms_median)} / ${fmt(c.rtt_ms_p95)} ms`,
      `${fmt(c.loss_pct_measured, 2)} % (${c.pings_lost}/${c.pings_sent})`, `${fmt(c.one_connection_mbit)} Mbit/s`,
      `${fmt(c.six_connections_mbit)} Mbit/s`, c.congestion_control, c.ok ? 'yes' : `NO: ${c.checks.join('; ')}`])]);
}
if (browser) {
  sections.push([`Browser uploads (Chromium ${browser.chromium || '?'}${browser.quick ? ', quick: files a quarter of the size' : ''})`,
    ['profile', 'link', 'client', 'file', 'goodput MB/s', 'Mbit/s', 'of link', 'time'],
    browserRows.map((r) => [r.profile, r.link, r.label, `${r.file_mib} MiB`, r.error ? `failed: ${r.error.slice(0, 60)}` : fmt(r.goodput_mb_per_s, 2),
      fmt(r.goodput_mbit, 1), pct(r.ratio_to_link), r.seconds === null ? '–' : `${fmt(r.seconds)} s${r.capped ? ' (cap: stopped)' : ''}`])]);
  sections.push(['Speed-ups of droppr (auto)', ['profile', 'file', 'over maxParallelChunks 1', 'over tus-js-client 1 request', 'over tus-js-client parallelUploads 4'],
    speedups.map((s) => [s.profile, `${s.file_mib} MiB`, times(s.auto_over_seq), times(s.auto_over_tus_1), times(s.auto_over_tus_4)])]);
}
if (ingest) {
  sections.push([`Server ingest (8 MiB chunks, ${ingest.streams_per_upload} streams per upload)`,
    ['streams', 'uploads', 'MB/s', 'disk MB/s (around)', 'of disk', 'of one-fdatasync probe', 'peak RSS', 'CPU s: server + load gen. / wall', 'chunk answer p50/p95'],
    ingest.runs.map((r) => [r.streams, r.uploads, fmt(r.mb_per_s), fmt(r.disk_mb_per_s), pct(r.ratio_to_disk), pct(r.mb_per_s / endSyncAround(r)), `${fmt(r.peak_rss_bytes / MIB)} MiB`,
      `${fmt(r.server_cpu_secs, 2)} + ${fmt(r.client_cpu_secs, 2)} / ${fmt(r.seconds, 2)}`, `${fmt(r.chunk_answer_ms_median, 0)} / ${fmt(r.chunk_answer_ms_p95, 0)} ms`])]);
  sections.push(['Disk probes (MB/s; 8 MiB writes, durable)', ['when', 'one fdatasync at the end', 'fdatasync every 8 MiB', 'reference'],
    ingest.disk.map((d) => [d.what, fmt(d.end_sync_mb_per_s, 0), fmt(d.chunk_sync_mb_per_s, 0), fmt(d.mb_per_s, 0)])]);
  sections.push(['Completion after the last chunk', ['upload', 'last chunk answered', 'chunks before it', 'completion adds', 'server finalize', 'peak RSS'],
    ingest.completions.map((c) => [`${c.size / MIB} MiB`, `${fmt(c.last_chunk_answer_ms)} ms`, `${fmt(c.baseline_chunk_answer_ms)} ms`,
      `${fmt(c.completion_overhead_ms)} ms`, `${fmt(c.server_finalize_ms)} ms`, `${fmt(c.peak_rss_bytes / MIB)} MiB`])]);
}
if (scaleout) {
  sections.push([`Scale-out: 1 vs 2 instances on one PostgreSQL + SeaweedFS (mean: 1 instance ${fmt(scaleout.one_instance_mb_per_s)} MB/s, `
    + `2 instances ${fmt(scaleout.two_instances_mb_per_s)} MB/s, ratio ${fmt(scaleout.ratio, 2)}; ${scaleout.cores} cores shared by all)`,
  ['instances', 'MiB', 'streams', 'chunk', 'MB/s', 'time', 'completing answer', 'CPU s: instances / SeaweedFS / PostgreSQL / load gen.'],
  scaleout.runs.map((r) => [r.instances, r.bytes / MIB, r.streams, `${r.chunk_bytes / MIB} MiB`, fmt(r.mb_per_s), `${fmt(r.seconds, 2)} s`,
    `${fmt(r.completing_answer_ms, 0)} ms`, [r.cpu_instances_s, r.cpu_seaweedfs_s, r.cpu_postgres_s, r.cpu_client_s].map((x) => fmt(x, 2)).join(' / ')])]);
}
sections.push(['Targets (DESIGN.md, issue 13)', ['target', 'measured', 'status', 'note'], targets.map((t) => [t.target, t.measured, t.status, t.note])]);

const out = [];
out.push(`Machine: ${machine.cores} x ${machine.cpu}, ${machine.memory_gib} GiB, Linux ${machine.kernel}; load average at start ${machine.loadavg_start ?? '?'}, at end ${machine.loadavg_end.join(' ')}`);
for (const [title, headers, rows] of sections) out.push('', `== ${title}`, table(headers, rows));
process.stdout.write(out.join('\n') + '\n');

const md = [`Machine: ${machine.cores} x ${machine.cpu}, ${machine.memory_gib} GiB RAM, Linux ${machine.kernel}; load average ${machine.loadavg_start ?? '?'} at the start, ${machine.loadavg_end.join(' ')} at the end.`];
for (const [title, headers, rows] of sections) md.push('', `### ${title}`, '', markdown(headers, rows));
writeFileSync(join(dir, 'summary.md'), md.join('\n') + '\n');

writeFileSync(join(dir, 'results.json'), JSON.stringify({
  generated: new Date().toISOString(), machine, run: runInfo, targets, speedups, browser_rows: browserRows,
  link_check: linkCheck, ingest, browser, scaleout,
}, null, 2) + '\n');

// --- chart: one panel per profile (their rates differ a hundredfold), bars per client, the link
// rate as a dashed line.
/** 1, 2 or 5 times a power of ten, at least `raw`. */
function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(raw || 1));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
}
const label = (v) => (v < 20 ? fmt(v, 1) : fmt(v, 0));

function chart() {
  if (!browser) return null;
  const colours = { 'droppr-auto': '#1f77b4', 'droppr-seq': '#9ecae1', 'tus-1': '#e6550d', 'tus-4': '#fdae6b' };
  const clients = browser.clients;
  const profiles = browser.profiles;
  const panelW = 210;
  const panelH = 260;
  const left = 50;
  const top = 50;
  const width = left + profiles.length * (panelW + 30) + 10;
  const height = top + panelH + 110;
  const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="22" font-size="15" font-weight="bold">Upload goodput by link profile and client (Mbit/s)</text>`];
  profiles.forEach((p, i) => {
    const x0 = left + i * (panelW + 30);
    const values = clients.map((c) => result(p.name, c.id)?.goodput_mbit ?? 0);
    const step = niceStep(Math.max(p.rate_mbit || 0, ...values) / 4);
    const max = Math.ceil((Math.max(p.rate_mbit || 0, ...values) * 1.12) / step) * step || 1;
    const y = (v) => top + panelH - (v / max) * panelH;
    parts.push(`<line x1="${x0}" y1="${top}" x2="${x0}" y2="${top + panelH}" stroke="#999"/>`,
      `<line x1="${x0}" y1="${top + panelH}" x2="${x0 + panelW}" y2="${top + panelH}" stroke="#999"/>`);
    for (let v = 0; v <= max + 1e-9; v += step) {
      parts.push(`<text x="${x0 - 4}" y="${y(v) + 4}" text-anchor="end" fill="#555">${label(v)}</text>`,
        `<line x1="${x0}" y1="${y(v)}" x2="${x0 + panelW}" y2="${y(v)}" stroke="#eee"/>`);
    }
    if (p.rate_mbit) {
      parts.push(`<line x1="${x0}" y1="${y(p.rate_mbit)}" x2="${x0 + panelW}" y2="${y(p.rate_mbit)}" stroke="#333" stroke-dasharray="5,4"/>`,
        `<text x="${x0 + panelW}" y="${top - 8}" text-anchor="end" fill="#333">- - link rate ${p.rate_mbit}</text>`);
    }
    const bw = panelW / clients.length - 8;
    clients.forEach((c, j) => {
      const v = values[j];
      const bx = x0 + 6 + j * (bw + 8);
      if (v > 0) {
        parts.push(`<rect x="${bx}" y="${y(v)}" width="${bw}" height="${top + panelH - y(v)}" fill="${colours[c.id] || '#777'}"/>`,
          `<text x="${bx + bw / 2}" y="${y(v) - 3}" text-anchor="middle">${label(v)}</text>`);
      } else {
        parts.push(`<text x="${bx + bw / 2}" y="${top + panelH - 4}" text-anchor="middle" fill="#999">n/a</text>`);
      }
    });
    parts.push(`<text x="${x0 + panelW / 2}" y="${top + panelH + 18}" text-anchor="middle" font-weight="bold">${esc(p.name)}</text>`,
      `<text x="${x0 + panelW / 2}" y="${top + panelH + 32}" text-anchor="middle" fill="#555">${esc(p.label)}</text>`);
  });
  clients.forEach((c, j) => {
    const lx = left + (j % 2) * 330;
    const ly = top + panelH + 55 + Math.floor(j / 2) * 18;
    parts.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${colours[c.id] || '#777'}"/>`,
      `<text x="${lx + 18}" y="${ly}">${esc(c.label)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
const svg = chart();
if (svg) writeFileSync(join(dir, 'chart.svg'), svg);
console.error(`[report] ${join(dir, 'results.json')}, ${join(dir, 'summary.md')}${svg ? `, ${join(dir, 'chart.svg')}` : ''}`);
