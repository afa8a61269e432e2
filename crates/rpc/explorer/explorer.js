// Cairn's built-in explorer. Talks to this node only: JSON-RPC over same-origin POST (no
// credentials) and the WebSocket subscriptions on the same port. Builds every element with
// the DOM API (text through textContent), so nothing from the chain is ever parsed as HTML.
'use strict';

const COIN = 100000000;
const TX_PAGE = 25;
const HOME_BLOCKS = 10;
const CHART_BLOCKS = 20;
const FEE_BOUNDS = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
const SVG_NS = 'http://www.w3.org/2000/svg';
const MAX_PREVOUT_LOOKUPS = 2500;

let rpcId = 0;
let view = null;
let currentRender = null;

// ------------------------------------------------------------------ RPC

class RpcFailure extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

async function post(body) {
  const r = await fetch('/', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    credentials: 'omit',
    cache: 'no-store',
    body: JSON.stringify(body),
  });
  if (!r.ok && r.status !== 200) {
    let detail = '';
    try { detail = (await r.json()).error.message; } catch (_) { /* not JSON */ }
    throw new RpcFailure(r.status, 'node answered HTTP ' + r.status + (detail ? ': ' + detail : ''));
  }
  return r.json();
}

async function rpc(method, params) {
  const res = await post({ jsonrpc: '2.0', id: ++rpcId, method, params: params || [] });
  if (res.error) throw new RpcFailure(res.error.code, res.error.message);
  return res.result;
}

// Several calls in one request; each answer is a result or an RpcFailure.
async function batch(calls) {
  if (calls.length === 0) return [];
  const base = rpcId;
  rpcId += calls.length;
  const body = calls.map(([method, params], i) => ({ jsonrpc: '2.0', id: base + i + 1, method, params }));
  const res = await post(body);
  const byId = new Map(res.map((r) => [r.id, r]));
  return body.map((c) => {
    const r = byId.get(c.id);
    if (!r) return new RpcFailure(-32603, 'no answer');
    return r.error ? new RpcFailure(r.error.code, r.error.message) : r.result;
  });
}

// ------------------------------------------------------------------ DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v; else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function link(path, text, cls) {
  return h('a', { href: path, 'data-link': true, class: cls }, text);
}

const coins = (base) => (base / COIN).toFixed(8) + ' CRN';
const signedCoins = (base) => (base > 0 ? '+' : '') + (base / COIN).toFixed(8);
const num = (n) => Number(n).toLocaleString('en-US');
const time = (t) => new Date(t * 1000).toISOString().replace('T', ' ').replace('.000Z', ' UTC');
const short = (hex) => hex.slice(0, 16) + '…' + hex.slice(-8);

function hashrate(hps) {
  const units = ['H/s', 'kH/s', 'MH/s', 'GH/s', 'TH/s', 'PH/s', 'EH/s'];
  let i = 0;
  while (hps >= 1000 && i < units.length - 1) { hps /= 1000; i++; }
  return hps.toFixed(2) + ' ' + units[i];
}

function stat(k, v, id) {
  return h('div', { class: 'stat' }, h('div', { class: 'k' }, k), h('div', { class: 'v', id }, v));
}

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function showMessage(text) {
  const m = document.getElementById('message');
  m.textContent = text;
  m.hidden = !text;
}

function setView(...children) {
  view.replaceChildren(...children);
}

// ------------------------------------------------------------------ routing

function navigate(path) {
  if (path !== location.pathname + location.search) history.pushState(null, '', path);
  render();
}

async function render() {
  showMessage('');
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  const m = path.match(/^\/(block|tx|address|search)\/([^/]+)$/);
  const token = {};
  currentRender = token;
  try {
    if (path === '/') await home(token);
    else if (m && m[1] === 'block') await blockPage(decodeURIComponent(m[2]), params, token);
    else if (m && m[1] === 'tx') await txPage(decodeURIComponent(m[2]), token);
    else if (m && m[1] === 'address') await addressPage(decodeURIComponent(m[2]), params, token);
    else if (m && m[1] === 'search') await search(decodeURIComponent(m[2]), true);
    else setView(h('h1', {}, 'Not found'), h('p', {}, link('/', 'Back to the home page')));
  } catch (e) {
    if (currentRender !== token) return;
    setView(h('h1', {}, 'Error'), h('p', { id: 'error' }, e.message), h('p', {}, link('/', 'Home')));
  }
}

// ------------------------------------------------------------------ search

