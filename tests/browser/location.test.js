// The location example in headless Chromium: two people share positions by clicking the map,
// each sees the other's marker move, a name with markup stays text, a marker goes when its page
// closes, and the page reconnects (and shares its position again) after a server restart.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { WAIT, exampleBin, launchBrowser, screenshot, startExample, stop } = require('./pages');

let server = null;
let address = null;
let browser = null;

before(async () => {
  ({ child: server, address } = await startExample(exampleBin('location'), ['--addr', '127.0.0.1:0']));
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await stop(server);
});

/** A page of its own (its own localStorage) as `name`, once its socket is open. */
async function open(name) {
  const page = await (await browser.newContext({ viewport: { width: 960, height: 720 } })).newPage();
  await page.addInitScript((n) => localStorage.setItem('switchboard.location.name', n), name);
  await page.goto(`http://${address}/`);
  await page.waitForSelector('#status.open', { timeout: WAIT });
  return page;
}

/** Clicks `page`'s map where `latitude`, `longitude` is drawn. */
async function clickAt(page, latitude, longitude) {
  const at = await page.evaluate(([lat, lon]) => {
    const map = document.getElementById('map');
    const point = map.createSVGPoint();
    point.x = lon;
    point.y = -lat;
    const screen = point.matrixTransform(map.getScreenCTM());
    return { x: screen.x, y: screen.y };
  }, [latitude, longitude]);
  await page.mouse.click(at.x, at.y);
}

/** Where `page` draws `name`'s marker: [latitude, longitude]. */
async function markerOf(page, name) {
  const marker = page.locator('.marker', { has: page.locator('text', { hasText: name }) });
  await marker.waitFor({ timeout: WAIT });
  const transform = await marker.getAttribute('transform');
  const [x, y] = /translate\(([-\d.e]+) ([-\d.e]+)\)/.exec(transform).slice(1).map(Number);
  return [-y, x];
}

function near([lat, lon], [wantLat, wantLon]) {
  return Math.abs(lat - wantLat) < 1 && Math.abs(lon - wantLon) < 1;
}

test('positions shared by clicking reach everyone, markers go with their pages, pages come back after a restart', async () => {
  const ada = await open('ada');
  const bob = await open('bob');
  await clickAt(ada, 48.85, 2.35);
  assert.ok(near(await markerOf(bob, 'ada'), [48.85, 2.35]));
  await clickAt(ada, -33.9, 18.4);
  await bob.waitForFunction(() => [...document.querySelectorAll('#people li')].some((li) => li.textContent.startsWith('ada: -33.')), null, { timeout: WAIT });
  assert.ok(near(await markerOf(bob, 'ada'), [-33.9, 18.4]));
  await clickAt(bob, 35.7, 139.7);
  assert.ok(near(await markerOf(ada, 'bob'), [35.7, 139.7]));

  // A newcomer sees both at once; a name with markup is shown as text.
  const eve = await open('<b>eve</b>');
  assert.ok(near(await markerOf(eve, 'ada'), [-33.9, 18.4]));
  assert.ok(near(await markerOf(eve, 'bob'), [35.7, 139.7]));
  await clickAt(eve, 0, 0);
  await markerOf(ada, 'eve');
  assert.equal(await ada.locator('#map b, #people b').count(), 0);
  assert.ok((await ada.textContent('#people')).includes('<b>eve</b>'));
  await screenshot(ada, 'location');

  // bob leaves: his marker goes from the others' maps.
  await bob.close();
  await ada.locator('.marker', { has: ada.locator('text', { hasText: 'bob' }) }).waitFor({ state: 'detached', timeout: WAIT });
  await eve.locator('.marker', { has: eve.locator('text', { hasText: 'bob' }) }).waitFor({ state: 'detached', timeout: WAIT });

  // The server restarts on the same address: the pages reconnect and share their positions again.
  await stop(server);
  await ada.waitForSelector('#status:not(.open)', { timeout: WAIT });
  ({ child: server } = await startExample(exampleBin('location'), ['--addr', address]));
  await ada.waitForSelector('#status.open', { timeout: WAIT });
  await eve.waitForSelector('#status.open', { timeout: WAIT });
  assert.ok(near(await markerOf(eve, 'ada'), [-33.9, 18.4]));
  assert.ok(near(await markerOf(ada, 'eve'), [0, 0]));
});
