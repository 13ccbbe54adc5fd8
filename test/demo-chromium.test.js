// The demo page (`npm start`, lib/cli/demo/) in headless Chromium, driven by playwright-core as a
// person would use it: two pages join the chat under their names and each sees the other's
// line; the live figures draw and update; the close lab runs rows of the contract in the three
// modes and shows the contract's cells; one page closes and the other sees it leave. Ends with a
// screenshot of the first page, in a temporary directory, or where NETLOOP_DEMO_SCREENSHOT says:
// docs/demo.png is made by hand with
//   NETLOOP_DEMO_SCREENSHOT=docs/demo.png node test/demo-chromium.test.js
// The demo runs in this process (mixed mode, one reader thread: the first page gets the thread,
// the second the poller). Bounded: the file gets 40 s, each wait 10 s at most.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchChromium, requireChromium } from './helpers/chromium.js';
import { startDemo } from '../dist/cli/demo/server.js';

const NET_CLOSED = 'NetClosedError "use of closed network connection"';
const WAIT = { timeout: 10000 };

t.setTimeout(40000);

// One subtest holds the rest: the root test ends on its own once idle when it has a teardown
// (tap), and the browser's waits look idle to it.
if (requireChromium(t)) t.test('the demo in Chromium', demoInBrowser);

