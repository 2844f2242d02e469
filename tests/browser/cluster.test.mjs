// Two people on two nodes of a chat cluster (two servers sharing Redis) chat
// through the real page in headless Chromium.
//
// Usage: CHAT_URL=http://127.0.0.1:PORT CHAT_URL_2=http://127.0.0.1:PORT2 node cluster.test.mjs
// (tests/redis_browser.rs starts both nodes and runs this). Exits non-zero on
// any failure.
import assert from 'node:assert/strict';
import { hangGuard, launch, say, newPage } from './support.mjs';

const urls = [process.env.CHAT_URL, process.env.CHAT_URL_2];
assert.ok(urls[0] && urls[1], 'CHAT_URL and CHAT_URL_2 must be set');

const guard = hangGuard();

const chrome = await launch();

async function open(url, name) {
  const page = await newPage(chrome, { viewport: { width: 960, height: 600 } });
  await page.goto(`${url}/?name=${name}&room=cluster`);
  await page.locator('#state', { hasText: /^connected$/ }).waitFor();
  return page;
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
