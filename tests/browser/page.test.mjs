// The chat page on a phone-sized screen: nothing clipped, your own messages
// marked, the icon served (no 404 in the console).
//
// Usage: CHAT_URL=http://127.0.0.1:PORT node page.test.mjs [screenshot.png]
// (tests/browser.rs starts the chat example and runs this). Exits non-zero on
// any failure.
import assert from 'node:assert/strict';
import { hangGuard, launch, say } from './support.mjs';

const url = process.env.CHAT_URL;
assert.ok(url, 'CHAT_URL is not set');
const screenshot = process.argv[2];

const guard = hangGuard();

const chrome = await launch();

// Every failed request and console error of a page, to assert there are none.
function watch(page) {
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console: ${msg.text()}`); });
  page.on('response', (res) => { if (res.status() >= 400) problems.push(`${res.status()} ${res.url()}`); });
  return problems;
}

const message = (page, text) => page.locator('#messages li.message', { hasText: text });

try {
  // An iPhone-sized screen (390 x 844 CSS pixels), touch, mobile viewport.
  const phone = await chrome.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true,
  });
  const desk = await chrome.newContext({ viewport: { width: 960, height: 600 } });
  const carol = await phone.newPage();
  const dave = await desk.newPage();
  const problems = [carol, dave].map(watch);
  for (const page of [carol, dave]) page.setDefaultTimeout(20_000);
  await carol.goto(`${url}/?name=carol&room=phone`);
  await carol.locator('#state', { hasText: /^connected$/ }).waitFor();
  await dave.goto(`${url}/?name=dave&room=phone`);
  await dave.locator('#state', { hasText: /^connected$/ }).waitFor();
  await carol.locator('#members li', { hasText: 'dave' }).waitFor();

  const long = 'a long line that must wrap on a phone instead of being clipped: '
    + 'https://example.com/' + 'x'.repeat(120);
  await say(carol, 'hi from my phone');
  await say(dave, long);
  await message(carol, 'x'.repeat(40)).waitFor();

  // Own messages are marked on the page that sent them, and only there.
  assert.equal(await message(carol, 'hi from my phone').getAttribute('class'), 'message mine');
  assert.equal(await message(carol, 'example.com').getAttribute('class'), 'message');
  assert.equal(await message(dave, 'hi from my phone').getAttribute('class'), 'message');
  await message(dave, 'example.com').and(dave.locator('.mine')).waitFor();

  // At 390 px the messages keep (nearly) the whole width, nothing scrolls
  // sideways, and the long message wraps inside its list.
  const layout = await carol.evaluate(() => {
    const box = (sel) => document.querySelector(sel).getBoundingClientRect();
    const last = [...document.querySelectorAll('#messages li.message')].pop();
    return {
      page: document.documentElement.scrollWidth,
      messages: box('#messages').width,
      messagesRight: box('#messages').right,
      lastRight: last.getBoundingClientRect().right,
      send: box('#send').right,
      members: box('aside').width,
    };
  });
  assert.ok(layout.page <= 390, `the page scrolls sideways: ${JSON.stringify(layout)}`);
  assert.ok(layout.messages >= 350, `messages squeezed: ${JSON.stringify(layout)}`);
  assert.ok(layout.lastRight <= layout.messagesRight, `message clipped: ${JSON.stringify(layout)}`);
  assert.ok(layout.send <= 390, `send button off screen: ${JSON.stringify(layout)}`);
  assert.deepEqual(await carol.locator('#members li').allTextContents(), ['carol', 'dave']);
  await carol.screenshot({ path: screenshot || undefined });

  // The icon: fetched by the page's <link rel=icon>, and at the default path.
  const icon = await carol.request.get(`${url}/favicon.ico`);
  assert.equal(icon.status(), 200);
  assert.equal(icon.headers()['content-type'], 'image/x-icon');
  assert.deepEqual(problems.flat(), []);
  console.log('ok: phone layout, own messages marked, icon served');
} catch (err) {
  console.error('FAIL:', err);
  process.exitCode = 1;
} finally {
  await chrome.close();
  clearTimeout(guard);
}
