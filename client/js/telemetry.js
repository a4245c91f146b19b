// telemetry.js: a tiny browser client for telemetry-agent's relay ([relay]
// listen, POST /analytics). An ES module without dependencies:
//
//   import { createTelemetry } from './telemetry.js';
//   const telemetry = createTelemetry({ url: 'https://example.com/analytics' });
//   telemetry.capture('project:created', { projects_count: 7 });
//
// capture() queues an event (with its time and a uuid, so a resend is
// recognised); the queue is POSTed every flushIntervalMs, or at once when
// maxBatch events wait, with fetch(..., {keepalive: true}), in requests of
// at most maxBatch events and 60 KB (the browsers' bound for keepalive and
// beacons); when the page is hidden or left, what waits goes with
// navigator.sendBeacon. A request that fails (offline, 429, 5xx, a refused
// origin) is sent again later, after Retry-After when the relay gives one;
// events the relay had no room for are sent again too. The queue keeps at
// most maxQueue events (the oldest go first). Nothing here ever throws, and
// no cookie is ever sent.
const MAX_REQUEST_BYTES = 60000;

export function createTelemetry({ url, flushIntervalMs = 1000, maxBatch = 50, maxQueue = 1000 } = {}) {
  const queue = []; // JSON texts of events, oldest first
  let timer = null;
  let inFlight = null; // the batch being sent by fetch, out of the queue

  function schedule(ms) {
    if (timer === null && queue.length > 0) {
      timer = setTimeout(() => { timer = null; flush(); }, ms);
    }
  }

  function capture(event, properties) {
    try {
      const e = { event: String(event), properties: properties || {}, timestamp: new Date().toISOString() };
      if (globalThis.crypto && crypto.randomUUID) e.uuid = crypto.randomUUID();
      const text = JSON.stringify(e); // one that cannot be sent (a cycle, a BigInt) is dropped here
      if (text.length > MAX_REQUEST_BYTES) return;
      if (queue.length >= maxQueue) queue.shift();
      queue.push(text);
      if (queue.length >= maxBatch) flush(); else schedule(flushIntervalMs);
    } catch (err) { /* never throws */ }
  }

  // Take the next request's events out of the queue.
  function takeBatch() {
    let n = 0;
    let bytes = 2;
    while (n < queue.length && n < maxBatch && bytes + queue[n].length + 1 <= MAX_REQUEST_BYTES) {
      bytes += queue[n].length + 1;
      n++;
    }
    return queue.splice(0, n);
  }

  async function flush() {
    if (inFlight !== null || queue.length === 0) return;
    const batch = inFlight = takeBatch();
    let retryMs = flushIntervalMs;
    let again = [];
    try {
      const r = await fetch(url, {
        method: 'POST', body: '[' + batch.join(',') + ']', keepalive: true, credentials: 'omit',
        headers: { 'Content-Type': 'application/json' },
      });
      if (r.status === 429 || r.status >= 500) {
        again = batch;
        retryMs = Math.max(retryMs, 1000 * (Number(r.headers.get('Retry-After')) || 1));
      } else if (r.status === 202) {
        const answer = await r.json().catch(() => ({}));
        for (const { index, reason } of answer.rejected || []) {
          if (reason === 'buffer_full' && batch[index] !== undefined) again.push(batch[index]);
        }
      } // other 4xx: refused for good
    } catch (err) {
      again = batch; // offline or refused: sent again later
    }
    inFlight = null;
    queue.unshift(...again);
    while (queue.length > maxQueue) queue.shift();
    schedule(retryMs);
  }

  function sendAllNow() {
    try {
      while (queue.length > 0) {
        const batch = takeBatch();
        if (!navigator.sendBeacon || !navigator.sendBeacon(url, '[' + batch.join(',') + ']')) {
          queue.unshift(...batch);
          return;
        }
      }
    } catch (err) { /* never throws */ }
  }

  try {
    addEventListener('visibilitychange', () => { if (document.visibilityState === 'hidden') sendAllNow(); });
    addEventListener('pagehide', sendAllNow);
  } catch (err) { /* not in a page */ }

  return { capture, flush, pending: () => queue.length + (inFlight ? inFlight.length : 0) };
}
