// Drives upstream's Control UI, served by clawgate, in headless Chromium (playwright-core from
// the interop cache): it loads the page with the token in the fragment, waits for hello-ok on
// the page's own WebSocket and the chat composer, sends two messages and waits for the fake
// model's replies to be rendered, sends a third and stops its slow reply with the composer's
// Stop button, then opens Settings → Devices, approves one pending node and rejects another
// from their Actions menus, and opens the Systems, Channels and Logs views: the Channels view
// must show the configured channel's card, the Logs view the start-up line parsed into its
// time, level and subsystem columns (and hidden by the level filter). Every request the page
// sends is in the summary by view (`views`), and every one answered with an error
// (`failedMethods`); so is the page's `/control-ui-config.json` (`bootstrapConfig`). Any
// uncaught page error, a reply shown in more than one chat bubble, or a visible error banner
// fails the run; every WebSocket frame is written to frames.jsonl. A screenshot of every step
// is written to the output folder; the last line printed is a JSON summary.
//
//   node control-ui.mjs '<JSON: url (with #token=…), outDir, message, expected, abort, abortShown,
//                        abortNever, approve, reject, channel, logLine>'
//
// Needs CLAWGATE_INTEROP_DIR (where playwright-core is installed) and CLAWGATE_CHROMIUM.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const { url, outDir, message, expected, abort, abortShown, abortNever, approve, reject, channel, logLine } =
  JSON.parse(process.argv[2]);
// How long each step may take (CLAWGATE_UI_WAIT_MS; upstream itself needs longer on a loaded machine).
const WAIT = Number(process.env.CLAWGATE_UI_WAIT_MS || 20000);
const require = createRequire(path.join(process.env.CLAWGATE_INTEROP_DIR, 'package.json'));
const { chromium } = require('playwright-core');

fs.mkdirSync(outDir, { recursive: true });
const summary = { steps: [], pageErrors: [], methods: [], views: {}, failedMethods: {}, beforeConnect: [], replyBubbles: [], banners: {} };
// The view whose requests are being recorded (`views`: each view's methods, in first-call order).
let view = 'chat';
const step = async (page, name) => {
  summary.steps.push(name);
  await page.screenshot({ path: path.join(outDir, `${summary.steps.length}-${name}.png`) });
};

