// What the browser tests share: where the chat binary and Chromium are, and how a page joins a
// room, talks, and waits for the online list. Not a test file itself (node --test runs *.test.js).
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

const CHAT_BIN = process.env.CHAT_BIN || 'target/debug/examples/chat';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT = 15000;

/** Starts the chat binary with `args` (`--addr` among them) and resolves with the child and the
 * address it listens on, once it prints it. */
function startChat(args) {
  return startExample(CHAT_BIN, args);
}

/** Starts example binary `bin` (a path) with `args` and resolves with the child and the address
 * it listens on, once it prints `open http(s)://<address>/`. */
function startExample(bin, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${bin} did not start: ${out}`)), WAIT);
    child.on('error', reject);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const found = /open https?:\/\/([^/]+)\//.exec(out);
      if (found) {
        clearTimeout(timer);
        child.stdout.resume();
        resolve({ child, address: found[1] });
      }
    });
  });
}

/** The binary of example `name`, beside the chat's. */
function exampleBin(name) {
  return path.join(path.dirname(CHAT_BIN), name);
}

/** Stops `child` (SIGTERM, as a deployment does) and waits until it has exited. */
function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/** Saves `page` as `docs/images/<name>.png` for the README's gallery. */
async function screenshot(page, name) {
  const dir = path.join(__dirname, '..', '..', 'docs', 'images');
  fs.mkdirSync(dir, { recursive: true });
  await page.waitForFunction(() => document.getAnimations().every((a) => a.playState !== 'running'), null, { timeout: WAIT });
  await page.screenshot({ path: path.join(dir, `${name}.png`) });
}

/** Headless Debian Chromium, quiet (no background traffic, no QUIC). */
function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** The key of `name`'s pages: every page a test opens as one user holds that user's name
 * (each page is a browser context of its own, which would otherwise make a key of its own). */
function keyOf(name) {
  return Buffer.from(name).toString('hex').padEnd(32, '0').slice(0, 32);
}

/** A new page in `room` on the chat at `address`, as user `name`, once its socket is open;
 * over `https` the browser accepts the chat's self-signed certificate. */
async function openRoom(browser, address, room, name, scheme = 'http') {
  const context = await browser.newContext({ ignoreHTTPSErrors: scheme === 'https' });
  const page = await context.newPage();
  await page.addInitScript(([n, key]) => {
    localStorage.setItem('switchboard.user', n);
    localStorage.setItem('switchboard.key', key);
  }, [name, keyOf(name)]);
  await page.goto(`${scheme}://${address}/chat/${room}/`);
  await page.waitForSelector('#status.open', { timeout: WAIT });
  return page;
}

async function say(page, text) {
  await page.fill('#message', text);
  await page.press('#message', 'Enter');
}

const online = (page) => page.$$eval('#online li', (items) => items.map((li) => li.textContent));

/** Waits until the page's online list is exactly `names`. */
async function waitOnline(page, names) {
  await page.waitForFunction(
    (want) => JSON.stringify([...document.querySelectorAll('#online li')].map((li) => li.textContent)) === want,
    JSON.stringify(names), { timeout: WAIT });
}

module.exports = {
  CHAT_BIN, WAIT, exampleBin, keyOf, launchBrowser, openRoom, say, online, screenshot, startChat,
  startExample, stop, waitOnline,
};
