// telemetry.js: a tiny browser client for telemetry-agent's relay ([relay]
// listen, POST /analytics). An ES module without dependencies:
//
//   import { createTelemetry } from './telemetry.js';
//   const telemetry = createTelemetry({ url: 'https://example.com/analytics' });
//   telemetry.capture('project:created', { projects_count: 7 });
//
// capture() queues an event (with its time and a uuid, so a resend is
// recognised); the queue is POSTed every flushIntervalMs, or at once when
// maxBatch events wait, with fetch(..., {keepalive: true}); when the page is
// hidden or left, what waits goes with navigator.sendBeacon. A send that
// fails (offline, 429, 5xx, a refused origin) is tried again later; the
// queue keeps at most maxQueue events (the oldest go first). Nothing here
// ever throws, and no cookie is ever sent.
export function createTelemetry({ url, flushIntervalMs = 1000, maxBatch = 50, maxQueue = 1000 } = {}) {
  let queue = [];
  let timer = null;
  let sending = false;

  function schedule(ms) {
    if (timer === null && queue.length > 0) {
      timer = setTimeout(() => { timer = null; flush(); }, ms);
    }
  }

  function capture(event, properties) {
    try {
      const e = { event: String(event), properties: properties || {}, timestamp: new Date().toISOString() };
      if (globalThis.crypto && crypto.randomUUID) e.uuid = crypto.randomUUID();
      if (queue.length >= maxQueue) queue.shift();
      queue.push(e);
      if (queue.length >= maxBatch) flush(); else schedule(flushIntervalMs);
    } catch (err) { /* never throws */ }
  }

  async function flush() {
    if (sending || queue.length === 0) return;
    const batch = queue.slice(0, maxBatch);
    sending = true;
    let retryMs = flushIntervalMs;
    try {
      const r = await fetch(url, {
        method: 'POST', body: JSON.stringify(batch), keepalive: true, credentials: 'omit',
        headers: { 'Content-Type': 'application/json' },
      });
      if (r.status === 429 || r.status >= 500) {
        retryMs = Math.max(retryMs, 1000 * (Number(r.headers.get('Retry-After')) || 1));
      } else {
        queue.splice(0, batch.length); // taken, or refused for good (4xx)
      }
    } catch (err) { /* offline or refused: kept, tried again */ }
    sending = false;
    schedule(retryMs);
  }

  function sendAllNow() {
    try {
      while (queue.length > 0) {
        const batch = queue.slice(0, maxBatch);
        if (!navigator.sendBeacon || !navigator.sendBeacon(url, JSON.stringify(batch))) return;
        queue.splice(0, batch.length);
      }
    } catch (err) { /* never throws */ }
  }

  try {
    addEventListener('visibilitychange', () => { if (document.visibilityState === 'hidden') sendAllNow(); });
    addEventListener('pagehide', sendAllNow);
  } catch (err) { /* not in a page */ }

  return { capture, flush, pending: () => queue.length };
}
