// A small load balancer for the scale-out tests: a Node HTTP proxy on 127.0.0.1 that sends
// successive requests to its upstream instances in turn (A, B, A, B, ...), with no stickiness, and
// records every chunk request it passes on: which instance got it, its range, the bytes that went
// through, the answer's status, and how many chunk requests were in flight at once.

import http from 'node:http';

/**
 * The range of a chunk request, from `Content-Range: bytes S-E/T` or `X-Upload-Offset` +
 * `X-Upload-End` (+ `X-Upload-Length`), as docs/PROTOCOL.md allows; null for other requests.
 */
export function chunkRange(headers) {
  const contentRange = headers['content-range'];
  if (contentRange) {
    const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(contentRange.trim());
    if (!m) throw new Error(`unexpected Content-Range ${JSON.stringify(contentRange)}`);
    return { start: Number(m[1]), end: Number(m[2]), total: Number(m[3]) };
  }
  if (headers['x-upload-offset'] !== undefined && headers['x-upload-end'] !== undefined) {
    return {
      start: Number(headers['x-upload-offset']),
      end: Number(headers['x-upload-end']),
      total: Number(headers['x-upload-length'] ?? NaN),
    };
  }
  return null;
}

/**
 * Starts the proxy in front of `upstreams` (base URLs). Returns `{url, chunks, requests,
 * mostChunksInFlight(), stop()}`: `chunks` fills with `{instance, start, end, total, length,
 * bodyBytes, status, ms, opens}` (opens: sent under `X-Upload-New-Id`, the original protocol's first chunk) (ms: from its arrival to its answer's head) per chunk request (in the order they arrived), `requests[i]` counts every
 * request instance `i` got.
 */
export async function startAlternatingProxy(upstreams) {
  const targets = upstreams.map((u) => new URL(u));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  const chunks = [];
  const requests = targets.map(() => 0);
  let turn = 0;
  let inFlight = 0;
  let mostInFlight = 0;

  const server = http.createServer((req, res) => {
    const instance = turn;
    turn = (turn + 1) % targets.length;
    requests[instance] += 1;
    const range = req.method === 'OPTIONS' ? null : chunkRange(req.headers);
    const arrived = Date.now();
    const record = range && {
      instance, ...range, length: range.end - range.start + 1, bodyBytes: 0, status: null, ms: null,
      opens: req.headers['x-upload-new-id'] !== undefined,
    };
    if (record) {
      chunks.push(record);
      inFlight += 1;
      mostInFlight = Math.max(mostInFlight, inFlight);
      req.on('data', (piece) => { record.bodyBytes += piece.length; });
    }
    let settled = false;
    const settle = (status) => {
      if (settled) return;
      settled = true;
      if (record) {
        record.status = status;
        record.ms = Date.now() - arrived;
        inFlight -= 1;
      }
    };
    const target = targets[instance];
    const upstream = http.request({
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: { ...req.headers, host: target.host },
      agent,
    }, (answer) => {
      settle(answer.statusCode);
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => {
      settle('proxy-error');
      if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/plain' });
      res.end();
    });
    req.on('aborted', () => { settle('aborted'); upstream.destroy(); });
    req.pipe(upstream);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    chunks,
    requests,
    mostChunksInFlight: () => mostInFlight,
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      agent.destroy();
    },
  };
}
