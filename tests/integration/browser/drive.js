// Drives Debian's headless Chromium through three pages that use
// client/js/telemetry.js against the agent's relay, on another origin, and
// prints one JSON line of what the pages saw. Driven by test_relay_browser.py.
//
// usage: node drive.js CHROMIUM FETCH_URL BEACON_URL DENIED_URL [DRAIN_URL...]
//   FETCH_URL    a page of an allowed origin: its events go by fetch()
//   BEACON_URL   the same, with a long flush interval: the page is closed and
//                its events go by navigator.sendBeacon
//   DENIED_URL   a page of an origin the relay does not allow
//   DRAIN_URL    a page of an allowed origin, kept open until all its
//                events are sent (or dropped): what it saw is in "drained"
'use strict';
const puppeteer = require('puppeteer-core');

const [chromium, fetchUrl, beaconUrl, deniedUrl, ...drainUrls] = process.argv.slice(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function open(browser, url) {
  const page = await browser.newPage();
  const console = [];
  page.on('console', (m) => console.push(m.text()));
  page.on('pageerror', (e) => console.push('pageerror: ' + e.message));
  await page.goto(url);
  await page.waitForFunction('window.ready === true', { timeout: 10000 });
  return { page, console };
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const result = {};
  const fetched = await open(browser, fetchUrl);
  await fetched.page.waitForFunction('window.telemetry.pending() === 0', { timeout: 10000 });
  result.fetch_pending = 0;
  result.fetch_console = fetched.console;

  const beacon = await open(browser, beaconUrl);
  result.beacon_pending_before_close = await beacon.page.evaluate('window.telemetry.pending()');
  await beacon.page.close({ runBeforeUnload: true }); // pagehide: sendBeacon

  const denied = await open(browser, deniedUrl);
  await sleep(2000);
  result.denied_pending = await denied.page.evaluate('window.telemetry.pending()');
  result.denied_console = denied.console;

  result.drained = [];
  for (const url of drainUrls) {
    const drain = await open(browser, url);
    await drain.page.waitForFunction('window.telemetry.pending() === 0', { timeout: 30000 });
    result.drained.push({
      dropped: await drain.page.evaluate('window.telemetry.dropped()'),
      drops: await drain.page.evaluate('window.drops'),
      text: await drain.page.evaluate('window.text'),
      console: drain.console,
    });
  }
  await browser.close();
  console.log(JSON.stringify(result));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
