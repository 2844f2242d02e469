// What the headless-Chromium scripts share: a hang guard, Chromium launched
// with the project's flags from a fresh temporary profile, a page that fails
// on any uncaught error, and the chat page's send helper.
import { chromium } from 'playwright-core';

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync',
];

/** Exits non-zero if the script still runs after `ms`: it only guards against hangs. */
export function hangGuard(ms = 120_000) {
  return setTimeout(() => {
    console.error('FAIL: browser test hung');
    process.exit(1);
  }, ms);
}

/** Headless Chromium from a fresh temporary profile, with `extra` flags. */
export function launch(extra = []) {
  return chromium.launch({ executablePath, headless: true, args: [...FLAGS, ...extra] });
}

/**
 * A page in a context of its own (its own cookies and connections, like
 * another person), which throws on any uncaught error in the page.
 */
export async function newPage(chrome, contextOptions = {}, timeout = 20_000) {
  const context = await chrome.newContext(contextOptions);
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  page.on('pageerror', (err) => { throw err; });
  return page;
}

/** Posts `text` from the chat page; the page clears the input once the server answered 202. */
export async function say(page, text) {
  await page.fill('#text', text);
  await page.click('#send');
  await page.waitForFunction(() => document.getElementById('text').value === '');
}
