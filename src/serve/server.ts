import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DatasetName } from '../data/types.js';
import { readModelInfo, type ModelInfo } from '../encode/model-info.js';
import { FghError } from '../util/errors.js';
import { buildEvaluationView, type EvaluationView } from './evaluation.js';
import { galleryItemsJson, openGallery, type Gallery } from './gallery.js';
import { realRoot, resolveInside } from './safe-path.js';
import { checkAllowHost, hostAllowed, normaliseName } from './hosts.js';

export { checkAllowHost } from './hosts.js';

export interface ServeOptions {
  model: string;
  db: string;
  images: string;
  dataset?: DatasetName;
  /** Query code store: the evaluation view scores it against the database. */
  query?: string;
  /** A `fgh train --out` folder: the evaluation view lists mAP per code length. */
  runs?: string;
  host?: string;
  /** Host names accepted besides the loopback names, IP addresses and `host` (see `hostAllowed`). */
  allowHosts?: string[];
  /** 0 picks a free port. */
  port?: number;
}

export interface RunningServer {
  url: string;
  server: http.Server;
  info: ServeInfo;
  close(): Promise<void>;
}

/** `/api/info`: everything the page needs before it loads the graph and the codes. */
export interface ServeInfo {
  model: Pick<ModelInfo, 'method' | 'arch' | 'bits' | 'inputSize' | 'mean' | 'std' | 'transform' | 'producer'> & { file: string; bytes: number };
  db: { file: string; count: number; bits: number; stride: number; labels: string; classes: number | null; withImages: number };
  evaluation: { runs: boolean; query: boolean };
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** dist/src/serve -> project root, and the compiled page under dist/web/src. */
const projectRoot = path.resolve(here, '../../..');
const distRoot = path.resolve(here, '../..');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.avif': 'image/avif',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
  '.onnx': 'application/octet-stream',
};

/**
 * Cross-origin isolation lets onnxruntime-web use threads (SharedArrayBuffer); the CSP keeps the
 * page to its own origin (wasm compilation allowed, workers from blobs as onnxruntime makes them).
 */
const SECURITY_HEADERS: Record<string, string> = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval' blob:; worker-src 'self' blob:; img-src 'self' blob: data:; style-src 'self'; connect-src 'self' blob: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
};

/** The page's modules: the compiled page plus the one shared preprocessing module it imports. */
function pageModules(): Map<string, string> {
  const files = new Map<string, string>();
  const webDir = path.join(distRoot, 'web', 'src');
  if (existsSync(webDir)) for (const f of readdirSync(webDir)) if (f.endsWith('.js')) files.set(`web/src/${f}`, path.join(webDir, f));
  files.set('src/data/pixels.js', path.join(distRoot, 'src', 'data', 'pixels.js'));
  for (const [k, f] of files) if (!existsSync(f)) files.delete(k);
  if (!files.has('web/src/app.js')) throw new FghError(`the page is not built (${path.join(webDir, 'app.js')} is missing): run npm run build`);
  return files;
}

function ortDistDir(): string {
  const require = createRequire(import.meta.url);
  return path.dirname(require.resolve('onnxruntime-web'));
}

