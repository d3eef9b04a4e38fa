import test from 'ava';
import http from 'node:http';
import net from 'node:net';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { realRoot, resolveInside } from '../../src/serve/safe-path.js';
import { startServer, type RunningServer } from '../../src/serve/server.js';
import { readCodeStore, writeCodeStore } from '../../src/retrieval/code-store.js';
import { fromPackedBytes } from '../../src/retrieval/codes.js';
import { evaluate } from '../../src/retrieval/metrics.js';
import { makeServeFixture, type ServeFixture } from '../helpers/serve-fixture.js';
import { fgh } from '../helpers/cli.js';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A request with the target sent byte for byte (no URL normalisation, unlike fetch or a browser). */
function raw(base: string, target: string, method = 'GET', headers: http.OutgoingHttpHeaders = {}): Promise<Reply> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: target, method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A request written as given: http.request always sends a Host header, and never an empty one. */
function onSocket(base: string, head: string): Promise<{ status: number; text: string }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(u.port), u.hostname, () => sock.end(`${head}\r\n\r\n`));
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', reject);
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      resolve({ status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0), text });
    });
  });
}

let fx: ServeFixture;
let server: RunningServer;
let outside: string;

test.before(async () => {
  fx = await makeServeFixture();
  // A secret next to the images folder, and symlinks inside it that point out.
  outside = path.join(fx.dir, 'secret.txt');
  writeFileSync(outside, 'secret');
  symlinkSync(outside, path.join(fx.root, 'images', 'link-out.txt'));
  symlinkSync(fx.dir, path.join(fx.root, 'images', 'dir-out'));
  server = await startServer({ model: fx.model, db: fx.db, images: fx.root, dataset: 'cub', query: fx.query, port: 0 });
});

test.after.always(async () => {
  await server?.close();
  fx?.cleanup();
});

test('resolveInside refuses every way out of the folder before and after resolving links', (t) => {
  const root = realRoot(fx.root);
  const inside = resolveInside(root, 'images.txt');
  t.is(inside, path.join(root, 'images.txt'));
  const cls = readFileSync(path.join(fx.root, 'classes.txt'), 'utf8').split('\n')[0]!.split(' ')[1]!;
  t.truthy(resolveInside(root, `images/${encodeURIComponent(cls)}`), 'a percent-encoded name inside resolves');
  for (const bad of ['..', '../secret.txt', 'images/../../secret.txt', '%2e%2e/secret.txt', '%2E%2E%2Fsecret.txt', 'images%2f..%2f..%2fsecret.txt', '/etc/passwd', '%2Fetc%2Fpasswd', '..%5csecret.txt', 'images\\..\\..\\secret.txt', 'a%00b', '%E0%A4%A', './images.txt', 'images//images.txt', '', 'images/link-out.txt', 'images/dir-out/secret.txt', path.join(fx.dir, 'secret.txt')]) {
    t.is(resolveInside(root, bad), null, bad);
  }
  // Double encoding decodes once: a literal "%2e%2e" name, which does not exist.
  t.is(resolveInside(root, '%252e%252e/secret.txt'), null);
});

