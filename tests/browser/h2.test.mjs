// Ten EventSources in one page, to one HTTPS origin served over HTTP/2: every
// one of them opens and receives a posted message. Over HTTP/1.1 a browser keeps
// at most six connections per site, so the seventh would never open.
//
// Usage: CHAT_URL=https://127.0.0.1:PORT node h2.test.mjs
// (tests/browser.rs starts the chat example with TLS and runs this). Exits
// non-zero on any failure.
import assert from 'node:assert/strict';
import { hangGuard, launch, newPage } from './support.mjs';

const url = process.env.CHAT_URL;
assert.ok(url && url.startsWith('https://'), 'CHAT_URL must be an https:// URL');
const STREAMS = 10;

const guard = hangGuard();

// The chat's certificate is self-signed, made at start.
const chrome = await launch(['--ignore-certificate-errors']);

try {
  const page = await newPage(chrome, { ignoreHTTPSErrors: true }, 30_000);
  await page.goto(`${url}/favicon.ico`);
  assert.equal(
    await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol),
    'h2',
  );

  // Open every stream, wait until each has its `members` snapshot, post once,
  // and collect what each stream received.
  const received = await page.evaluate(async (n) => {
    const sources = [];
    const opened = [];
    const got = [];
    for (let i = 0; i < n; i++) {
      const source = new EventSource(`/sse?room=h2&name=tab${i}`, { withCredentials: true });
      sources.push(source);
      opened.push(new Promise((resolve) => source.addEventListener('members', resolve, { once: true })));
      got.push(new Promise((resolve) => {
        source.onmessage = (e) => resolve(JSON.parse(e.data).text);
      }));
    }
    await Promise.all(opened);
    const res = await fetch('/send', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ room: 'h2', name: 'tab0', text: 'to every tab' }),
    });
    if (res.status !== 202) throw new Error(`POST /send answered ${res.status}`);
    const texts = await Promise.all(got);
    const protocols = performance.getEntriesByType('resource')
      .filter((e) => e.name.includes('/sse?')).map((e) => e.nextHopProtocol);
    for (const source of sources) source.close();
    return { texts, protocols };
  }, STREAMS);
  assert.deepEqual(received.texts, Array(STREAMS).fill('to every tab'));
  console.log(`ok: ${STREAMS} EventSources over HTTP/2 (${[...new Set(received.protocols)].join(',') || 'h2 page'}) each received the message`);
} catch (err) {
  console.error('FAIL:', err);
  process.exitCode = 1;
} finally {
  await chrome.close();
  clearTimeout(guard);
}