const NOT_FOUND = 'Nothing found. Enter a block height, a block hash, a transaction id or an address.';

async function search(raw, replace) {
  const q = raw.trim();
  const go = (p) => {
    if (replace) history.replaceState(null, '', p); else history.pushState(null, '', p);
    render();
  };
  if (/^\d{1,19}$/.test(q)) {
    try { return go('/block/' + await rpc('getblockhash', [Number(q)])); } catch (_) { /* fall through */ }
  } else if (/^[0-9a-fA-F]{64}$/.test(q)) {
    const hex = q.toLowerCase();
    const [hdr, tx] = await batch([['getblockheader', [hex, true]], ['getrawtransaction', [hex, 0]]]);
    if (!(hdr instanceof Error)) return go('/block/' + hex);
    if (!(tx instanceof Error)) return go('/tx/' + hex);
  } else if (q.length > 0 && q.length <= 120) {
    const v = await rpc('validateaddress', [q]);
    if (v.isvalid) return go('/address/' + q);
  }
  if (replace) setView(h('h1', {}, 'Search'));
  showMessage(NOT_FOUND + (q ? ' (“' + q.slice(0, 80) + '”)' : ''));
}

// ------------------------------------------------------------------ home

function barChart(title, values, labels, cls, unit) {
  const w = 400, hgt = 120, pad = 14;
  const max = Math.max(1, ...values);
  const bw = (w - 2 * pad) / Math.max(1, values.length);
  const g = svg('svg', { viewBox: `0 0 ${w} ${hgt + 16}`, role: 'img', 'aria-label': title });
  values.forEach((v, i) => {
    const bh = (v / max) * (hgt - pad);
    const r = svg('rect', { class: cls, x: pad + i * bw + 1, y: hgt - bh, width: Math.max(1, bw - 2), height: Math.max(0, bh) });
    r.append(svg('title', {}, `${labels[i]}: ${num(v)} ${unit}`));
    g.append(r);
  });
  g.append(svg('text', { x: pad, y: 10 }, `max ${num(max)} ${unit}`));
  g.append(svg('text', { x: pad, y: hgt + 13 }, labels[0] || ''));
  g.append(svg('text', { x: w - pad, y: hgt + 13, 'text-anchor': 'end' }, labels[labels.length - 1] || ''));
  return g;
}

