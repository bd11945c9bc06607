// The poll example in headless Chromium: three browsers vote, every page's bars and counts move
// live, a second vote moves the first, the option shown as text, and the pages reconnect after
// a server restart.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { WAIT, exampleBin, launchBrowser, screenshot, startExample, stop } = require('./pages');

const ARGS = ['--question', 'Which language for the next service?',
  '--option', 'Rust', '--option', 'Go', '--option', 'Python', '--option', '<i>TypeScript</i>'];
let server = null;
let address = null;
let browser = null;

before(async () => {
  ({ child: server, address } = await startExample(exampleBin('poll'), ['--addr', '127.0.0.1:0', ...ARGS]));
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await stop(server);
});

/** A browser of its own (its own voter cookie) on the poll. */
async function voter() {
  const page = await (await browser.newContext({ viewport: { width: 800, height: 480 } })).newPage();
  await page.goto(`http://${address}/`);
  await page.waitForSelector('#status.open', { timeout: WAIT });
  await page.waitForSelector('#options li[data-count]', { timeout: WAIT });
  return page;
}

const vote = (page, option) => page.click(`#options li[data-option="${option}"] button`);

/** Waits until `page` shows `want` ({option: count}). */
async function counts(page, want) {
  await page.waitForFunction((w) => Object.entries(w).every(([o, n]) =>
    document.querySelector(`#options li[data-option="${CSS.escape(o)}"]`)?.dataset.count === String(n)), want, { timeout: WAIT });
}

test('votes move every page\'s bars live, once per voter, and pages come back after a restart', async () => {
  const [ada, bob, eve] = [await voter(), await voter(), await voter()];
  assert.equal(await ada.textContent('#question'), 'Which language for the next service?');
  assert.equal(await ada.locator('#options i').count(), 0);
  assert.equal(await ada.textContent('#options li:nth-child(4) .label'), '<i>TypeScript</i>');

  await vote(ada, 'Rust');
  await vote(bob, 'Rust');
  await vote(eve, 'Go');
  for (const page of [ada, bob, eve]) await counts(page, { Rust: 2, Go: 1, Python: 0 });
  // eve changes her mind: her vote moves, it does not add up.
  await vote(eve, 'Python');
  for (const page of [ada, bob, eve]) await counts(page, { Rust: 2, Go: 0, Python: 1 });
  await eve.waitForSelector('#options li.yours[data-option="Python"]', { timeout: WAIT });
  await counts(ada, { Rust: 2 });
  const width = await ada.$eval('#options li[data-option="Rust"] .bar', (b) => b.style.width);
  assert.ok(/^66\.6/.test(width), width);
  await screenshot(ada, 'poll');

  // A reload keeps the voter (cookie): the page shows her own vote.
  await eve.reload();
  await eve.waitForSelector('#options li.yours[data-option="Python"]', { timeout: WAIT });

  // The server restarts (the tally was in memory): the pages reconnect and voting goes on.
  await stop(server);
  await ada.waitForSelector('#status:not(.open)', { timeout: WAIT });
  ({ child: server } = await startExample(exampleBin('poll'), ['--addr', address, ...ARGS]));
  await ada.waitForSelector('#status.open', { timeout: WAIT });
  await bob.waitForSelector('#status.open', { timeout: WAIT });
  await vote(bob, 'Go');
  await counts(ada, { Go: 1 });
});
