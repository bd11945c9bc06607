// The chat in a real browser: headless Chromium (Debian's, at /usr/bin/chromium) driven by
// playwright-core, against the chat example's binary. `.ci/run` installs both and runs:
//
//   CHAT_BIN=target/debug/examples/chat NODE_PATH=<dir>/node_modules node --test tests/browser/
//
// Two pages chat in one room, the presence list follows a page that closes, a private message
// reaches only its recipient's tabs and the sender's, a late joiner gets the history, the pages
// reconnect by themselves after the server restarts, and a page that was offline gets exactly
// what it missed, once and in order, without reloading.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const pages = require('./pages');
const { WAIT, launchBrowser, openRoom, say, online, waitOnline } = pages;
const db = path.join(os.tmpdir(), `switchboard-browser-test-${process.pid}.sqlite3`);

let server = null;
let address = null;
let browser = null;

/** Starts the chat on `addr` and resolves with the address it listens on. */
async function startChat(addr) {
  const started = await pages.startChat(['--addr', addr, '--db', db]);
  server = started.child;
  return started.address;
}

function stopChat() {
  return new Promise((resolve) => {
    if (!server || server.exitCode !== null) return resolve();
    server.once('exit', () => resolve());
    server.kill('SIGKILL');
  });
}

before(async () => {
  for (const suffix of ['', '-wal', '-shm']) fs.rmSync(db + suffix, { force: true });
  address = await startChat('127.0.0.1:0');
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  await stopChat();
  for (const suffix of ['', '-wal', '-shm']) fs.rmSync(db + suffix, { force: true });
});

test('two pages in one room chat, and presence follows a page that closes', async () => {
  const ada = await openRoom(browser, address, 'lobby', 'ada');
  const bob = await openRoom(browser, address, 'lobby', 'bob');
  const eve = await openRoom(browser, address, 'elsewhere', 'eve');
  await waitOnline(ada, ['ada', 'bob']);

  await say(ada, '<b>hi</b> from ada');
  await bob.waitForSelector('#log li:has-text("from ada")', { timeout: WAIT });
  const line = await bob.textContent('#log li:has-text("from ada")');
  assert.match(line, /^ada<b>hi<\/b> from ada/);
  assert.equal(await bob.locator('#log b').count(), 0, 'HTML arrives as text');
  await say(bob, 'hello back');
  await ada.waitForSelector('#log li:has-text("hello back")', { timeout: WAIT });
  assert.equal(await eve.locator('#log li:has-text("from ada")').count(), 0, 'rooms are isolated');

  await bob.close();
  await waitOnline(ada, ['ada']);
  await ada.waitForSelector('#log li.note:has-text("bob left")', { timeout: WAIT });
  await ada.close();
  await eve.close();
});

test('a private message reaches every tab of its recipient and the sender, nobody else', async () => {
  const ada = await openRoom(browser, address, 'lobby', 'ada');
  const bob = await openRoom(browser, address, 'lobby', 'bob');
  const bobElsewhere = await openRoom(browser, address, 'kitchen', 'bob');
  const eve = await openRoom(browser, address, 'lobby', 'eve');
  await waitOnline(ada, ['ada', 'bob', 'eve']);

  // A person clicks bob in the online list and types.
  await ada.click('#online li:text-is("bob")');
  await ada.waitForSelector('#to.on:has-text("to bob")', { timeout: WAIT });
  await say(ada, '<img src=x onerror="window.pwned=1"> psst');
  for (const page of [bob, bobElsewhere, ada]) {
    await page.waitForSelector('#log li.private:has-text("psst")', { timeout: WAIT });
    const line = await page.textContent('#log li.private:has-text("psst")');
    assert.match(line, /^ada → bob/);
    assert.equal(await page.locator('#log img').count(), 0, 'HTML arrives as text');
    assert.equal(await page.evaluate(() => window.pwned), undefined, 'nothing executed');
  }
  // eve sees bob's next public message and never the private one.
  await say(bob, 'public again');
  await eve.waitForSelector('#log li:has-text("public again")', { timeout: WAIT });
  assert.equal(await eve.locator('#log li:has-text("psst")').count(), 0, 'private stays private');

  // Back to the room: the next message is public.
  await ada.click('#to-clear');
  await say(ada, 'to everyone');
  await eve.waitForSelector('#log li:has-text("to everyone")', { timeout: WAIT });
  for (const page of [ada, bob, bobElsewhere, eve]) await page.close();
});

test('a late joiner gets the history; pages reconnect after a restart without duplicates', async () => {
  const cat = await openRoom(browser, address, 'lobby', 'cat');
  await cat.waitForSelector('#log li.history:has-text("hello back")', { timeout: WAIT });
  assert.deepEqual(await online(cat), ['cat']);

  await stopChat();
  await cat.waitForSelector('#status.closed', { timeout: WAIT });
  address = await startChat(address); // same port: the page reconnects to it
  await cat.waitForSelector('#status.open', { timeout: 30000 });
  await say(cat, 'after restart');
  await cat.waitForSelector('#log li:has-text("after restart")', { timeout: WAIT });
  // The history sent again on reconnect is not shown twice.
  assert.equal(await cat.locator('#log li:has-text("hello back")').count(), 1);
  await cat.screenshot({ path: path.join(os.tmpdir(), 'switchboard-chat.png') });
  await cat.close();
});

test('a page offline for ten messages shows all ten, once and in order, without reloading', async () => {
  const ada = await openRoom(browser, address, 'blip', 'ada');
  const bob = await openRoom(browser, address, 'blip', 'bob');
  await waitOnline(ada, ['ada', 'bob']);
  await say(bob, 'before the blip');
  await ada.waitForSelector('#log li:has-text("before the blip")', { timeout: WAIT });
  await ada.evaluate(() => { window.sameDocument = true; });

  // The network goes: new connections fail; the open socket is cut as a dropped network would.
  await ada.context().setOffline(true);
  await ada.evaluate(() => socket.close(4000, 'network gone'));
  await ada.waitForSelector('#status.closed', { timeout: WAIT });
  await waitOnline(bob, ['bob']);
  for (let n = 1; n <= 10; n++) {
    await say(bob, `missed ${n}`);
    await bob.waitForSelector(`#log li:has-text("missed ${n}")`, { timeout: WAIT });
  }
  assert.equal(await ada.locator('#log li:has-text("missed")').count(), 0, 'offline means offline');

  await ada.context().setOffline(false);
  await ada.waitForSelector('#status.open', { timeout: 30000 });
  await ada.waitForSelector('#log li.recovered:has-text("10 missed messages")', { timeout: WAIT });
  const texts = await ada.$$eval('#log li .text', (items) => items.map((li) => li.textContent));
  assert.deepEqual(texts.filter((t) => t.startsWith('missed')),
    Array.from({ length: 10 }, (_, i) => `missed ${i + 1}`), 'all ten, once, in order');
  assert.equal(await ada.locator('#log li.history').count(), 0, 'recovered, not the history again');
  assert.equal(await ada.evaluate(() => window.sameDocument), true, 'no reload');
  await say(bob, 'after the blip');
  await ada.waitForSelector('#log li:has-text("after the blip")', { timeout: WAIT });
  assert.equal(await ada.locator('#log li:has-text("before the blip")').count(), 1);
  await ada.close();
  await bob.close();
});
