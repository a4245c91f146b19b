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
// at most maxBatch events and 60,000 bytes of UTF-8 (the browsers' bound for
// keepalive and beacons, and the relay's relay.max_body_bytes, are 64 KiB;
// sizes are measured in bytes, so text in any script fits); when the page is
// hidden or left, what waits goes with navigator.sendBeacon. A request that
// fails (offline, 429, 5xx, a refused origin) is sent again later, after
// Retry-After when the relay gives one; events the relay had no room for are
// sent again too. A 413 halves the requests that follow.
//
// An event is dropped, never retried, when it cannot be serialised
// ('not_json': a cycle, a BigInt), when it alone is past a request's bound
// ('too_large', also for a single event the relay answers 413), when the
// queue is past maxQueue events ('queue_full': the oldest go first), or when
// the relay refuses it for good ('refused': a 4xx, or a rejection other
// than buffer_full). dropped() counts them, and onDrop(reason, count) is
// told of each. Nothing here ever throws, and no cookie is ever sent.
const MAX_REQUEST_BYTES = 60000;

const encoder = typeof TextEncoder === 'function' ? new TextEncoder() : null;

// The length of text in UTF-8, as fetch and sendBeacon send it.
function utf8Bytes(text) {
  return encoder ? encoder.encode(text).length : unescape(encodeURIComponent(text)).length;
}

// The body of a request: a JSON array of the events' texts.
function bodyOf(batch) {
  return '[' + batch.map((e) => e.text).join(',') + ']';
}

// Its length in bytes: the brackets, the events and a comma between each two.
function bytesOf(batch) {
  return batch.reduce((sum, e) => sum + e.bytes + 1, 1);
}

export function createTelemetry({
  url, flushIntervalMs = 1000, maxBatch = 50, maxQueue = 1000, onDrop = null,
} = {}) {
  const queue = []; // events, oldest first: {text: its JSON, bytes: its length in UTF-8}
  let timer = null;
  let inFlight = null; // the batch being sent by fetch, out of the queue
  let dropped = 0;
  let requestEvents = maxBatch; // a request's bounds (a 413 lowers them)
  let requestBytes = MAX_REQUEST_BYTES;

  function drop(reason, count) {
    dropped += count;
    try {
      if (typeof onDrop === 'function') onDrop(reason, count);
    } catch (err) { /* never throws */ }
  }

  function trimQueue() {
    if (queue.length > maxQueue) drop('queue_full', queue.splice(0, queue.length - maxQueue).length);
  }

  function schedule(ms) {
    if (timer === null && queue.length > 0) {
      timer = setTimeout(() => { timer = null; flush(); }, ms);
    }
  }

  function capture(event, properties) {
    try {
      const e = { event: String(event), properties: properties || {}, timestamp: new Date().toISOString() };
      if (globalThis.crypto && crypto.randomUUID) e.uuid = crypto.randomUUID();
      let text;
      try {
        text = JSON.stringify(e);
      } catch (err) {
        drop('not_json', 1); // a cycle, a BigInt
        return;
      }
      const bytes = utf8Bytes(text);
      if (bytes + 2 > MAX_REQUEST_BYTES) {
        drop('too_large', 1); // no request could hold it
        return;
      }
      queue.push({ text, bytes });
      trimQueue();
      if (queue.length >= maxBatch) flush(); else schedule(flushIntervalMs);
    } catch (err) { /* never throws */ }
  }

  // Take the next request's events out of the queue: the oldest, and those
  // after it while they fit the request's bounds.
  function takeBatch() {
    let n = 0;
    let bytes = 1; // '[' ... ']', and each event with the ',' after it but the last
    while (n < queue.length && n < requestEvents &&
           (n === 0 || bytes + queue[n].bytes + 1 <= requestBytes)) {
      bytes += queue[n].bytes + 1;
      n++;
    }
    return queue.splice(0, n);
  }

  // What becomes of a batch the relay answered: the events to send again.
  async function answered(r, batch) {
    // The body is always read: until it is, the browser counts the request
    // against its 64 KiB for keepalive requests in flight.
    const text = await r.text().catch(() => '');
    if (r.status === 202) {
      let answer = {};
      try { answer = JSON.parse(text); } catch (err) { /* then nothing was rejected */ }
      const again = [];
      for (const { index, reason } of answer.rejected || []) {
        if (batch[index] === undefined) continue;
        if (reason === 'buffer_full') again.push(batch[index]); else drop('refused', 1);
      }
      return again;
    }
    if (r.status === 429 || r.status >= 500) return batch; // sent again later
    if (r.status === 413 && batch.length > 1) { // the relay's bound is lower: halve the requests
      requestEvents = Math.max(1, Math.floor(batch.length / 2));
      requestBytes = Math.max(1, Math.floor(bytesOf(batch) / 2));
      return batch;
    }
    if (r.status === 413) drop('too_large', 1);
    else if (!r.ok) drop('refused', batch.length); // another 4xx (or 3xx): refused for good
    return [];
  }

  async function flush() {
    if (inFlight !== null || queue.length === 0) return;
    const batch = inFlight = takeBatch();
    let retryMs = flushIntervalMs;
    let again = [];
    try {
      const r = await fetch(url, {
        method: 'POST', body: bodyOf(batch), keepalive: true, credentials: 'omit',
        headers: { 'Content-Type': 'application/json' },
      });
      again = await answered(r, batch);
      if (r.status === 429 || r.status >= 500) {
        retryMs = Math.max(retryMs, 1000 * (Number(r.headers.get('Retry-After')) || 1));
      } else if (r.status === 413 && again.length > 0) {
        retryMs = 0; // at once, in halves
      }
    } catch (err) {
      again = batch; // offline or refused: sent again later
    }
    inFlight = null;
    queue.unshift(...again);
    trimQueue();
    schedule(retryMs);
  }

  function sendAllNow() {
    try {
      while (queue.length > 0) {
        const batch = takeBatch();
        if (!navigator.sendBeacon || !navigator.sendBeacon(url, bodyOf(batch))) {
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

  return {
    capture,
    flush,
    pending: () => queue.length + (inFlight ? inFlight.length : 0),
    dropped: () => dropped,
  };
}
