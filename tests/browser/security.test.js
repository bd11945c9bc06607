// Attacks from a real browser (headless Chromium, as chat.test.js): a page on another origin —
// another port of 127.0.0.1 — opening a WebSocket to the chat with no configuration of the
// chat's but its defaults, and markup typed into every field the chat shows (user names in the
// log, the online list and private-message headers; messages; room names), and a page taking
// a name another page holds.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { WAIT, launchBrowser, openRoom, say, startChat, waitOnline } = require('./pages');
const db = path.join(os.tmpdir(), `switchboard-browser-security-${process.pid}.sqlite3`);

let chat = null;
let address = null;
let browser = null;
let evil = null;

/** A page on another origin that tries the chat's socket and reports how it went in its title. */
function startEvilSite(target) {
  const page = `<!doctype html><title>trying</title><script>
    const ws = new WebSocket('ws://${target}/ws/chat/lobby/?name=mallory');
    ws.onopen = () => { document.title = 'opened'; };
    ws.onclose = (e) => { if (document.title !== 'opened') document.title = 'refused ' + e.code; };
  </script>`;
  return new Promise((resolve) => {
    const server = http.createServer((_, res) => {
      res.setHeader('content-type', 'text/html');
      res.end(page);
    });
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function metric(name) {
  const text = await (await fetch(`http://${address}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.split(' ').pop()) : NaN;
}

before(async () => {
  for (const suffix of ['', '-wal', '-shm']) fs.rmSync(db + suffix, { force: true });
  ({ child: chat, address } = await startChat(['--addr', '127.0.0.1:0', '--db', db]));
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (evil) evil.close();
  if (chat && chat.exitCode === null) chat.kill('SIGKILL');
  for (const suffix of ['', '-wal', '-shm']) fs.rmSync(db + suffix, { force: true });
});

test('a page from another origin cannot open the chat\'s WebSocket; the chat\'s own page can', async () => {
  evil = await startEvilSite(address);
  const forbidden = 'switchboard_handshakes_refused_total{cause="forbidden"}';
  const before = await metric(forbidden);
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${evil.address().port}/`);
  await page.waitForFunction(() => document.title !== 'trying', null, { timeout: WAIT });
  assert.equal(await page.title(), 'refused 1006', 'the handshake failed (403)');
  assert.equal(await metric(forbidden), before + 1, 'the server refused it as another origin');
  await page.close();

  const own = await openRoom(browser, address, 'lobby', 'ada');
  await waitOnline(own, ['ada']);
  await own.close();
});

test('markup in names and messages is shown as text and never runs', async () => {
  const evilName = '<img src=x onerror=pwned=1>'; // within the 32 characters a name keeps
  const mallory = await openRoom(browser, address, 'lobby', evilName);
  const ada = await openRoom(browser, address, 'lobby', 'ada');
  await ada.waitForFunction(
    (want) => JSON.stringify([...document.querySelectorAll('#online li')].map((li) => li.textContent).sort()) === want,
    JSON.stringify(['ada', evilName].sort()), { timeout: WAIT });
  await say(mallory, '<script>window.pwned=2</script><svg onload="window.pwned=3"></svg>');
  await ada.waitForSelector('#log li:has-text("window.pwned=2")', { timeout: WAIT });
  // A private message from the evil name: its header shows the name too.
  await mallory.click('#online li:text-is("ada")');
  await say(mallory, 'psst <iframe src="javascript:window.pwned=4"></iframe>');
  await ada.waitForSelector('#log li.private:has-text("psst")', { timeout: WAIT });
  // Leaving writes a note with the name.
  await mallory.close();
  await ada.waitForSelector('#log li.note:has-text("left")', { timeout: WAIT });
  for (const selector of ['img', 'script', 'svg', 'iframe']) {
    assert.equal(await ada.locator(`#log ${selector}, #online ${selector}`).count(), 0, selector);
  }
  assert.equal(await ada.evaluate(() => window.pwned), undefined, 'nothing executed');
  const shown = await ada.textContent('#log');
  assert.ok(shown.includes(evilName), 'the name is shown as the text it is');

  // A room name with markup in it is refused by the chat (rooms are [A-Za-z0-9_-.]), and the
  // page built from its URL shows it as text.
  const odd = await browser.newPage();
  await odd.addInitScript(() => localStorage.setItem('switchboard.user', 'ada'));
  await odd.goto(`http://${address}/chat/${encodeURIComponent('<img src=x onerror=window.pwned=5>')}/`);
  assert.equal(await odd.locator('img').count(), 0);
  assert.equal(await odd.evaluate(() => window.pwned), undefined, 'nothing executed');
  await odd.close();
  await ada.close();
});

test('a page cannot take a name another page holds, nor read its private messages', async () => {
  const bob = await openRoom(browser, address, 'lobby', 'bob');
  const ada = await openRoom(browser, address, 'lobby', 'ada');
  // Another browser (its own key) asks for the name bob.
  const impostor = await browser.newPage();
  await impostor.addInitScript(() => localStorage.setItem('switchboard.user', 'bob'));
  await impostor.goto(`http://${address}/chat/lobby/`);
  await impostor.waitForSelector('#status:has-text("name taken")', { timeout: WAIT });
  await impostor.waitForSelector('#log li.error:has-text("someone else\'s")', { timeout: WAIT });
  await ada.click('#online li:text-is("bob")');
  await say(ada, 'for bob only');
  await bob.waitForSelector('#log li.private:has-text("for bob only")', { timeout: WAIT });
  assert.equal(await impostor.locator('#log li:has-text("for bob only")').count(), 0);
  for (const page of [bob, ada, impostor]) await page.close();
});
