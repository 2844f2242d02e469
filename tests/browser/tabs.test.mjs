// Three rooms as tabs over one EventSource: unread counts, and after
// Disconnect/Connect each tab shows exactly what was posted to its room
// meanwhile (one composite Last-Event-ID resumes them all).
//
// Usage: CHAT_URL=http://127.0.0.1:PORT node tabs.test.mjs [screenshot.png]
// (examples/chat/tests/browser.rs starts the chat and runs this). Exits
// non-zero on any failure.
import assert from 'node:assert/strict';
import { hangGuard, launch, newPage } from './support.mjs';

const url = process.env.CHAT_URL;
assert.ok(url, 'CHAT_URL is not set');
const screenshot = process.argv[2];
const guard = hangGuard();
const chrome = await launch();

/** Posts `text` to `room` as bob, from Node (not through the page). */
async function post(room, text) {
  const res = await fetch(`${url}/send`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ room, name: 'bob', text }),
  });
  assert.equal(res.status, 202, await res.text());
}

const texts = (page) => page.locator('#messages li.message .text').allTextContents();
const tab = (page, room) => page.locator(`#tabs .tab[data-room="${room}"]`);

try {
  const ann = await newPage(chrome, { viewport: { width: 960, height: 600 } });
  const streams = [];
  ann.on('request', (req) => { if (new URL(req.url()).pathname === '/sse') streams.push(req.url()); });
  await ann.goto(`${url}/?name=ann&room=r1&room=r2&room=r3`);
  await ann.locator('#state', { hasText: /^connected$/ }).waitFor();
  assert.equal(streams.length, 1, `one EventSource for three rooms: ${streams}`);
  for (const room of ['r1', 'r2', 'r3']) await tab(ann, room).waitFor();
  await ann.locator('#members li', { hasText: 'ann' }).waitFor();

  // Live: the active tab shows its room, the others count unread messages.
  for (const room of ['r1', 'r2', 'r3']) await post(room, `${room} live`);
  await ann.locator('#messages li.message', { hasText: 'r1 live' }).waitFor();
  await tab(ann, 'r2').locator('.unread', { hasText: /^1$/ }).waitFor();
  await tab(ann, 'r3').locator('.unread', { hasText: /^1$/ }).waitFor();
  assert.deepEqual(await texts(ann), ['r1 live']);

  // Away: messages to every room, then back on the same stream.
  await ann.click('#toggle');
  await ann.locator('#state', { hasText: /^disconnected$/ }).waitFor();
  const missed = { r1: ['r1 a'], r2: ['r2 a', 'r2 b'], r3: ['r3 a', 'r3 b', 'r3 c'] };
  for (const [room, list] of Object.entries(missed)) for (const text of list) await post(room, text);
  await ann.click('#toggle');
  await ann.locator('#state', { hasText: /^connected$/ }).waitFor();
  assert.equal(streams.length, 2, 'one EventSource again');
  assert.match(new URL(streams[1]).searchParams.get('lastEventId') || '', /^m1\./,
    'the composite cursor resumes every room');
  await ann.locator('#messages li.message', { hasText: 'r1 a' }).waitFor();
  await tab(ann, 'r2').locator('.unread', { hasText: /^3$/ }).waitFor();
  await tab(ann, 'r3').locator('.unread', { hasText: /^4$/ }).waitFor();
  // Each tab: what it had, then exactly what was missed, once each.
  assert.deepEqual(await texts(ann), ['r1 live', ...missed.r1]);
  for (const room of ['r2', 'r3']) {
    await tab(ann, room).click();
    await ann.locator(`#tabs .tab.active[data-room="${room}"]`).waitFor();
    assert.deepEqual(await texts(ann), [`${room} live`, ...missed[room]]);
    assert.equal(await tab(ann, room).locator('.unread').count(), 0, 'read once shown');
  }
  // Posting goes to the active tab's room.
  await ann.fill('#text', 'from the r3 tab');
  await ann.click('#send');
  await ann.locator('#messages li.message', { hasText: 'from the r3 tab' }).waitFor();
  await tab(ann, 'r1').click();
  assert.ok(!(await texts(ann)).includes('from the r3 tab'));
  if (screenshot) {
    await post('r2', 'one more for r2');
    await tab(ann, 'r2').locator('.unread', { hasText: /^1$/ }).waitFor();
    await ann.screenshot({ path: screenshot });
  }
  console.log('ok: three rooms as tabs over one EventSource, resumed exactly');
} finally {
  clearTimeout(guard);
  await chrome.close();
}
