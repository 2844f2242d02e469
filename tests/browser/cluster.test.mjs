// Two people on two nodes of a chat cluster (two servers sharing Redis) chat
// through the real page in headless Chromium.
//
// Usage: CHAT_URL=http://127.0.0.1:PORT CHAT_URL_2=http://127.0.0.1:PORT2 node cluster.test.mjs
// (tests/redis_browser.rs starts both nodes and runs this). Exits non-zero on
// any failure.
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const urls = [process.env.CHAT_URL, process.env.CHAT_URL_2];
assert.ok(urls[0] && urls[1], 'CHAT_URL and CHAT_URL_2 must be set');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const guard = setTimeout(() => {
  console.error('FAIL: browser test hung');
  process.exit(1);
}, 120_000);

const chrome = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync',
  ],
});

async function open(url, name) {
  const context = await chrome.newContext({ viewport: { width: 960, height: 600 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (err) => { throw err; });
  await page.goto(`${url}/?name=${name}&room=cluster`);
  await page.locator('#state', { hasText: /^connected$/ }).waitFor();
  return page;
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.click('#send');
  await page.waitForFunction(() => document.getElementById('text').value === '');
}

const messageOn = (page, name, text) =>
  page.locator('#messages li.message', { has: page.locator('.name', { hasText: name }) })
    .filter({ has: page.locator('.text', { hasText: text }) });

try {
  const alice = await open(urls[0], 'alice');
  const bob = await open(urls[1], 'bob');
  await alice.locator('#members li', { hasText: 'bob' }).waitFor();
  assert.deepEqual(await bob.locator('#members li').allTextContents(), ['alice', 'bob']);
  await say(bob, 'hello from node 2');
  await messageOn(alice, 'bob', 'hello from node 2').waitFor();
  await say(alice, 'hello from node 1');
  await messageOn(bob, 'alice', 'hello from node 1').waitFor();
  await bob.click('#toggle');
  await alice.locator('#messages li.notice', { hasText: 'bob left' }).waitFor();
  console.log('ok: two pages on two nodes chat');
} catch (err) {
  console.error('FAIL:', err);
  process.exitCode = 1;
} finally {
  clearTimeout(guard);
  await chrome.close();
}