async function home(token) {
  const [chain, mining, peers, pool] = await batch([
    ['getblockchaininfo', []],
    ['getmininginfo', []],
    ['getconnectioncount', []],
    ['getmempoolinfo', [FEE_BOUNDS]],
  ]);
  for (const r of [chain, mining, peers, pool]) if (r instanceof Error) throw r;
  const tipHeight = chain.blocks;
  const first = Math.max(0, tipHeight - CHART_BLOCKS);
  const heights = [];
  for (let i = tipHeight; i >= first; i--) heights.push(i);
  const hashes = await batch(heights.map((x) => ['getblockhash', [x]]));
  const blocks = (await batch(hashes.filter((x) => !(x instanceof Error)).map((x) => ['getblock', [x, 1]])))
    .filter((b) => !(b instanceof Error));
  if (currentRender !== token) return;
  document.getElementById('chain').textContent = chain.chain;

  const syncing = chain.initialblockdownload && chain.headers > chain.blocks;
  const progress = syncing
    ? `syncing ${(chain.verificationprogress * 100).toFixed(1)}% (${num(chain.blocks)} of ${num(chain.headers)})`
    : 'synced';
  const stats = h('div', { class: 'grid' },
    stat('Chain', chain.chain),
    stat('Height', num(tipHeight), 'height'),
    stat('Best block', link('/block/' + chain.bestblockhash, short(chain.bestblockhash), 'mono'), 'best'),
    stat('Difficulty', chain.difficulty.toPrecision(6)),
    stat('Hash rate', hashrate(mining.networkhashps)),
    stat('Sync', progress, 'sync'),
    stat('Peers', num(peers), 'peers'),
    stat('Mempool', `${num(pool.size)} txs · ${num(pool.bytes)} B`, 'mempool'));

  // Oldest first for the charts; the interval of the oldest shown block needs its parent.
  const chron = blocks.slice().sort((a, b) => a.height - b.height);
  const intervals = [], sizes = [], labels = [], rows = [];
  for (let i = 1; i < chron.length; i++) {
    intervals.push(Math.max(0, chron[i].time - chron[i - 1].time));
    sizes.push(chron[i].size);
    labels.push('#' + chron[i].height);
    rows.push(h('tr', {}, h('td', {}, link('/block/' + chron[i].hash, String(chron[i].height))),
      h('td', { class: 'num' }, num(intervals[intervals.length - 1]) + ' s'),
      h('td', { class: 'num' }, num(chron[i].size) + ' B'),
      h('td', { class: 'num' }, num(chron[i].nTx !== undefined ? chron[i].nTx : chron[i].ntx))));
  }
  const charts = h('div', { class: 'charts' },
    h('div', { class: 'chart' }, h('strong', {}, 'Time between blocks (s)'), barChart('time between blocks', intervals, labels, 'b1', 's')),
    h('div', { class: 'chart' }, h('strong', {}, 'Block size (bytes)'), barChart('block sizes', sizes, labels, 'b2', 'B')));
  const chartTable = h('details', {}, h('summary', {}, 'Chart data as text'),
    h('table', { id: 'chart-data' }, h('tr', {}, h('th', {}, 'Block'), h('th', { class: 'num' }, 'Interval'), h('th', { class: 'num' }, 'Size'), h('th', { class: 'num' }, 'Txs')), rows.reverse()));

  const hist = pool.fee_histogram || [];
  const histTable = h('table', { id: 'fee-histogram' },
    h('tr', {}, h('th', {}, 'Fee rate (base units/B)'), h('th', { class: 'num' }, 'Txs'), h('th', { class: 'num' }, 'Bytes'), h('th', { class: 'num' }, 'Fees')),
    hist.map((b) => h('tr', {}, h('td', {}, b.to === null ? `≥ ${b.from}` : `${b.from} – ${b.to - 1}`),
      h('td', { class: 'num' }, num(b.count)), h('td', { class: 'num' }, num(b.size)), h('td', { class: 'num' }, num(b.fees)))));
  const histChart = h('div', { class: 'chart' }, h('strong', {}, 'Mempool by fee rate (bytes)'),
    barChart('mempool fee-rate histogram', hist.map((b) => b.size), hist.map((b) => String(b.from)), 'b1', 'B'));

  const latest = h('table', { id: 'latest-blocks' },
    h('tr', {}, h('th', {}, 'Height'), h('th', {}, 'Hash'), h('th', {}, 'Time'), h('th', { class: 'num' }, 'Txs'), h('th', { class: 'num' }, 'Size')),
    blocks.slice(0, HOME_BLOCKS).map((b) => h('tr', {},
      h('td', {}, link('/block/' + b.hash, String(b.height))),
      h('td', { class: 'mono' }, link('/block/' + b.hash, short(b.hash))),
      h('td', {}, time(b.time)),
      h('td', { class: 'num' }, num(b.tx.length)),
      h('td', { class: 'num' }, num(b.size) + ' B'))));

  setView(stats, h('h2', {}, 'Latest blocks'), latest,
    h('h2', {}, 'Recent blocks'), charts, chartTable,
    h('h2', {}, 'Mempool'), h('div', { class: 'charts' }, histChart, h('div', {}, histTable)));
}

// ------------------------------------------------------------------ block

