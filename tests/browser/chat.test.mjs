// Two people chat through the real page in headless Chromium, then one leaves.
//
// Usage: CHAT_URL=http://127.0.0.1:PORT node chat.test.mjs [screenshot.png]
// (tests/browser.rs starts the chat example and runs this). Exits non-zero on
// any failure.
import assert from 'node:assert/strict';
import { hangGuard, launch, say, newPage } from './support.mjs';

const url = process.env.CHAT_URL;
assert.ok(url, 'CHAT_URL is not set');
const screenshot = process.argv[2];

const guard = hangGuard();

const chrome = await launch();

async function open(name) {
  // Separate contexts: separate cookies and connections, like two people.
  const page = await newPage(chrome, { viewport: { width: 960, height: 600 } });
  await page.goto(`${url}/?name=${name}&room=browser`);
  await page.locator('#state', { hasText: /^connected$/ }).waitFor();
  return page;
}

const members = (page) => page.locator('#members li').allTextContents();

const messageOn = (page, name, text) =>
  page.locator('#messages li.message', { has: page.locator('.name', { hasText: name }) })
    .filter({ has: page.locator('.text', { hasText: text }) });

try {
  const alice = await open('alice');
  const bob = await open('bob');
  await alice.locator('#members li', { hasText: 'bob' }).waitFor();
  assert.deepEqual(await members(alice), ['alice', 'bob']);
  assert.deepEqual(await members(bob), ['alice', 'bob']);

  // Typed into the page, sent with the button, seen on the other page.
  const hostile = 'hi alice <img src=x onerror="window.pwned=1"> & <b>bold</b>';
  await say(bob, hostile);
  await messageOn(alice, 'bob', hostile).waitFor();
  assert.equal(await messageOn(alice, 'bob', hostile).locator('.text').textContent(), hostile);
  assert.equal(await alice.evaluate(() => document.querySelectorAll('#messages img, #messages b').length), 0);
  assert.equal(await alice.evaluate(() => window.pwned), undefined);
  await say(alice, 'hello bob, all good over SSE');
  await messageOn(bob, 'alice', 'hello bob, all good over SSE').waitFor();
  await say(bob, 'yes: one encoding, shared by every subscriber');
  await messageOn(alice, 'bob', 'one encoding').waitFor();
  assert.equal(await bob.inputValue('#text'), '');
  if (screenshot) await alice.screenshot({ path: screenshot });

  // Disconnect: `close()` ends the connection, and alice sees bob leave.
  await bob.click('#toggle');
  await bob.locator('#state', { hasText: 'disconnected' }).waitFor();
  assert.equal(await bob.textContent('#toggle'), 'Connect');
  await alice.locator('#messages li.notice', { hasText: 'bob left' }).waitFor();
  await alice.waitForFunction(() => document.querySelectorAll('#members li').length === 1);
  assert.deepEqual(await members(alice), ['alice']);

  // While bob is away alice writes; reconnecting replays it for him.
  await say(alice, 'you missed this');
  await bob.click('#toggle');
  await bob.locator('#state', { hasText: /^connected$/ }).waitFor();
  await messageOn(bob, 'alice', 'you missed this').waitFor();
  await alice.locator('#members li', { hasText: 'bob' }).waitFor();
  assert.deepEqual(await members(bob), ['alice', 'bob']);
  assert.equal(await messageOn(bob, 'alice', 'you missed this').count(), 1);

  console.log('ok: two pages chatted, bob left and came back');
} catch (err) {
  console.error('FAIL:', err);
  process.exitCode = 1;
} finally {
  await chrome.close();
  clearTimeout(guard);
}
