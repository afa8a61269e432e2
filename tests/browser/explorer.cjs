// Drives the built-in explorer in headless Chromium (Playwright), against a real cairnd the
// Rust test started (tests/tests/explorer_browser.rs). Exits non-zero with a reason on the first
// check that fails; writes a screenshot of every page into CAIRN_SHOTS.
'use strict';

const path = require('path');
const { chromium } = require(process.env.CAIRN_PLAYWRIGHT);

const URL = process.env.CAIRN_URL; // http://127.0.0.1:<port>
const SHOTS = process.env.CAIRN_SHOTS;
const expected = JSON.parse(process.env.CAIRN_EXPECT);
const STEP_TIMEOUT = 20000;

function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
}

async function rpc(method, params) {
  const headers = { 'Content-Type': 'application/json' };
  if (process.env.CAIRN_RPC_AUTH) headers.Authorization = process.env.CAIRN_RPC_AUTH;
  const r = await fetch(URL + '/', { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) });
  const body = await r.json();
  if (body.error) throw new Error(method + ': ' + body.error.message);
  return body.result;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage: true });
  console.log('screenshot ' + name);
}

async function main() {
  const context = await chromium.launchPersistentContext(process.env.CAIRN_PROFILE, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const problems = [];
  const requests = [];
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT);
    page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    page.on('request', (r) => requests.push(r.url()));

    // Home: the height is shown.
    await page.goto(URL + '/');
    await page.waitForFunction((h) => document.getElementById('height')?.textContent === h, String(expected.height));
    await page.waitForSelector('#latest-blocks tr:nth-child(2)');
    await page.waitForFunction(() => document.getElementById('live')?.textContent === 'live');
    await shot(page, 'home');

    // A block mined over RPC appears without a reload.
    await page.evaluate(() => { window.cairnMarker = 'same document'; });
    const [hash] = await rpc('generatetoaddress', [1, expected.address]);
    await page.waitForFunction((h) => document.getElementById('height')?.textContent === h, String(expected.height + 1));
    await page.waitForFunction((x) => document.querySelector('#latest-blocks')?.textContent.includes(x.slice(0, 16)), hash);
    check(await page.evaluate(() => window.cairnMarker) === 'same document', 'the page was not reloaded');
    await shot(page, 'home-after-block');

    // Search a txid: its page, with the right amounts.
    await page.fill('#q', expected.txid);
    await page.press('#q', 'Enter');
    await page.waitForURL(URL + '/tx/' + expected.txid);
    await page.waitForSelector('#fee');
    const fee = await page.textContent('#fee');
    check(fee === expected.fee, `fee ${fee} = ${expected.fee}`);
    const total = await page.textContent('#total');
    check(total === expected.output, `output total ${total} = ${expected.output}`);
    const inputs = await page.textContent('#inputs');
    check(inputs.includes(expected.input), `inputs show the spent amount ${expected.input}: ${inputs}`);
    const status = await page.textContent('#status');
    check(/confirmations/.test(status), 'confirmed: ' + status);
    await shot(page, 'tx');

    // The address, from the output's link, paged through its history.
    await page.click(`#outputs a[href="/address/${expected.address}"]`);
    await page.waitForURL(URL + '/address/' + expected.address);
    await page.waitForSelector('#address-txs tr:nth-child(2)');
    const rows1 = await page.$$eval('#address-txs tr', (r) => r.slice(1).map((x) => x.cells[0].textContent));
    check(rows1.length === expected.page, `first page holds ${rows1.length} of ${expected.page}`);
    await shot(page, 'address');
    await page.click('a.next');
    await page.waitForURL((u) => u.search.includes('after='));
    await page.waitForFunction((first) => {
      const r = document.querySelectorAll('#address-txs tr');
      return r.length > 1 && r[1].cells[0].textContent !== first;
    }, rows1[0]);
    const rows2 = await page.$$eval('#address-txs tr', (r) => r.slice(1).map((x) => x.cells[0].textContent));
    // The block mined above paid the address too.
    const later = expected.history + 1 - expected.page;
    check(rows2.length === later, `second page holds ${rows2.length}, expected ${later}`);
    check(rows2.every((t) => !rows1.includes(t)), 'pages do not overlap');
    await shot(page, 'address-older');
    // The back button returns to the first page.
    await page.goBack();
    await page.waitForURL(URL + '/address/' + expected.address);
    await page.waitForFunction((first) => document.querySelectorAll('#address-txs tr')[1]?.cells[0].textContent === first, rows1[0]);

    // A block page, from the search box by height.
    await page.fill('#q', '1');
    await page.press('#q', 'Enter');
    await page.waitForURL((u) => u.pathname.startsWith('/block/'));
    await page.waitForSelector('#block-txs tr:nth-child(2)');
    await shot(page, 'block');

    // A search for nothing known says so.
    await page.fill('#q', 'not-a-height-hash-or-address');
    await page.press('#q', 'Enter');
    await page.waitForSelector('#message:not([hidden])');
    const message = await page.textContent('#message');
    check(message.includes('Nothing found'), 'message: ' + message);
    await shot(page, 'search-not-found');

    const outside = requests.filter((u) => !u.startsWith(URL + '/') && !u.startsWith('data:'));
    check(outside.length === 0, 'requests outside the node: ' + outside.join(', '));
    check(problems.length === 0, 'browser errors: ' + problems.join(' | '));
    console.log(`ok: ${requests.length} requests, all to the node`);
  } finally {
    await context.close();
  }
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