export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const allowedHosts = new Set(['localhost', ...(opts.host ? [normaliseName(opts.host)] : []), ...(opts.allowHosts ?? []).map(checkAllowHost)]);
  const { info, bytes } = readModelInfo(opts.model);
  if (info.method === 'backbone') throw new FghError(`${opts.model}: a plain backbone has no codes; serve a hashing model (fgh export --onnx --checkpoint)`);
  let imagesRoot: string;
  try {
    imagesRoot = realRoot(opts.images);
    if (!statSync(imagesRoot).isDirectory()) throw new Error('not a directory');
  } catch {
    throw new FghError(`${opts.images}: no such directory`);
  }
  const gallery: Gallery = openGallery(opts.db, imagesRoot, opts.dataset);
  if (gallery.store.header.bits !== info.bits) throw new FghError(`${opts.db}: ${gallery.store.header.bits}-bit codes, but ${opts.model} makes ${info.bits}-bit codes`);
  const evaluation: EvaluationView = await buildEvaluationView({ db: gallery.store, ...(opts.runs ? { runsDir: opts.runs } : {}), ...(opts.query ? { queryFile: opts.query } : {}) });
  const modules = pageModules();
  const ortDir = ortDistDir();
  const items = Buffer.from(JSON.stringify(galleryItemsJson(gallery)));
  const codes = gallery.store.codes.data;
  const h = gallery.store.header;
  const serveInfo: ServeInfo = {
    model: { file: path.basename(opts.model), bytes: bytes.length, method: info.method, arch: info.arch, bits: info.bits, inputSize: info.inputSize, mean: info.mean, std: info.std, transform: info.transform, producer: info.producer },
    db: { file: path.basename(opts.db), count: h.count, bits: h.bits, stride: h.stride, labels: h.labels, classes: h.numClasses || null, withImages: gallery.files.filter((f) => f !== null).length },
    evaluation: { runs: evaluation.runs.length > 0, query: evaluation.current !== null },
  };
  const evaluationJson = Buffer.from(JSON.stringify({ runs: evaluation.runs, runsDir: evaluation.runsDir ? path.basename(path.resolve(evaluation.runsDir)) : null, current: evaluation.current, modelBits: info.bits }));

  const send = (res: http.ServerResponse, status: number, body: Buffer | Uint8Array | string, type: string, extra: Record<string, string> = {}): void => {
    const buf = typeof body === 'string' ? Buffer.from(body) : body;
    res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, 'Content-Length': String(buf.byteLength), 'Cache-Control': 'no-cache', ...extra });
    res.end(res.req.method === 'HEAD' ? undefined : buf);
  };
  const fail = (res: http.ServerResponse, status: number, message: string): void => send(res, status, `${message}\n`, 'text/plain; charset=utf-8');
  const sendFile = (res: http.ServerResponse, file: string): void => {
    let size: number;
    try {
      const st = statSync(file);
      if (!st.isFile()) return fail(res, 404, 'not found');
      size = st.size;
    } catch {
      return fail(res, 404, 'not found');
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream', 'Content-Length': String(size), 'Cache-Control': 'no-cache' });
    if (res.req.method === 'HEAD') return void res.end();
    createReadStream(file)
      .on('error', () => res.destroy())
      .pipe(res);
  };

  const server = http.createServer((req, res) => {
    if (!hostAllowed(req.headers.host, allowedHosts)) return fail(res, 403, `host not allowed: ${JSON.stringify(req.headers.host ?? '')} is not this server (fgh serve --allow-host NAME admits a name)`);
    if (req.method !== 'GET' && req.method !== 'HEAD') return fail(res, 405, 'method not allowed');
    const raw = req.url ?? '/';
    // The raw target, not a URL-normalised one: `/images/../x` must reach the checks as written.
    const q = raw.indexOf('?');
    const target = q >= 0 ? raw.slice(0, q) : raw;
    if (!target.startsWith('/')) return fail(res, 400, 'bad request');
    if (target === '/' || target === '/index.html') return sendFile(res, path.join(projectRoot, 'web', 'index.html'));
    if (target === '/style.css') return sendFile(res, path.join(projectRoot, 'web', 'style.css'));
    if (target === '/api/info') return send(res, 200, JSON.stringify(serveInfo), 'application/json');
    if (target === '/api/items') return send(res, 200, items, 'application/json');
    if (target === '/api/codes') return send(res, 200, codes, 'application/octet-stream');
    if (target === '/api/evaluation') return send(res, 200, evaluationJson, 'application/json');
    if (target === '/api/evaluation/pr.svg') return evaluation.prSvg ? send(res, 200, evaluation.prSvg, TYPES['.svg']!) : fail(res, 404, 'no query store given (--query)');
    if (target === '/model.onnx') return send(res, 200, bytes, 'application/octet-stream');
    if (target.startsWith('/app/')) {
      const file = modules.get(target.slice('/app/'.length));
      return file ? sendFile(res, file) : fail(res, 404, 'not found');
    }
    if (target.startsWith('/ort/')) {
      const name = target.slice('/ort/'.length);
      // Only onnxruntime-web's own runtime files, by name.
      if (!/^ort[\w.-]*\.(mjs|wasm)$/.test(name)) return fail(res, 404, 'not found');
      return sendFile(res, path.join(ortDir, name));
    }
    if (target.startsWith('/images/')) {
      const file = resolveInside(imagesRoot, target.slice('/images/'.length));
      return file ? sendFile(res, file) : fail(res, 404, 'not found');
    }
    return fail(res, 404, 'not found');
  });

  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new FghError(e.code === 'EADDRINUSE' ? `port ${opts.port} on ${host} is in use: pick another with --port` : `cannot listen on ${host}:${opts.port ?? 0} (${e.code ?? e.message})`)));
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shownHost}:${addr.port}/`,
    server,
    info: serveInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
