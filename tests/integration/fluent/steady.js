// A steady Fluent Forward producer that must not lose a record, built on the
// stock fluent-logger package: records {"fn": k, "pad": ...} tagged
// "orchest.project:created" go out at RATE a second for SECONDS, in
// PackedForward chunks of 100 ms, each on a connection of its own with
// acknowledgements required. A chunk that is not acknowledged (the agent was
// killed, the connection refused, no ack in time) is sent again, as Fluent
// Bit's forward output retries a chunk. Prints one JSON line once every
// record is acknowledged (or after WAIT seconds more):
//   {"acked": [k, ...], "unacked": n, "retries": n}
//
// usage: node steady.js SOCKET SECONDS RATE [WAIT]
'use strict';
const logger = require('fluent-logger');

const [socketPath, seconds, rate, wait] = process.argv.slice(2);
const total = Math.floor(Number(seconds) * Number(rate));
const acked = [];
let pending = 0;
let retries = 0;
let produced = 0;

function sendChunk(keys, again) {
  if (!again) pending++; /* a chunk counts as pending until it is acked */
  const sender = logger.createFluentSender('orchest', {
    path: socketPath,
    eventMode: 'PackedForward',
    requireAckResponse: true,
    ackResponseTimeout: 5000,
    timeout: 3.0,
    flushInterval: 5,
    enableReconnect: false,
    internalLogger: { info() {}, error() {} },
  });
  sender.on('error', () => {});
  let left = keys.length;
  let settled = false;
  // an attempt ends once: acked, failed, or silent for too long
  const finish = (ok) => {
    if (settled) return;
    settled = true;
    clearTimeout(watchdog);
    try { sender.end(); } catch (e) { /* already closed */ }
    if (ok) {
      pending--;
      acked.push(...keys);
    } else {
      retries++;
      setTimeout(() => sendChunk(keys, true), 200);
    }
  };
  const watchdog = setTimeout(() => finish(false), 8000);
  for (const k of keys) {
    sender.emit('project:created', { fn: k, pad: 'f'.repeat(150) }, (err) => {
      if (err) finish(false);
      else if (--left === 0) finish(true);
    });
  }
}

const start = Date.now();
const ticker = setInterval(() => {
  const due = Math.min(total, Math.floor(((Date.now() - start) / 1000) * Number(rate)));
  if (due > produced) {
    const keys = [];
    for (let k = produced; k < due; k++) keys.push(k);
    produced = due;
    sendChunk(keys);
  }
  if (produced >= total) clearInterval(ticker);
}, 100);

const deadline = start + (Number(seconds) + Number(wait || 90)) * 1000;
const finisher = setInterval(() => {
  if ((produced >= total && pending === 0) || Date.now() > deadline) {
    console.log(JSON.stringify({ acked, unacked: total - acked.length, retries }));
    process.exit(0);
  }
}, 100);
void finisher;
