// Sends events to the agent with the stock fluent-logger package, over the
// agent's Unix socket, with acknowledgements required, and prints one JSON
// line: how many events were acknowledged and the errors for the rest.
//
// usage: node send.js SOCKET MODE TAG_PREFIX EVENTS_JSON
//   MODE: Message | PackedForward | CompressedPackedForward
//   EVENTS_JSON: [{"label": ..., "record": {...}, "time": seconds?}, ...]
'use strict';
const logger = require('fluent-logger');

const [socketPath, mode, tagPrefix, eventsJson] = process.argv.slice(2);
const events = JSON.parse(eventsJson);
const sender = logger.createFluentSender(tagPrefix, {
  path: socketPath,
  eventMode: mode,
  requireAckResponse: true,
  ackResponseTimeout: 10000,
  timeout: 5.0,
  flushInterval: 20,
  enableReconnect: false,
});
sender.on('error', () => {}); // each callback below gets its own error

let acked = 0;
const errors = [];
let pending = events.length;
function done(err) {
  if (err) errors.push(String(err.message || err));
  else acked++;
  if (--pending === 0) {
    console.log(JSON.stringify({ acked, errors }));
    sender.end();
    process.exit(0);
  }
}
for (const e of events) {
  if (e.time !== undefined) sender.emit(e.label, e.record, new logger.EventTime(e.time, 0), done);
  else sender.emit(e.label, e.record, done);
}
setTimeout(() => {
  console.log(JSON.stringify({ acked, errors: errors.concat(['timed out']) }));
  process.exit(1);
}, 30000);
