// The examples for the common jobs, in headless Chromium:
//
//   JOB=tokens         fetch + stream reader reads a POST's tokens as they come
//   JOB=notifications  cookie session, ONE EventSource withCredentials for a
//                      user's topics, a foreign topic refused, 403 for all foreign
//   JOB=dashboard      ONE EventSource for every widget: each widget's state at
//                      once, then live updates
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

// Opens `path` in a new page that records every EventSource it opens
// (`window.sources`) and, in order, the events of the `kinds` they receive
// (`window.received`).
async function open(path, kinds = []) {
  const page = await newPage(chrome, { viewport: { width: 800, height: 600 } });
  await page.addInitScript((kinds) => {
    const Native = window.EventSource;
    window.sources = [];
    window.received = [];
    window.EventSource = class extends Native {
      constructor(...args) {
        super(...args);
        window.sources.push(String(args[0]));
        for (const kind of kinds) this.addEventListener(kind, () => window.received.push(kind));
      }
    };
  }, kinds);
  await page.goto(url + path);
  return page;
}

async function sources(page) {
  return page.evaluate(() => window.sources);
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
  // One stream per page for both topics.
  assert.deepEqual(await sources(alice), ['/events?topic=user%3Aalice&topic=announcements']);
  assert.deepEqual(await sources(bob), ['/events?topic=user%3Abob&topic=announcements']);

  // Asking for bob's topic with her own: the stream opens on hers and says
  // first what it refused.
  const mixed = await alice.evaluate(() => new Promise((resolve) => {
    const source = new EventSource('/events?topic=user:alice&topic=user:bob', { withCredentials: true });
    source.addEventListener('refused', (e) => { source.close(); resolve(JSON.parse(e.data).topics); });
    source.onerror = () => resolve('error');
  }));
  assert.deepEqual(mixed, ['user:bob']);

  // Alice's cookie does not open bob's topic: 403, and EventSource gives up.
  const refused = await alice.evaluate(() => new Promise((resolve) => {
    const source = new EventSource('/events?topic=user:bob', { withCredentials: true });
    source.onopen = () => resolve('opened');
    source.onerror = () => resolve(source.readyState === EventSource.CLOSED ? 'closed' : 'retrying');
  }));
  assert.equal(refused, 'closed');
  const status = await alice.evaluate(async () => (await fetch('/events?topic=user:bob')).status);
  assert.equal(status, 403);
  console.log('ok: per-user notifications over one stream with a cookie session; a foreign topic refused, 403 for all foreign');
}

async function dashboard() {
  const widgets = ['load', 'viewers', 'uptime', 'started'];
  const first = await open('/', widgets);
  // Every widget at once: the stream's first events are one of each widget
  // (its latest state, `started` published long before), then live updates.
  await first.waitForFunction((n) => window.received.length >= n, widgets.length);
  const received = await first.evaluate(() => window.received);
  assert.deepEqual([...received.slice(0, widgets.length)].sort(), [...widgets].sort());
  for (const w of widgets) assert.notEqual(await first.textContent('#' + w), '–', w);
  // ONE EventSource for all of them.
  assert.deepEqual(await sources(first), ['/sse?widget=load&widget=viewers&widget=uptime&widget=started']);
  await first.locator('#state', { hasText: 'live' }).waitFor();
  await first.waitForFunction(() => document.getElementById('plot').getAttribute('points').split(' ').length >= 3);
  await first.waitForFunction(() => document.getElementById('viewers').textContent === '1');
  // A second page opens mid-update: every widget at once too, and the first
  // page sees the viewer count change live.
  const second = await open('/', widgets);
  await second.waitForFunction((n) => window.received.length >= n, widgets.length);
  const again = await second.evaluate(() => window.received);
  assert.deepEqual([...again.slice(0, widgets.length)].sort(), [...widgets].sort());
  assert.equal(await second.textContent('#started'), await first.textContent('#started'));
  await first.waitForFunction(() => document.getElementById('viewers').textContent === '2');
  assert.equal((await sources(second)).length, 1);
  console.log('ok: dashboard shows every widget at once over one EventSource, then live updates');
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
