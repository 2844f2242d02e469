// A big room in the chat page: served with PRESENCE_FULL_MAX=3, the page lists
// members one by one up to three, shows "N members" (and "and K more") once
// the room is bigger, with counts instead of a line per join, and lists them
// one by one again when it shrinks back.
//
// Usage: CHAT_URL=http://127.0.0.1:PORT node big_room.test.mjs
// (examples/chat/tests/browser.rs starts the chat and runs this). Exits
// non-zero on any failure.
import assert from 'node:assert/strict';
import { hangGuard, launch, newPage } from './support.mjs';

const url = process.env.CHAT_URL;
assert.ok(url, 'CHAT_URL is not set');
const guard = hangGuard();
const chrome = await launch();

try {
  const ann = await newPage(chrome);
  await ann.goto(`${url}/?name=ann&room=big`);
  await ann.locator('#state', { hasText: /^connected$/ }).waitFor();
  await ann.locator('#members li', { hasText: 'ann' }).waitFor();

  // Four more members, as four EventSources of a second page (one browser's
  // six connections per origin are enough).
  const crowd = await newPage(chrome);
  await crowd.goto(`${url}/?name=crowd&room=elsewhere`);
  const title = ann.locator('#members-title');
  await crowd.evaluate(() => {
    window.sources = ['bo', 'cy', 'di', 'ed'].map(
      (name) => new EventSource(`/sse?room=big&name=${name}`));
  });
  await title.filter({ hasText: /^5 members$/ }).waitFor();
  // At most three names, and a line for the rest.
  const listed = await ann.locator('#members li:not(.more)').count();
  assert.ok(listed <= 3, `a big room lists ${listed} names`);
  await ann.locator('#members li.more', { hasText: /^and \d+ more$/ }).waitFor();
  // Joins of a big room are not written out one by one.
  const joined = await ann.locator('#messages li.notice', { hasText: 'ed joined' }).count();
  assert.equal(joined, 0, 'a big room wrote a join line');

  // A newcomer sees the count at once, from its snapshot.
  const fay = await newPage(chrome);
  await fay.goto(`${url}/?name=fay&room=big`);
  await fay.locator('#members-title', { hasText: /^[56] members$/ }).waitFor();

  // Back to three: names again, then a line per leave.
  await crowd.evaluate(() => { for (const s of window.sources.splice(1)) s.close(); });
  await fay.close();
  await title.filter({ hasText: /^Members \(2\)$/ }).waitFor();
  await ann.locator('#members li', { hasText: 'bo' }).waitFor();
  await crowd.evaluate(() => window.sources[0].close());
  await ann.locator('#messages li.notice', { hasText: 'bo left' }).waitFor();
  await title.filter({ hasText: /^Members \(1\)$/ }).waitFor();
  console.log('ok: the page shows a big room as a count, and a small one by name');
} finally {
  clearTimeout(guard);
  await chrome.close();
}
