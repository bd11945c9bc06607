// Two chat processes sharing rooms through one redis-server, in a real browser (see
// chat.test.js for how `.ci/run` runs these). Each page talks to its own process; both see every
// message and who is online on either; when one process is killed and started again, its page
// reconnects and gets what was said meanwhile, recovered from the room's stream in Redis.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { CHAT_BIN, WAIT, launchBrowser, openRoom, say, waitOnline } = require('./pages');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-redis-browser-'));

const children = new Set();
let redisUrl = null;
let browser = null;

/** Spawns `cmd` and resolves with the child once its stdout matches `ready` (the match too). */
function startUntil(cmd, args, ready) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    children.add(child);
    child.on('exit', () => children.delete(child));
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${cmd} did not start: ${out}`)), WAIT);
    child.on('error', (error) => reject(new Error(`cannot run ${cmd}: ${error.message}` +
      (cmd === 'redis-server' ? ' (install the Debian package redis-server)' : ''))));
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const found = ready.exec(out);
      if (found) {
        clearTimeout(timer);
        child.stdout.resume();
        resolve({ child, found });
      }
    });
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

async function startChat(addr, name) {
  const { child, found } = await startUntil(CHAT_BIN,
    ['--addr', addr, '--db', path.join(tmp, `${name}.sqlite3`), '--redis', redisUrl,
      '--process-ttl', '2'],
    /open http:\/\/([^/]+)\//);
  return { child, address: found[1] };
}

function kill(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

before(async () => {
  const port = await freePort();
  await startUntil('redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', tmp, '--dbfilename', 'none.rdb'],
    /Ready to accept connections/);
  redisUrl = `redis://127.0.0.1:${port}`;
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  await Promise.all([...children].map(kill));
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('pages on two processes share a room; a restarted process\'s page recovers what it missed', async () => {
  const one = await startChat('127.0.0.1:0', 'one');
  let two = await startChat('127.0.0.1:0', 'two');
  const ada = await openRoom(browser, one.address, 'lobby', 'ada');
  const bob = await openRoom(browser, two.address, 'lobby', 'bob');
  await waitOnline(ada, ['ada', 'bob']);
  await waitOnline(bob, ['ada', 'bob']);

  await say(ada, 'hello from one');
  await bob.waitForSelector('#log li:has-text("hello from one")', { timeout: WAIT });
  await say(bob, 'hello from two');
  await ada.waitForSelector('#log li:has-text("hello from two")', { timeout: WAIT });

  // Process two dies (SIGKILL: no goodbye): ada sees bob go once process one notices it stopped
  // beating (`--process-ttl 2`); what she says meanwhile reaches bob from the history.
  await kill(two.child);
  await bob.waitForSelector('#status.closed', { timeout: WAIT });
  await waitOnline(ada, ['ada']);
  await say(ada, 'said while two was down');
  await ada.waitForSelector('#log li:has-text("said while two was down")', { timeout: WAIT });
  two = await startChat(two.address, 'two'); // same port: the page reconnects to it
  await bob.waitForSelector('#status.open', { timeout: 30000 });
  await bob.waitForSelector('#log li:has-text("said while two was down")', { timeout: WAIT });
  // Recovered from the room's stream in Redis, from where bob's page was: not the history.
  await bob.waitForSelector('#log li.recovered:has-text("1 missed message")', { timeout: WAIT });
  assert.equal(await bob.locator('#log li.history').count(), 0);
  await waitOnline(ada, ['ada', 'bob']);
  assert.equal(await bob.locator('#log li:has-text("hello from one")').count(), 1,
    'the history sent again on reconnect is not shown twice');
  await ada.close();
  await bob.close();
});
