// The dashboard example in headless Chromium: simulated sensors draw live lines, a reading
// posted over HTTP appears, a paused page gets exactly the readings it missed when it comes
// back (no hole), a new page draws the recent readings at once, and the page reconnects after
// a server restart.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { WAIT, exampleBin, launchBrowser, screenshot, startExample, stop } = require('./pages');

let server = null;
let address = null;
let browser = null;

before(async () => {
  ({ child: server, address } = await startExample(exampleBin('dashboard'), ['--addr', '127.0.0.1:0', '--simulate', '3']));
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await stop(server);
});

async function post(sensor, value) {
  const response = await fetch(`http://${address}/sensors/${encodeURIComponent(sensor)}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ value }),
  });
  assert.equal(response.status, 202);
}

/** How many readings of `sensor` the page has plotted. */
const points = (page, sensor) => page.$eval(`#legend li[data-sensor="${sensor}"]`, (li) => Number(li.dataset.points)).catch(() => 0);

test('live lines, posted readings, no hole after a pause, and a reconnect after a restart', async () => {
  const page = await (await browser.newContext({ viewport: { width: 960, height: 560 } })).newPage();
  await page.goto(`http://${address}/`);
  await page.waitForSelector('#status.open', { timeout: WAIT });
  // Three simulated sensors, each a line that grows.
  for (const sensor of ['sim-1', 'sim-2', 'sim-3']) {
    await page.waitForFunction((s) => Number(document.querySelector(`#legend li[data-sensor="${s}"]`)?.dataset.points) >= 12,
      sensor, { timeout: WAIT });
    const line = await page.$eval(`#legend li[data-sensor="${sensor}"]`, (li) => li.querySelector('.swatch').style.background);
    assert.ok(line);
  }
  assert.equal(await page.locator('#chart polyline').count(), 3);
  await screenshot(page, 'dashboard');

  // A reading over HTTP, from a sensor named with markup: plotted, shown as text.
  await post('<i>probe</i>', 12.5);
  await page.waitForSelector('#legend li[data-sensor="<i>probe</i>"]', { timeout: WAIT });
  assert.equal(await page.locator('#legend i').count(), 0);

  // Paused, the page misses readings; resumed, it gets every one of them (no hole).
  await page.check('#pause');
  await page.waitForSelector('#status:not(.open)', { timeout: WAIT });
  const before = await points(page, 'greenhouse');
  for (const value of [1, 2, 3, 4]) await post('greenhouse', value);
  await page.uncheck('#pause');
  await page.waitForFunction(() => document.getElementById('notice').dataset.missed !== undefined, null, { timeout: WAIT });
  assert.ok(Number(await page.$eval('#notice', (n) => n.dataset.missed)) >= 4, await page.textContent('#notice'));
  assert.equal(await points(page, 'greenhouse'), before + 4);
  const values = await page.$eval('#legend li[data-sensor="greenhouse"] .value', (v) => v.textContent.trim());
  assert.equal(values, '4.00');

  // A page opened now draws the stream's recent readings at once: greenhouse's four among them.
  const late = await (await browser.newContext()).newPage();
  await late.goto(`http://${address}/`);
  await late.waitForFunction(() => document.querySelector('#legend li[data-sensor="greenhouse"]')?.dataset.points === '4',
    null, { timeout: WAIT });
  assert.equal(await late.textContent('#notice'), '');

  // The server restarts: the page reconnects; its history went with the process, and it says so.
  await stop(server);
  await page.waitForSelector('#status:not(.open)', { timeout: WAIT });
  ({ child: server } = await startExample(exampleBin('dashboard'), ['--addr', address, '--simulate', '3']));
  await page.waitForSelector('#status.open', { timeout: WAIT });
  await page.waitForFunction(() => document.getElementById('notice').dataset.missed === '-1', null, { timeout: WAIT });
  const after = await points(page, 'sim-1');
  await page.waitForFunction((n) => Number(document.querySelector('#legend li[data-sensor="sim-1"]').dataset.points) > n, after, { timeout: WAIT });
});
