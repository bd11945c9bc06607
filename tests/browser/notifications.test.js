// The notifications example in headless Chromium: ada signs in, opens two tabs; a notification
// posted over HTTP shows in both as a toast and an unread badge (markup as text), bob sees
// nothing; reading it in one tab marks it read in the other; after a server restart (same
// secret) the tabs reconnect and the next notification arrives.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { WAIT, exampleBin, launchBrowser, screenshot, startExample, stop } = require('./pages');

const ARGS = ['--secret', 'the browser test secret, long enough to sign'];
let server = null;
let address = null;
let browser = null;

before(async () => {
  ({ child: server, address } = await startExample(exampleBin('notifications'), ['--addr', '127.0.0.1:0', ...ARGS]));
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await stop(server);
});

async function notify(user, title, body) {
  const response = await fetch(`http://${address}/notify/${encodeURIComponent(user)}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ title, body }),
  });
  return response.status;
}

/** Signs `name` in on a page of `context` and returns the page, once its socket is open. */
async function signIn(context, name) {
  const page = await context.newPage();
  await page.goto(`http://${address}/`);
  await page.fill('#name', name);
  await page.click('#login button');
  await page.waitForSelector('#status.open', { timeout: WAIT });
  return page;
}

/** Another tab of the same browser context: already signed in by its cookie. */
async function openTab(context) {
  const page = await context.newPage();
  await page.goto(`http://${address}/`);
  await page.waitForSelector('#status.open', { timeout: WAIT });
  return page;
}

const badge = (page) => page.$eval('#badge', (b) => Number(b.dataset.count));

test('a notification reaches every tab of its user, reads follow, tabs come back after a restart', async () => {
  const adaContext = await browser.newContext({ viewport: { width: 900, height: 520 } });
  const tab1 = await signIn(adaContext, 'ada');
  const tab2 = await openTab(adaContext);
  const bob = await signIn(await browser.newContext(), 'bob');

  assert.equal(await notify('ada', 'Build <b>#42</b>', 'passed in 3 min'), 202);
  for (const tab of [tab1, tab2]) {
    await tab.waitForSelector('.toast', { timeout: WAIT });
    await tab.waitForFunction(() => document.getElementById('badge').dataset.count === '1', null, { timeout: WAIT });
    assert.equal(await tab.textContent('#inbox li .title'), 'Build <b>#42</b>');
    assert.equal(await tab.locator('#inbox b, .toast span b').count(), 0);
  }
  assert.equal(await notify('ada', 'Invoice paid', '€120 from ACME'), 202);
  await tab1.waitForFunction(() => document.getElementById('badge').dataset.count === '2', null, { timeout: WAIT });
  await screenshot(tab1, 'notifications');
  assert.equal(await bob.locator('#inbox li').count(), 0);
  assert.equal(await notify('carol', 'nobody', 'home'), 404);

  // Read in tab 1: marked read in tab 2.
  await tab1.click('#inbox li:has-text("Invoice paid")');
  await tab2.waitForFunction(() => document.getElementById('badge').dataset.count === '1', null, { timeout: WAIT });
  assert.equal(await tab2.locator('#inbox li.unread').count(), 1);
  assert.equal(await badge(tab1), 1);

  // The server restarts with the same secret: the tabs reconnect, still signed in.
  await stop(server);
  await tab1.waitForSelector('#status:not(.open)', { timeout: WAIT });
  ({ child: server } = await startExample(exampleBin('notifications'), ['--addr', address, ...ARGS]));
  await tab1.waitForSelector('#status.open', { timeout: WAIT });
  await tab2.waitForSelector('#status.open', { timeout: WAIT });
  assert.equal(await notify('ada', 'Back', 'after a restart'), 202);
  await tab2.waitForSelector('#inbox li:has-text("after a restart")', { timeout: WAIT });
  await tab1.waitForSelector('#inbox li:has-text("after a restart")', { timeout: WAIT });

  // Signing out ends the session: the page asks for a name again.
  await tab1.click('#logout');
  await tab1.waitForSelector('#signin:not([hidden])', { timeout: WAIT });
});