const browser = await chromium.launch({
  executablePath: process.env.CLAWGATE_CHROMIUM,
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
let failure = null;
try {
  // A fresh profile per run (playwright's default context is a new user-data-dir).
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => summary.pageErrors.push(e.message));
  // The settings the page reads before it connects (with the token as a Bearer credential).
  page.on('response', async (r) => {
    if (new URL(r.url()).pathname !== '/control-ui-config.json') return;
    // Read on every page load: the statuses of all, the first body the page kept.
    const seen = (summary.bootstrapConfig ??= { statuses: [] });
    seen.statuses.push(r.status());
    try { seen.body ??= await r.json(); } catch {}
  });
  let helloOk;
  const hello = new Promise((resolve) => { helloOk = resolve; });
  const ids = new Map();
  const frames = fs.createWriteStream(path.join(outDir, 'frames.jsonl'));
  const t0 = Date.now();
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => {
      frames.write(JSON.stringify({ t: Date.now() - t0, dir: 'out', frame: f.payload.toString() }) + '\n');
      try {
        const frame = JSON.parse(f.payload.toString());
        if (frame.type === 'req') {
          ids.set(frame.id, frame.method);
          summary.methods.push(frame.method);
          const seen = (summary.views[view] ??= []);
          if (!seen.includes(frame.method)) seen.push(frame.method);
        }
      } catch {}
    });
    ws.on('framereceived', (f) => {
      frames.write(JSON.stringify({ t: Date.now() - t0, dir: 'in', frame: f.payload.toString() }) + '\n');
      try {
        const frame = JSON.parse(f.payload.toString());
        if (frame.type === 'res' && frame.ok && frame.payload?.type === 'hello-ok') helloOk(frame.payload);
        if (frame.type === 'res' && !frame.ok) {
          const method = ids.get(frame.id) ?? frame.id;
          // After a page load the UI sometimes sends a request on its new socket before
          // `connect` (a race of its own): upstream answers it exactly so and closes, and the
          // UI reconnects. Kept apart; every other error fails the run.
          if (frame.error?.message === 'invalid handshake: first request must be connect') summary.beforeConnect.push(method);
          else summary.failedMethods[method] = frame.error?.message;
        }
      } catch {}
    });
  });
  await page.goto(url);
  await step(page, 'loaded');
  const helloPayload = await Promise.race([
    hello,
    new Promise((_, reject) => setTimeout(() => reject(new Error('no hello-ok in time')), WAIT)),
  ]);
  summary.server = helloPayload.server;
  const composer = page.getByPlaceholder(/Message/);
  await composer.waitFor({ state: 'visible', timeout: WAIT });
  await step(page, 'connected');
  // Each turn's reply must end up in exactly one chat bubble once the run has settled (the
  // live stream, the final event and the transcript's copy are one message).
  const turn = async (text, reply, name) => {
    await composer.click();
    await composer.fill(text);
    await page.keyboard.press('Enter');
    await page.getByText(reply).first().waitFor({ state: 'visible', timeout: WAIT });
    await step(page, name);
    await page.waitForTimeout(3000);
    // The UI folds a message repeated in a row into one bubble with a "×N" badge.
    const bubbles = await page.locator('.chat-bubble', { hasText: reply }).count();
    const folded = await page.locator('.chat-duplicate-count').allInnerTexts();
    summary.replyBubbles.push({ bubbles, folded });
    if (bubbles !== 1 || folded.length) {
      fs.writeFileSync(path.join(outDir, `${name}.html`), await page.content());
      throw new Error(`the reply "${reply}" is shown in ${bubbles} chat bubbles, repeats ${JSON.stringify(folded)}`);
    }
  };
  // Any visible error banner or "could not be refreshed" notice on the page fails the run.
  const noBanners = async (name) => {
    const banners = await page.locator('.callout.danger:visible, [role="alert"]:visible').allInnerTexts();
    const notices = await page.getByText(/could not be (refreshed|loaded)/).filter({ visible: true }).allInnerTexts();
    const shown = [...banners, ...notices].map((b) => b.trim()).filter(Boolean);
    if (shown.length) {
      summary.banners[name] = shown;
      fs.writeFileSync(path.join(outDir, `${name}.html`), await page.content());
    }
  };
  await turn(message, expected, 'replied');
  await turn(`${message} again`, `${expected} again`, 'replied-again');
  // A reply streamed slowly, stopped from the composer once its first words are shown.
  await composer.click();
  await composer.fill(abort);
  await page.keyboard.press('Enter');
  await page.getByText(abortShown).first().waitFor({ state: 'visible', timeout: WAIT });
  const stop = page.locator('button.chat-send-btn--stop');
  await stop.click({ timeout: WAIT });
  await stop.waitFor({ state: 'detached', timeout: WAIT });
  await page.waitForTimeout(2000);
  summary.abortNeverShown = (await page.getByText(abortNever).count()) === 0;
  if (!summary.abortNeverShown) throw new Error(`the stopped reply went on to "${abortNever}"`);
  await noBanners('aborted');
  await step(page, 'aborted');
  view = 'devices';
  await page.goto(new URL('/settings/devices', url).href);
  const actionsFor = (name) => page.getByRole('button', { name: `Actions for ${name}` });
  for (const name of [approve, reject]) await actionsFor(name).waitFor({ state: 'visible', timeout: WAIT });
  const needed = page.getByText('approval needed');
  await needed.first().waitFor({ state: 'visible', timeout: WAIT });
  if ((await needed.count()) !== 2) throw new Error(`${await needed.count()} pending approvals shown, not 2`);
  await step(page, 'pending');
  await actionsFor(approve).click();
  await page.getByRole('menuitem', { name: 'Approve' }).first().click();
  await page.waitForFunction(() => document.body.innerText.split('approval needed').length === 2, null, { timeout: WAIT });
  await step(page, 'approved');
  await actionsFor(reject).click();
  await page.getByRole('menuitem', { name: 'Reject' }).first().click();
  // Rejecting asks to confirm ("Reject this node pairing request?").
  await page.getByRole('button', { name: 'Reject', exact: true }).click({ timeout: WAIT });
  await needed.first().waitFor({ state: 'detached', timeout: WAIT });
  await noBanners('devices');
  await step(page, 'rejected');
  // The other views a user reaches for: each must settle without an error banner.
  for (const [path_, name] of [['/systems', 'systems'], ['/settings/channels', 'channels'], ['/logs', 'logs']]) {
    view = name;
    await page.goto(new URL(path_, url).href);
    await page.waitForTimeout(3000);
    await step(page, name);
    if (name === 'channels') {
      // The configured channel's card, with its status read from the gateway.
      // (The innermost element holding both: document order puts descendants last.)
      const card = page.locator('div, a, li, button')
        .filter({ hasText: channel.label }).filter({ hasText: channel.status }).last();
      await card.waitFor({ state: 'visible', timeout: WAIT });
      summary.channelCard = (await card.innerText()).split('\n').map((l) => l.trim()).filter(Boolean);
    }
    if (name === 'logs') {
      // clawgate's start-up line, found by the view's search and shown in its columns.
      await page.getByPlaceholder(/Search logs/).fill(logLine);
      const row = page.locator('.log-row', { hasText: logLine }).first();
      await row.waitFor({ state: 'visible', timeout: WAIT });
      summary.logRow = {
        time: (await row.locator('.log-time').innerText()).trim(),
        level: (await row.locator('.log-level').innerText()).trim(),
        subsystem: (await row.locator('.log-subsystem').innerText()).trim(),
        message: (await row.locator('.log-message').innerText()).trim(),
      };
      await step(page, 'log-line');
      // Its level is one the view filters by: without `info`, the row is gone.
      await page.locator('label.log-chip.info input').uncheck();
      await row.waitFor({ state: 'detached', timeout: WAIT });
      summary.logRowFiltered = true;
      await page.locator('label.log-chip.info input').check();
    }
    await noBanners(name);
  }
  if (Object.keys(summary.banners).length) throw new Error(`error banners: ${JSON.stringify(summary.banners)}`);
  if (summary.pageErrors.length) throw new Error(`uncaught page errors: ${summary.pageErrors.join(' | ')}`);
} catch (e) {
  failure = e.message.split('\n')[0];
  try {
    const pages = browser.contexts().flatMap((c) => c.pages());
    if (pages[0]) await step(pages[0], 'failed');
  } catch {}
} finally {
  await browser.close();
}
summary.ok = failure === null;
summary.failure = failure;
console.log(JSON.stringify(summary));
process.exit(failure === null ? 0 : 1);
