// The examples for the common jobs, in headless Chromium:
//
//   JOB=tokens         fetch + stream reader reads a POST's tokens as they come
//   JOB=notifications  cookie session, EventSource withCredentials, 403 for
//                      another user's topic
//   JOB=dashboard      live figures from a background task
//
// Usage: JOB=... CHAT_URL=http://127.0.0.1:PORT node jobs.test.mjs
// (tests/browser_jobs.rs starts the example and runs this). Exits non-zero on
// any failure.
import assert from 'node:assert/strict';
import { hangGuard, launch, newPage } from './support.mjs';

const url = process.env.CHAT_URL;
const job = process.env.JOB;
assert.ok(url, 'CHAT_URL is not set');

const guard = hangGuard();

const chrome = await launch();

async function open(path) {
  const page = await newPage(chrome, { viewport: { width: 800, height: 600 } });
  await page.goto(url + path);
  return page;
}

async function tokens() {
  const page = await open('/');
  await page.click('#go');
  await page.locator('#status', { hasText: /^done: \d+ tokens$/ }).waitFor();
  assert.equal(await page.textContent('#out'), 'You said: Server-Sent Events stream tokens as they are made');
  assert.equal(await page.textContent('#status'), 'done: 10 tokens');
  // A stopped generation: the page aborts its fetch.
  await page.fill('#prompt', Array(300).fill('word').join(' '));
  await page.click('#go');
  await page.waitForFunction(() => document.getElementById('out').textContent.includes('word'));
  await page.click('#stop');
  await page.locator('#status', { hasText: 'stopped' }).waitFor();
  console.log('ok: tokens read with fetch and a stream reader; stop aborts');
}

async function notifications() {
  const alice = await open('/');
  const bob = await open('/');
  for (const [page, name] of [[alice, 'alice'], [bob, 'bob']]) {
    await page.fill('#user', name);
    await page.click('#login button');
    await page.locator('#status', { hasText: `listening as ${name}` }).waitFor();
  }
  await bob.fill('#to', 'alice');
  await bob.fill('#text', 'your build is green');
  await bob.click('#notify button');
  await alice.locator('#feed li.personal', { hasText: 'your build is green' }).waitFor();
  assert.equal(await alice.textContent('#feed li.personal .from'), 'bob');
  assert.equal(await bob.locator('#feed li').count(), 0);
  await bob.fill('#to', '*');
  await bob.fill('#text', 'lunch');
  await bob.click('#notify button');
  await alice.locator('#feed li.announcement', { hasText: 'lunch' }).waitFor();
  await bob.locator('#feed li.announcement', { hasText: 'lunch' }).waitFor();

  // Alice's cookie does not open bob's topic: 403, and EventSource gives up.
  const refused = await alice.evaluate(() => new Promise((resolve) => {
    const source = new EventSource('/events?topic=user:bob', { withCredentials: true });
    source.onopen = () => resolve('opened');
    source.onerror = () => resolve(source.readyState === EventSource.CLOSED ? 'closed' : 'retrying');
  }));
  assert.equal(refused, 'closed');
  const status = await alice.evaluate(async () => (await fetch('/events?topic=user:bob')).status);
  assert.equal(status, 403);
  console.log('ok: per-user notifications with a cookie session; 403 for another user');
}

async function dashboard() {
  const page = await open('/');
  await page.locator('#state', { hasText: 'live' }).waitFor();
  await page.waitForFunction(() => Number(document.getElementById('tick').textContent) >= 3);
  await page.waitForFunction(() => document.getElementById('viewers').textContent === '1');
  const points = await page.getAttribute('#plot', 'points');
  assert.ok(points.split(' ').length >= 2, points);
  console.log('ok: dashboard updates live');
}

try {
  const jobs = { tokens, notifications, dashboard };
  assert.ok(jobs[job], `unknown JOB ${job}`);
  await jobs[job]();
} catch (err) {
  console.error('FAIL:', err);
  process.exitCode = 1;
} finally {
  await chrome.close();
  clearTimeout(guard);
}