async function blockPage(id, params, token) {
  let hash = id;
  if (/^\d{1,19}$/.test(id)) hash = await rpc('getblockhash', [Number(id)]);
  const b = await rpc('getblock', [hash, 1]);
  const page = Math.max(0, parseInt(params.get('page') || '0', 10) || 0);
  const pages = Math.max(1, Math.ceil(b.tx.length / TX_PAGE));
  const slice = b.tx.slice(page * TX_PAGE, (page + 1) * TX_PAGE);
  const [stats, ...txs] = await batch([['getblockstats', [hash, ['totalfee', 'subsidy']]],
    ...slice.map((t) => ['getrawtransaction', [t, 2, hash]])]);
  if (currentRender !== token) return;
  const fees = stats instanceof Error ? 'n/a (not on the main chain)' : coins(stats.totalfee);
  const rows = txs.map((t, i) => {
    if (t instanceof Error) return h('tr', {}, h('td', { class: 'mono' }, slice[i]), h('td', { colspan: 3 }, t.message));
    const out = t.vout.reduce((s, o) => s + o.value, 0);
    return h('tr', {},
      h('td', { class: 'mono' }, link('/tx/' + t.txid, t.txid)),
      h('td', { class: 'num' }, t.coinbase ? 'coinbase' : String(t.vin.length)),
      h('td', { class: 'num' }, coins(out)),
      h('td', { class: 'num' }, t.fee !== undefined ? coins(t.fee) : '—'));
  });
  const base = '/block/' + b.hash;
  setView(
    h('h1', {}, `Block ${num(b.height)}`),
    kv([
      ['Hash', h('span', { class: 'mono' }, b.hash)],
      ['Confirmations', b.confirmations < 0 ? 'not on the main chain' : num(b.confirmations)],
      ['Time', time(b.time)],
      ['Previous', b.previousblockhash ? link('/block/' + b.previousblockhash, b.previousblockhash, 'mono') : '—'],
      ['Next', b.nextblockhash ? link('/block/' + b.nextblockhash, b.nextblockhash, 'mono') : '—'],
      ['Merkle root', h('span', { class: 'mono' }, b.merkleroot)],
      ['Difficulty', b.difficulty.toPrecision(6)],
      ['Bits / nonce', `${b.bits} / ${b.nonce}`],
      ['Size', num(b.size) + ' B'],
      ['Transactions', num(b.tx.length)],
      ['Fees', fees],
    ]),
    h('h2', {}, `Transactions (${page * TX_PAGE + 1}–${page * TX_PAGE + slice.length} of ${num(b.tx.length)})`),
    h('table', { id: 'block-txs' },
      h('tr', {}, h('th', {}, 'Txid'), h('th', { class: 'num' }, 'Inputs'), h('th', { class: 'num' }, 'Output total'), h('th', { class: 'num' }, 'Fee')), rows),
    pager(page > 0 ? base + '?page=' + (page - 1) : null, page + 1 < pages ? base + '?page=' + (page + 1) : null, `page ${page + 1} of ${pages}`));
}

function pager(prev, next, label, prevText, nextText) {
  return h('div', { class: 'pager' },
    prev ? link(prev, prevText || '← Previous', 'prev') : h('span', { class: 'muted' }, prevText || '← Previous'),
    h('span', { class: 'muted' }, label),
    next ? link(next, nextText || 'Next →', 'next') : h('span', { class: 'muted' }, nextText || 'Next →'));
}

// ------------------------------------------------------------------ transaction

async function txPage(txid, token) {
  const t = await rpc('getrawtransaction', [txid, 2]);
  const outs = t.vout.slice(0, MAX_PREVOUT_LOOKUPS).map((o) => ({ txid: t.txid, vout: o.n }));
  const spends = outs.length ? await rpc('gettxspendingprevout', [outs]) : [];
  if (currentRender !== token) return;
  const inputs = t.coinbase
    ? [h('tr', {}, h('td', {}, 'coinbase (new coins)'), h('td', {}, ''))]
    : t.vin.map((i) => h('tr', {},
      h('td', { class: 'mono' },
        i.prevout && i.prevout.address ? link('/address/' + i.prevout.address, i.prevout.address) : '—',
        h('div', { class: 'muted' }, 'spends ', link('/tx/' + i.txid, short(i.txid)), ':' + i.vout)),
      h('td', { class: 'num' }, i.prevout ? coins(i.prevout.value) : '?')));
  const outputs = t.vout.map((o, k) => {
    const s = spends[k];
    return h('tr', {},
      h('td', { class: 'mono' }, o.address ? link('/address/' + o.address, o.address) : o.pubkey,
        h('div', { class: 'muted' }, s && s.spendingtxid
          ? ['spent by ', link('/tx/' + s.spendingtxid, short(s.spendingtxid)), s.blockhash ? '' : ' (in mempool)']
          : 'unspent')),
      h('td', { class: 'num' }, coins(o.value)));
  });
  const total = t.vout.reduce((s, o) => s + o.value, 0);
  const status = t.blockhash
    ? [num(t.confirmations) + ' confirmations, block ', link('/block/' + t.blockhash, String(t.height))]
    : [h('span', { class: 'badge pool' }, 'in mempool')];
  setView(
    h('h1', {}, 'Transaction'),
    kv([
      ['Txid', h('span', { class: 'mono', id: 'txid' }, t.txid)],
      ['Status', h('span', { id: 'status' }, status)],
      ['Time', t.time ? time(t.time) : '—'],
      ['Size', num(t.size) + ' B'],
      ['Output total', h('span', { id: 'total' }, coins(total))],
      ['Fee', h('span', { id: 'fee' }, t.coinbase ? '— (coinbase)' : t.fee !== undefined ? coins(t.fee) : '?')],
      ['Fee rate', t.fee !== undefined ? (t.fee / t.size).toFixed(2) + ' base units/B' : '—'],
    ]),
    h('div', { class: 'io' },
      h('div', {}, h('h2', {}, `Inputs (${t.vin.length})`), h('table', { id: 'inputs' }, inputs)),
      h('div', {}, h('h2', {}, `Outputs (${t.vout.length})`), h('table', { id: 'outputs' }, outputs))));
}

