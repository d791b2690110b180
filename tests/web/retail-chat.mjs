// Headless-browser check of the retail chat page (GET /chat) against a running server.
// Normally run through scripts/retail-web-check.sh, which installs Chromium and playwright-core.
//
// Env: BASE_URL (required, e.g. http://127.0.0.1:8099), API_KEY (required), IMAGE_PATH (required,
// a PNG/JPEG/WebP file), IMAGE_EXPECT (required), TEXT_QUESTION, TEXT_EXPECT, SCREENSHOT,
// CHROMIUM (default /usr/bin/chromium), PLAYWRIGHT_CORE (path of the playwright-core package dir),
// REPLY_TIMEOUT_MS (default 120000).
// TEXT_EXPECT / IMAGE_EXPECT are case-insensitive substrings; "a|b" accepts either alternative.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function fail(msg) {
  console.error(`retail-chat: FAIL: ${msg}`);
  process.exitCode = 1;
  throw new Error(msg);
}

function env(name, dflt) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (dflt === undefined) {
      console.error(`retail-chat: FAIL: env ${name} is required`);
      process.exit(2);
    }
    return dflt;
  }
  return v;
}

const BASE_URL = env('BASE_URL').replace(/\/+$/, '');
const API_KEY = env('API_KEY');
const IMAGE_PATH = env('IMAGE_PATH');
const IMAGE_EXPECT = env('IMAGE_EXPECT');
const TEXT_QUESTION = env('TEXT_QUESTION', 'How long do I have to return an item?');
const TEXT_EXPECT = env('TEXT_EXPECT', '30 days');
const IMAGE_QUESTION = 'Do you have something like this?';
const SCREENSHOT = process.env.SCREENSHOT || '';
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
const REPLY_TIMEOUT = Number(env('REPLY_TIMEOUT_MS', '120000'));

if (!fs.existsSync(IMAGE_PATH)) {
  console.error(`retail-chat: FAIL: IMAGE_PATH ${IMAGE_PATH} does not exist`);
  process.exit(2);
}
if (!fs.existsSync(CHROMIUM)) {
  console.error(`retail-chat: FAIL: no Chromium at ${CHROMIUM} (set CHROMIUM)`);
  process.exit(2);
}

// ESM ignores NODE_PATH, so load playwright-core through require() from an explicit location.
function loadPlaywright() {
  const require = createRequire(import.meta.url);
  const candidates = [];
  if (process.env.PLAYWRIGHT_CORE) candidates.push(path.resolve(process.env.PLAYWRIGHT_CORE));
  const cache = process.env.KILN_CACHE || path.join(os.homedir(), '.cache', 'kiln');
  candidates.push(path.join(cache, 'npm', 'node_modules', 'playwright-core'));
  candidates.push('playwright-core');
  for (const c of candidates) {
    try {
      return require(c);
    } catch (e) {
      if (e.code !== 'MODULE_NOT_FOUND') throw e;
    }
  }
  console.error(`retail-chat: FAIL: playwright-core not found (tried ${candidates.join(', ')}); ` +
    'run scripts/retail-web-check.sh or set PLAYWRIGHT_CORE');
  process.exit(2);
}

function matches(text, expect) {
  const t = text.toLowerCase();
  return expect.split('|').map((s) => s.trim().toLowerCase()).filter(Boolean).some((s) => t.includes(s));
}

const { chromium } = loadPlaywright();
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-chromium-'));
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let context;
let page;
const consoleErrors = [];
const chatRequests = [];

// Wait until there are `n` assistant bubbles; fail fast if an error bubble shows up.
async function waitForReply(n) {
  try {
    await page.waitForFunction(
      (want) => document.querySelectorAll('#messages .msg.assistant').length >= want
        || document.querySelectorAll('#messages .msg.error').length > 0,
      n, { timeout: REPLY_TIMEOUT, polling: 200 });
  } catch (e) {
    fail(`no assistant reply #${n} within ${REPLY_TIMEOUT} ms`);
  }
  const errors = await page.locator('#messages .msg.error').allTextContents();
  if (errors.length) fail(`error bubble shown: ${errors.join(' / ')}`);
  return (await page.locator('#messages .msg.assistant .text').nth(n - 1).textContent()) || '';
}

