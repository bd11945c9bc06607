// The chat in a real browser: two tabs in one room, a third in another room, HTML escaping,
// and reconnection after the server restarts. Not part of CI (it needs Chromium and npm).
//
//   apt-get install chromium            # Debian's Chromium: /usr/bin/chromium
//   npm install --prefix /tmp/pw playwright-core
//   cargo build --release --example chat && target/release/examples/chat &
//   NODE_PATH=/tmp/pw/node_modules node scripts/browser-chat.js
//
// CHAT_BIN names the chat binary to restart (default target/release/examples/chat); the
// screenshot of tab A goes to $SCREENSHOT (default /tmp/chat-tab-a.png).
const { chromium } = require('playwright-core');
const { execSync, spawn } = require('child_process');
(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const ctx = await browser.newContext();
  const a = await ctx.newPage(), b = await ctx.newPage(), other = await ctx.newPage();
  await a.goto('http://127.0.0.1:8000/');
  await a.fill('#room', 'lobby'); await a.click('button[type=submit]');
  await a.waitForURL('**/chat/lobby/');
  await b.goto('http://127.0.0.1:8000/chat/lobby/');
  await other.goto('http://127.0.0.1:8000/chat/other/');
  for (const p of [a, b, other]) await p.waitForSelector('#status.open');
  await a.fill('#user', 'ada'); await a.fill('#message', '<b>hi</b> from tab A');
  await a.press('#message', 'Enter');
  await b.waitForSelector('#log li:has-text("from tab A")');
  await a.waitForSelector('#log li:has-text("from tab A")');
  const bText = await b.textContent('#log');
  const boldCount = await b.locator('#log b').count();
  await b.fill('#user', 'bob'); await b.fill('#message', 'hello back'); await b.click('#button');
  await a.waitForSelector('#log li:has-text("hello back")');
  const otherText = await other.textContent('#log');
  console.log('B sees:', JSON.stringify(bText), 'bold elements:', boldCount);
  console.log('other room sees:', JSON.stringify(otherText));
  // Restart the server: the page must reconnect by itself.
  execSync("pkill -f 'release/examples/cha[t]' || true");
  await a.waitForSelector('#status.closed');
  console.log('after kill, status:', await a.textContent('#status'));
  const server = spawn(process.env.CHAT_BIN || 'target/release/examples/chat', [], { stdio: 'ignore', detached: true });
  server.unref();
  await a.waitForSelector('#status.open', { timeout: 30000 });
  await b.waitForSelector('#status.open', { timeout: 30000 });
  await a.fill('#message', 'after restart'); await a.click('#button');
  await b.waitForSelector('#log li:has-text("after restart")');
  console.log('reconnected and chatting after restart');
  await a.screenshot({ path: process.env.SCREENSHOT || '/tmp/chat-tab-a.png' });
  await browser.close();
})().catch(e => { console.error(e); process.exit(1); });