// ------------------------------------------------------------------ address

// What a transaction did to the address: received minus spent, in base units.
function netChange(tx, address) {
  let n = 0;
  for (const o of tx.vout) if (o.address === address) n += o.value;
  for (const i of tx.vin) if (i.prevout && i.prevout.address === address) n -= i.prevout.value;
  return n;
}

async function addressPage(address, params, token) {
  const after = params.get('after');
  const opts = { limit: TX_PAGE, order: 'desc' };
  if (after) opts.after = after;
  const [bal, page] = await batch([['getaddressbalance', [address]], ['getaddresstxids', [address, opts]]]);
  if (bal instanceof Error) throw bal;
  if (page instanceof Error) throw page;
  const ids = page.mempool.map((t) => ({ txid: t, pool: true })).concat(page.txs.map((t) => ({ txid: t.txid, height: t.height })));
  const txs = await batch(ids.map((e) => ['getrawtransaction', [e.txid, 2]]));
  if (currentRender !== token) return;
  const rows = ids.map((e, k) => {
    const t = txs[k];
    const change = t instanceof Error ? null : netChange(t, address);
    return h('tr', {},
      h('td', { class: 'mono' }, link('/tx/' + e.txid, e.txid)),
      h('td', {}, e.pool ? h('span', { class: 'badge pool' }, 'mempool') : link('/block/' + e.height, String(e.height))),
      h('td', {}, t instanceof Error || !t.time ? '—' : time(t.time)),
      h('td', { class: 'num ' + (change > 0 ? 'pos' : change < 0 ? 'neg' : '') }, change === null ? '?' : signedCoins(change)));
  });
  const base = '/address/' + encodeURIComponent(address);
  setView(
    h('h1', {}, 'Address'),
    kv([
      ['Address', h('span', { class: 'mono', id: 'address' }, address)],
      ['Confirmed balance', h('span', { id: 'confirmed' }, coins(bal.confirmed))],
      ['Unconfirmed change', h('span', { id: 'unconfirmed' }, signedCoins(bal.unconfirmed))],
    ]),
    h('h2', {}, after ? 'Older transactions' : 'Transactions, newest first'),
    h('table', { id: 'address-txs' },
      h('tr', {}, h('th', {}, 'Txid'), h('th', {}, 'Block'), h('th', {}, 'Time'), h('th', { class: 'num' }, 'Change')), rows),
    pager(after ? base : null, page.next ? base + '?after=' + encodeURIComponent(page.next) : null,
      `${ids.length} shown`, 'Newest', 'Older →'));
}

// ------------------------------------------------------------------ live updates

let liveRefresh = null;

function scheduleRefresh() {
  // Many notifications in a burst cost one refresh.
  if (liveRefresh) return;
  liveRefresh = setTimeout(() => {
    liveRefresh = null;
    if (location.pathname === '/') render();
  }, 300);
}

function connectLive() {
  const live = document.getElementById('live');
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/');
  ws.addEventListener('open', () => {
    live.textContent = 'live';
    live.classList.add('on');
    ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'subscribe_newblocks', params: [] }));
    ws.send(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'subscribe_newtransactions', params: [] }));
  });
  ws.addEventListener('message', (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch (_) { return; }
    if (m.method === 'newblocks' || m.method === 'newtransactions') scheduleRefresh();
  });
  ws.addEventListener('close', () => {
    live.textContent = 'offline';
    live.classList.remove('on');
    setTimeout(connectLive, 3000);
  });
}

// ------------------------------------------------------------------ start

document.addEventListener('DOMContentLoaded', () => {
  view = document.getElementById('view');
  document.addEventListener('click', (ev) => {
    const a = ev.target.closest('a[data-link]');
    if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
    ev.preventDefault();
    navigate(a.getAttribute('href'));
  });
  window.addEventListener('popstate', render);
  document.getElementById('search').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = document.getElementById('q');
    search(q.value, false).catch((e) => showMessage(e.message));
  });
  render();
  connectLive();
});