async function main() {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1000, height: 900 },
  });
  page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url().endsWith('/v1/chat/completions')) {
      try { chatRequests.push(JSON.parse(r.postData() || 'null')); } catch { chatRequests.push(null); }
    }
  });

  let resp;
  try {
    resp = await page.goto(`${BASE_URL}/chat`, { waitUntil: 'load', timeout: 30000 });
  } catch (e) {
    fail(`cannot open ${BASE_URL}/chat (is the server running?): ${String(e.message || e).split('\n')[0]}`);
  }
  if (!resp || !resp.ok()) fail(`GET ${BASE_URL}/chat returned ${resp ? resp.status() : 'nothing'}`);
  for (const id of ['#api-key', '#message', '#send', '#image-input', '#messages', '#status']) {
    if ((await page.locator(id).count()) !== 1) fail(`page has no ${id} element`);
  }

  // 1. Text question.
  await page.fill('#api-key', API_KEY);
  await page.fill('#message', TEXT_QUESTION);
  await page.click('#send');
  const reply1 = await waitForReply(1);
  console.log(`--- reply 1 (${TEXT_QUESTION})\n${reply1}\n---`);
  if (!matches(reply1, TEXT_EXPECT)) fail(`reply 1 does not contain "${TEXT_EXPECT}"`);

  // 2. Photo question.
  await page.setInputFiles('#image-input', IMAGE_PATH);
  try {
    await page.waitForSelector('#preview img[src^="data:image/"]', { state: 'visible', timeout: 10000 });
  } catch {
    fail(`no preview thumbnail after attaching ${IMAGE_PATH}: status "${await page.textContent('#status')}"`);
  }
  await page.fill('#message', IMAGE_QUESTION);
  await page.press('#message', 'Enter'); // Enter sends
  const reply2 = await waitForReply(2);
  console.log(`--- reply 2 (${IMAGE_QUESTION} + ${path.basename(IMAGE_PATH)})\n${reply2}\n---`);
  if (!matches(reply2, IMAGE_EXPECT)) fail(`reply 2 does not contain "${IMAGE_EXPECT}"`);

  // The page must send the whole conversation, with the photo as a data URL content part.
  const req2 = chatRequests[1];
  if (!req2 || !Array.isArray(req2.messages) || req2.messages.length !== 3) {
    fail(`second request should carry 3 messages, got ${JSON.stringify(req2 && req2.messages && req2.messages.length)}`);
  }
  const last = req2.messages[2];
  const hasImage = Array.isArray(last.content) && last.content.some(
    (p) => p.type === 'image_url' && /^data:image\/(png|jpeg|webp);base64,/.test(p.image_url?.url || ''));
  if (!hasImage) fail('second request has no image_url data-URL part');
  if ((await page.locator('#preview img[src]').count()) !== 0) fail('attachment preview was not cleared after sending');

  // 3. Feedback on the first reply.
  const first = page.locator('#messages .msg.assistant').first();
  await first.locator('.fb-up').click();
  try {
    await first.getByText('Thanks for the feedback').waitFor({ timeout: 15000 });
  } catch {
    fail(`no "Thanks for the feedback" after thumbs-up: "${await first.textContent()}"`);
  }

  if ((await page.locator('#messages .msg.error').count()) !== 0) fail('an error bubble appeared');
  if (consoleErrors.length) console.warn(`retail-chat: console errors: ${consoleErrors.join(' | ')}`);
  console.log('retail-chat: PASS');
}

try {
  await main();
} catch (e) {
  if (!process.exitCode) console.error(`retail-chat: FAIL: ${e && e.stack ? e.stack : e}`);
  process.exitCode = 1;
} finally {
  if (SCREENSHOT && page) {
    try {
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      console.log(`retail-chat: screenshot saved to ${SCREENSHOT}`);
    } catch (e) {
      console.error(`retail-chat: screenshot failed: ${e}`);
    }
  }
  if (context) await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
