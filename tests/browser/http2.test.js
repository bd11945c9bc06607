// The chat over https in headless Chromium (as chat.test.js): a self-signed certificate made by
// openssl, `--tls-cert/--tls-key`, two pages that chat — and the server's own count says that
// both pages' WebSockets came over HTTP/2 (RFC 8441), not over HTTP/1.1 connections of their own.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const { WAIT, launchBrowser, openRoom, say, startChat, waitOnline } = require('./pages');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-browser-http2-'));
const cert = path.join(dir, 'cert.pem');
const key = path.join(dir, 'key.pem');

let chat = null;
let address = null;
let browser = null;

/** The chat's `/metrics` sample `name`, read over https trusting only the test's certificate. */
function metric(name) {
  return new Promise((resolve, reject) => {
    const [host, port] = address.split(':');
    const request = https.get({ host, port, path: '/metrics', ca: fs.readFileSync(cert), servername: 'localhost' }, (res) => {
      let text = '';
      res.on('data', (chunk) => { text += chunk; });
      res.on('end', () => {
        const line = text.split('\n').find((l) => l.startsWith(name + ' '));
        resolve(line ? Number(line.split(' ').pop()) : NaN);
      });
    });
    request.on('error', reject);
  });
}

before(async () => {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  ({ child: chat, address } = await startChat(['--addr', '127.0.0.1:0', '--db', path.join(dir, 'chat.sqlite3'),
    '--tls-cert', cert, '--tls-key', key]));
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (chat && chat.exitCode === null) chat.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('two pages chat over wss, and both WebSockets came over HTTP/2', async () => {
  const accepted = 'switchboard_handshakes_accepted_total';
  const overHttp2 = 'switchboard_handshakes_accepted_http2_total';
  assert.equal(await metric(overHttp2), 0);
  const ada = await openRoom(browser, address, 'h2', 'ada', 'https');
  const bob = await openRoom(browser, address, 'h2', 'bob', 'https');
  await waitOnline(ada, ['ada', 'bob']);
  // The pages themselves came over HTTP/2 (ALPN).
  for (const page of [ada, bob]) {
    const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    assert.equal(protocol, 'h2');
  }
  await say(ada, 'hello over http/2');
  await bob.waitForSelector('#log li:has-text("hello over http/2")', { timeout: WAIT });
  await say(bob, 'and back');
  await ada.waitForSelector('#log li:has-text("and back")', { timeout: WAIT });
  // The server's side: every WebSocket it accepted was an extended CONNECT on an HTTP/2 stream.
  assert.equal(await metric(accepted), 2);
  assert.equal(await metric(overHttp2), 2);
});