async function demoInBrowser(t) {
  const demo = await startDemo({ host: '127.0.0.1', port: 0, ioMode: 'mixed', maxBlockingOnline: 1 });
  t.teardown(() => demo.stop());
  const shotDir = fs.mkdtempSync(path.join(os.tmpdir(), 'netloop-demo-shot-'));
  t.teardown(() => fs.rmSync(shotDir, { recursive: true, force: true }));
  const shot = process.env.NETLOOP_DEMO_SCREENSHOT ?? path.join(shotDir, 'demo.png');

  const context = await launchChromium(t);
  const problems = []; // script errors and console errors (a CSP violation is one) on any page
  const open = async (name) => {
    const page = await context.newPage();
    page.setDefaultTimeout(10000);
    page.on('pageerror', (err) => problems.push(`${name}: ${err.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`${name}: console: ${m.text()}`);
    });
    await page.setViewportSize({ width: 1280, height: 1000 });
    // A name in the page's URL is the one it joins with.
    const res = await page.goto(`${demo.url}?name=${name}`);
    t.equal(res?.status(), 200, `${name}: the page`);
    await page.waitForSelector('#status[data-state="open"]');
    t.equal(await page.textContent('#status'), `connected as ${name}`);
    return page;
  };
  const blank = context.pages(); // the persistent context's first page, unused
  const alice = await open('alice');
  for (const p of blank) await p.close();
  const bob = await open('bob');

  await t.test('chat: each page sees the other\'s line', async (t) => {
    const say = async (page, text) => {
      await page.fill('#message', text);
      await page.press('#message', 'Enter');
    };
    await say(alice, 'hello from alice');
    await bob.locator('#log li[data-kind="chat"]', { hasText: 'alice: hello from alice' }).waitFor(WAIT);
    await say(bob, 'hi alice, bob here');
    await alice.locator('#log li[data-kind="chat"]', { hasText: 'bob: hi alice, bob here' }).waitFor(WAIT);
    t.equal(await alice.inputValue('#message'), '', 'the box is emptied once sent');
    t.match(await alice.locator('#log li[data-kind="joined"]').last().textContent(), 'bob joined (read by the poller)', 'alice saw bob join');
    t.equal(await alice.getAttribute('#online-line', 'data-online'), '2');
    // The rename form: everyone is told, and the page's URL keeps the name for a reload.
    await bob.fill('#name', 'Bob');
    await bob.click('#name-form button');
    await alice.locator('#log li[data-kind="renamed"]', { hasText: 'bob is now Bob' }).waitFor(WAIT);
    await bob.waitForFunction(() => document.getElementById('status').textContent === 'connected as Bob');
    t.match(bob.url(), /\?name=Bob$/);
  });

  await t.test('figures: drawn and updated every second', async (t) => {
    await alice.waitForFunction(() => Number(document.getElementById('figures').dataset.updates) >= 2, null, WAIT);
    const before = Number(await alice.getAttribute('#figures', 'data-updates'));
    const rss = await alice.textContent('#fig-rss [data-value]');
    t.match(rss, /^\d+\.\d MiB$/, `RSS shown (${rss})`);
    t.match(await alice.textContent('#fig-rss [data-heap]'), /^· JS heap [\d.]+ (KiB|MiB)$/);
    t.equal(await alice.textContent('#fig-conns [data-value]'), '1 poller · 1 thread', 'connections per I/O mode');
    t.match(await alice.textContent('#fig-messages [data-value]'), /^\d+ in · \d+ out$/);
    t.match(await alice.textContent('#fig-queued [data-value]'), /^\d+(\.\d)? (B|KiB|MiB)$/);
    await alice.waitForFunction((n) => Number(document.getElementById('figures').dataset.updates) > n, before, WAIT);
    const points = await alice.$$eval('#figures polyline', (ls) => ls.map((l) => l.getAttribute('points').split(' ').length));
    t.equal(points.length, 5, 'five sparklines (poller and thread share a chart)');
    t.ok(points.every((n) => n >= 2), `each with its points so far (${points.join(', ')})`);
  });

  await t.test('close lab: the contract\'s cells for the featured rows, in the three modes', async (t) => {
    // One row picked in the form...
    await alice.selectOption('#lab-event', 'peer sends close 1000');
    await alice.click('#lab-run');
    await alice.waitForSelector('#lab-status[data-run="1"][data-state="done"]', WAIT);
    // ...then the six featured: 1000, 1001, a protocol error, a dropped TCP connection, a read timeout, a server close.
    await alice.click('#lab-featured');
    await alice.waitForSelector('#lab-status[data-run="2"][data-state="done"]', WAIT);
    const cells = await alice.$$eval('#lab-table tbody tr', (rows) =>
      rows.map((tr) => ({ event: tr.dataset.event, cells: [...tr.querySelectorAll('td')].map((td) => ({ column: td.dataset.column, ok: td.dataset.ok, onClose: td.dataset.onclose })) })),
    );
    t.same(cells.map((r) => r.event), ['peer sends close 1000', 'peer sends close 1001', 'invalid UTF-8 in a text message', 'TCP reset', 'read deadline expired', 'server writeClose(1000), peer answers'], 'one row per scenario, a re-run replacing its row');
    const row = (event) => cells.find((r) => r.event === event).cells;
    t.same(row('peer sends close 1000').map((c) => c.column), ['non-blocking', 'blocking', 'mixed, under N', 'mixed, over N']);
    // DESIGN.md's close contract, column by column.
    t.same(row('peer sends close 1000').map((c) => c.onClose), ['null', NET_CLOSED, NET_CLOSED, 'null']);
    t.same(row('read deadline expired').map((c) => c.onClose), ['TimeoutError "read timeout"', 'TimeoutError "i/o timeout"', 'TimeoutError "i/o timeout"', 'TimeoutError "read timeout"']);
    t.same(row('TCP reset').map((c) => c.onClose), Array(4).fill('SysError ECONNRESET'));
    t.same(row('invalid UTF-8 in a text message').map((c) => c.onClose), Array(4).fill('ProtocolError 1007'));
    const differing = cells.flatMap((r) => r.cells.filter((c) => c.ok !== 'true').map((c) => `${r.event} / ${c.column}`));
    t.same(differing, [], 'no cell differs from the contract (none drawn red)');
    t.equal(await alice.locator('#lab-table .bad').count(), 0);
    t.match(await alice.textContent('#lab-table tr[data-event="server writeClose(1000), peer answers"] td[data-column="blocking"]'), 'closeInfo 1000 clean local');
  });

  await t.test('bob closes his page: alice sees him leave', async (t) => {
    await bob.close(); // the browser says 1001 (going away)
    const left = alice.locator('#log li[data-kind="left"]', { hasText: 'Bob left' });
    await left.waitFor(WAIT);
    t.match(await left.textContent(), 'Bob left: onClose got CloseError 1001, close code 1001', 'with what the server\'s onClose got');
    await alice.waitForFunction(() => document.getElementById('online-line').dataset.online === '1', null, WAIT);
    await alice.waitForFunction(() => document.querySelector('#fig-conns [data-value]').textContent === '0 poller · 1 thread', null, WAIT);
    t.pass('the connection count dropped');
  });

  await t.test('screenshot', async (t) => {
    await alice.screenshot({ path: shot, fullPage: true });
    const png = fs.readFileSync(shot);
    t.same([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `a PNG at ${shot}`);
    t.ok(png.length > 20000, `with something in it (${png.length} bytes)`);
    t.same(problems, [], 'no script or console error on any page');
  });
}