test('the server binds to 127.0.0.1 and serves the page, the graph, the codes and the gallery images', async (t) => {
  t.regex(server.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const page = await raw(server.url, '/');
  t.is(page.status, 200);
  t.regex(page.body.toString(), /<script type="module" src="\/app\/web\/src\/app\.js">/);
  t.is(page.headers['cross-origin-opener-policy'], 'same-origin');
  t.is(page.headers['cross-origin-embedder-policy'], 'require-corp');
  t.regex(String(page.headers['content-security-policy']), /default-src 'self'/);
  const info = JSON.parse((await raw(server.url, '/api/info')).body.toString()) as { model: { bits: number; transform: string }; db: { count: number; stride: number; withImages: number } };
  const store = readCodeStore(fx.db);
  t.like(info, { model: { bits: fx.bits, transform: 'resize-224' }, db: { count: store.header.count, stride: store.header.stride, withImages: store.header.count } });
  const codes = await raw(server.url, '/api/codes');
  t.true(codes.body.equals(Buffer.from(store.codes.data)), 'the packed codes as stored');
  t.true((await raw(server.url, '/model.onnx')).body.equals(readFileSync(fx.model)));
  const items = JSON.parse((await raw(server.url, '/api/items')).body.toString()) as { ids: string[]; files: string[]; labels: number[][]; classNames: string[] };
  t.deepEqual(items.ids, store.ids);
  t.is(items.classNames.length, 4);
  const img = await raw(server.url, `/images/${items.files[0]!.split('/').map(encodeURIComponent).join('/')}`);
  t.is(img.status, 200);
  t.is(img.headers['content-type'], 'image/jpeg');
  t.true(img.body.equals(readFileSync(path.join(fx.root, items.files[0]!))));
  const pixels = await raw(server.url, '/app/src/data/pixels.js');
  t.is(pixels.status, 200);
  t.regex(pixels.body.toString(), /export function evalTransform/);
  const ortWasm = await raw(server.url, '/ort/ort-wasm-simd-threaded.wasm', 'HEAD');
  t.is(ortWasm.status, 200);
  t.is(ortWasm.headers['content-type'], 'application/wasm');
  const ev = JSON.parse((await raw(server.url, '/api/evaluation')).body.toString()) as { current: { map: number; numQuery: number } };
  // The page's figure is fgh eval's on the same stores.
  const [q, d] = [readCodeStore(fx.query), readCodeStore(fx.db)];
  const want = await evaluate(q.codes, q.labels!, d.codes, d.labels!);
  t.is(ev.current.map, want.map);
  t.is(ev.current.numQuery, readCodeStore(fx.query).header.count);
  const svg = await raw(server.url, '/api/evaluation/pr.svg');
  t.is(svg.headers['content-type'], 'image/svg+xml');
  t.regex(svg.body.toString(), /^<svg /);
});

test('paths outside the images folder are never served: .., encoded, absolute, backslashes, links out', async (t) => {
  const targets = [
    '/images/../secret.txt',
    '/images/../../../../etc/passwd',
    '/images/%2e%2e/secret.txt',
    '/images/%2E%2E%2Fsecret.txt',
    '/images/images/%2e%2e/%2e%2e/secret.txt',
    '/images/..%2fsecret.txt',
    '/images/..%5csecret.txt',
    '/images//etc/passwd',
    `/images/${encodeURIComponent(outside)}`,
    '/images/%2Fetc%2Fpasswd',
    '/images/%252e%252e/secret.txt',
    '/images/link-out.txt',
    '/images/images/link-out.txt',
    '/images/images/dir-out/secret.txt',
    '/images/a%00.jpg',
    '/images/%E0%A4%A',
    '/../secret.txt',
    '/app/../../package.json',
    '/app/src/cli/main.js',
    '/app/src/serve/server.js',
    '/ort/../../package.json',
    '/ort/%2e%2e%2fpackage.json',
    '/style.css/../../package.json',
  ];
  for (const target of targets) {
    const r = await raw(server.url, target);
    t.true(r.status === 404 || r.status === 400, `${target}: ${r.status}`);
    t.false(r.body.toString().includes('secret'), target);
    t.false(r.body.toString().includes('"name"'), target);
  }
  t.is((await raw(server.url, '/api/info', 'POST')).status, 405);
  t.is((await raw(server.url, '/images/images.txt')).status, 200, 'a file inside is served');
});

test('a Host other than this server is refused (DNS rebinding): nothing of the gallery or the model is sent; loopback names and IP addresses are served', async (t) => {
  const port = new URL(server.url).port;
  const model = readFileSync(fx.model);
  const codes = Buffer.from(readCodeStore(fx.db).codes.data);
  for (const host of [`evil.example:${port}`, 'evil.example', `EVIL.example:${port}`, `localhost.evil.example:${port}`, `127.0.0.1.nip.io:${port}`, `localhost:${port}@evil.example`]) {
    for (const target of ['/', '/api/info', '/api/items', '/api/codes', '/model.onnx', '/images/images.txt', '/nowhere']) {
      const r = await raw(server.url, target, 'GET', { Host: host });
      t.is(r.status, 403, `${host} ${target}`);
      t.is(r.headers['content-type'], 'text/plain; charset=utf-8');
      t.true(r.body.length < 300, `${host} ${target}: a short text`);
      t.regex(r.body.toString(), /not allowed/);
      t.false(r.body.equals(model) || r.body.equals(codes) || r.body.toString().includes('"ids"') || r.body.toString().includes('<script'), `${host} ${target}`);
    }
  }
  for (const head of ['GET /api/info HTTP/1.0', 'GET /api/info HTTP/1.1\r\nHost:\r\nConnection: close']) {
    const r = await onSocket(server.url, head);
    t.is(r.status, 403, head);
    t.false(r.text.includes('"model"'), head);
  }
  // The loopback names and IP addresses (which rebinding cannot forge), with the port or without.
  for (const host of [`localhost:${port}`, 'localhost', `LocalHost:${port}`, `127.0.0.1:${port}`, '127.0.0.1', `[::1]:${port}`, '[::1]', `localhost.:${port}`, `192.168.1.20:${port}`, '[fe80::1]']) {
    const r = await raw(server.url, '/api/info', 'GET', { Host: host });
    t.is(r.status, 200, host);
    t.like(JSON.parse(r.body.toString()), { model: { bits: fx.bits } });
  }
});

test('--allow-host names more hosts; the address --host binds is accepted', async (t) => {
  const other = await startServer({ model: fx.model, db: fx.db, images: fx.root, dataset: 'cub', port: 0, host: 'localhost', allowHosts: ['gallery.example', 'Box.LAN'] });
  try {
    const port = new URL(other.url).port;
    for (const host of [`gallery.example:${port}`, 'box.lan', `localhost:${port}`]) t.is((await raw(other.url, '/api/info', 'GET', { Host: host })).status, 200, host);
    for (const host of [`evil.example:${port}`, `gallery.example.evil:${port}`, `x.gallery.example:${port}`]) t.is((await raw(other.url, '/api/info', 'GET', { Host: host })).status, 403, host);
  } finally {
    await other.close();
  }
  const r = fgh('serve', '--model', fx.model, '--db', fx.db, '--images', fx.root, '--allow-host', 'a.example:8080');
  t.is(r.status, 1);
  t.regex(r.stderr, /^fgh: --allow-host takes a host name without a port, got "a\.example:8080"\n$/);
});

test('fgh serve: one-line errors for a model/store mismatch, missing files and folders, bad flags', async (t) => {
  const other = mkdtempSync(path.join(os.tmpdir(), 'fgh-serve-bad-'));
  try {
    mkdirSync(path.join(other, 'empty'));
    const wrongBits = path.join(other, 'wrong.codes');
    await writeCodeStore(wrongBits, { codes: fromPackedBytes(new Uint8Array(3 * 4), 3, 4, 32), ids: ['a', 'b', 'c'] });
    const cases: Array<[string[], RegExp]> = [
      [['--model', fx.model, '--db', wrongBits, '--images', fx.root], /32-bit codes, but .*model\.onnx makes 16-bit codes/],
      [['--model', fx.model, '--db', fx.db, '--images', path.join(other, 'nowhere')], /nowhere: no such directory/],
      [['--model', path.join(other, 'none.onnx'), '--db', fx.db, '--images', fx.root], /none\.onnx: no such file/],
      [['--model', fx.model, '--db', fx.db, '--images', path.join(other, 'empty'), '--dataset', 'cub'], /images\.txt|empty/],
      [['--model', fx.model, '--db', fx.db, '--images', fx.root, '--runs', path.join(other, 'empty')], /no <bits>\/log\.jsonl/],
      [['--model', fx.model, '--db', fx.db, '--images', fx.root, '--port', '70000'], /--port must be an integer in 0\.\.65535/],
    ];
    for (const [args, message] of cases) {
      const r = fgh('serve', ...args);
      t.is(r.status, 1, args.join(' '));
      t.regex(r.stderr, message);
      t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  } finally {
    rmSync(other, { recursive: true, force: true });
  }
});
