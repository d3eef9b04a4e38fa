/**
 * The retrieval page of `fgh serve`: loads the exported graph with onnxruntime-web and the gallery
 * codes, encodes a picked or dropped image in the browser with the same preprocessing as
 * `fgh encode` (pixels.ts is the very module the CLI uses), and ranks the gallery by Hamming
 * distance. No framework: a few elements, filled in place.
 */
import type * as Ort from 'onnxruntime-web';
import { evalTransform, normalizeInto, type EvalTransformName, type RgbImage } from '../../src/data/pixels.js';
import type { SearchOutcome } from './outcome.js';
import { hammingTopK, toHex } from './rank.js';

interface Info {
  model: { file: string; bytes: number; method: string; arch: string; bits: number; inputSize: number; mean: number[]; std: number[]; transform: EvalTransformName; producer: string };
  db: { file: string; count: number; bits: number; stride: number; labels: string; classes: number | null; withImages: number };
  evaluation: { runs: boolean; query: boolean };
}

interface Items {
  ids: string[];
  files: Array<string | null>;
  labels: number[][];
  classNames: string[] | null;
}

interface Evaluation {
  runs: Array<{ bits: number; best: number | null; bestAt: number | null; last: number | null; steps: number; evaluations: number }>;
  runsDir: string | null;
  current: { bits: number; map: number; numQuery: number; numDb: number; precisionAt: Array<{ k: number; precision: number; recall: number }> } | null;
  modelBits: number;
}

declare global {
  interface Window {
    fgh?: { last: SearchOutcome | null; ready: boolean };
  }
}

const ORT_URL = '/ort/ort.min.mjs';

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el as T;
};

function setStatus(text: string, isError = false): void {
  const s = $('status');
  s.textContent = text;
  s.classList.toggle('error', isError);
  s.setAttribute('role', isError ? 'alert' : 'status');
}

async function getJson<T>(url: string): Promise<T> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return (await r.json()) as T;
}

async function getBytes(url: string): Promise<Uint8Array> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/**
 * Decodes to 8-bit RGB without colour management or EXIF rotation, as `fgh encode` (sharp, like
 * PIL) does; alpha is dropped, not composited.
 */
async function decodeRgb(blob: Blob): Promise<RgbImage> {
  const bmp = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none', imageOrientation: 'none' });
  const canvas = new OffscreenCanvas(bmp.width, bmp.height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  if (!ctx) throw new Error('no 2D canvas');
  ctx.drawImage(bmp, 0, 0);
  const { width, height } = bmp;
  const rgba = ctx.getImageData(0, 0, width, height).data;
  bmp.close();
  const rgb = new Uint8Array((rgba.length / 4) * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i]!;
    rgb[j + 1] = rgba[i + 1]!;
    rgb[j + 2] = rgba[i + 2]!;
  }
  return { width, height, data: rgb };
}

function className(items: Items, c: number): string {
  return items.classNames?.[c] ?? `class ${c}`;
}

function labelText(items: Items, i: number): string {
  const l = items.labels[i];
  return l && l.length ? l.map((c) => className(items, c)).join(', ') : 'unlabelled';
}

function imageUrl(file: string): string {
  return `/images/${file.split('/').map(encodeURIComponent).join('/')}`;
}

class Page {
  private ort!: typeof Ort;
  private session!: Ort.InferenceSession;
  private ep = 'wasm';
  private info!: Info;
  private items!: Items;
  private codes!: Uint8Array;
  private busy = false;
  /** The last query, picked or dropped: changing K searches it again. */
  private lastFile: File | null = null;

  async start(): Promise<void> {
    window.fgh = { last: null, ready: false };
    this.bindTabs();
    setStatus('Loading the model and the gallery…');
    const t0 = performance.now();
    [this.info, this.items, this.codes] = await Promise.all([getJson<Info>('/api/info'), getJson<Items>('/api/items'), getBytes('/api/codes')]);
    const m = this.info.model;
    $('model-summary').textContent = `${m.method} (${m.arch}), ${m.bits} bits, ${m.inputSize} px, ${m.transform}; gallery: ${this.info.db.count} images`;
    this.ort = (await import(/* webpackIgnore: true */ ORT_URL as string)) as typeof Ort;
    this.ort.env.wasm.wasmPaths = '/ort/';
    // Threads need cross-origin isolation, which the server sends.
    this.ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    const model = await getBytes('/model.onnx');
    this.session = await this.createSession(model);
    $('ep').textContent = this.ep;
    setStatus(`Ready: model and ${this.info.db.count} codes loaded in ${Math.round(performance.now() - t0)} ms. Choose or drop an image.`);
    this.bindInput();
    void this.loadEvaluation();
    window.fgh.ready = true;
    document.body.dataset.state = 'ready';
  }

  /** WebGPU where the browser has it (unless ?ep=wasm), else wasm. */
  private async createSession(model: Uint8Array): Promise<Ort.InferenceSession> {
    const wanted = new URLSearchParams(location.search).get('ep');
    const gpu = 'gpu' in navigator && wanted !== 'wasm';
    if (gpu) {
      try {
        const s = await this.ort.InferenceSession.create(model, { executionProviders: ['webgpu'] });
        this.ep = 'webgpu';
        return s;
      } catch {
        // No adapter, or an op WebGPU lacks: wasm computes everything.
      }
    }
    this.ep = 'wasm';
    return this.ort.InferenceSession.create(model, { executionProviders: ['wasm'] });
  }

  private bindTabs(): void {
    const tabs = Array.from(document.querySelectorAll<HTMLButtonElement>('[role=tab]'));
    const select = (tab: HTMLButtonElement, focus: boolean): void => {
      for (const t of tabs) {
        const on = t === tab;
        t.setAttribute('aria-selected', String(on));
        t.tabIndex = on ? 0 : -1;
        $(t.getAttribute('aria-controls')!).hidden = !on;
      }
      if (focus) tab.focus();
    };
    tabs.forEach((tab, i) => {
      tab.addEventListener('click', () => select(tab, false));
      tab.addEventListener('keydown', (e) => {
        const step = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
        if (step) select(tabs[(i + step + tabs.length) % tabs.length]!, true);
      });
    });
  }

  private bindInput(): void {
    const input = $<HTMLInputElement>('file');
    input.disabled = false;
    input.addEventListener('change', () => {
      const f = input.files?.[0];
      if (f) void this.search(f);
    });
    const zone = $('drop');
    zone.addEventListener('dragover', (e) => {
      e.preventDefault();
      zone.classList.add('over');
    });
    zone.addEventListener('dragleave', () => zone.classList.remove('over'));
    zone.addEventListener('drop', (e) => {
      e.preventDefault();
      zone.classList.remove('over');
      const f = e.dataTransfer?.files[0];
      if (f) void this.search(f);
    });
    $<HTMLInputElement>('topk').addEventListener('change', () => {
      if (this.lastFile) void this.search(this.lastFile);
    });
  }

  async search(file: File): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    this.lastFile = file;
    document.body.dataset.state = 'busy';
    try {
      setStatus(`Encoding ${file.name}…`);
      const m = this.info.model;
      const timings: Record<string, number> = {};
      let t = performance.now();
      const lap = (name: string): void => {
        const now = performance.now();
        timings[name] = now - t;
        t = now;
      };
      const img = await decodeRgb(file);
      lap('decode');
      const x = evalTransform(img, m.transform, m.inputSize);
      const input = new Float32Array(3 * x.width * x.height);
      normalizeInto(x, input, 0, 'nchw', m.mean, m.std);
      lap('preprocess');
      const out = await this.session.run({ images: new this.ort.Tensor('float32', input, [1, 3, x.height, x.width]) });
      const packed = out.codes!.data as Uint8Array;
      lap('inference');
      const query = new Uint8Array(this.info.db.stride);
      query.set(packed.subarray(0, Math.min(packed.length, query.length)));
      const k = Math.max(1, Math.min(100, Number($<HTMLInputElement>('topk').value) || 10));
      const ranked = hammingTopK(query, this.codes, this.info.db.stride, this.info.db.count, k);
      lap('search');
      const code = toHex(packed);
      this.show(file, img, code, ranked.indices, ranked.distances, timings);
      window.fgh!.last = { file: file.name, code, features: Array.from(out.features!.data as Float32Array), ids: Array.from(ranked.indices, (i) => this.items.ids[i] ?? String(i)), distances: Array.from(ranked.distances), timings, ep: this.ep };
      setStatus(`${ranked.indices.length} nearest of ${this.info.db.count} for ${file.name}.`);
      document.body.dataset.state = 'done';
    } catch (e) {
      setStatus(`Could not search with ${file.name}: ${e instanceof Error ? e.message : String(e)}`, true);
      document.body.dataset.state = 'error';
    } finally {
      this.busy = false;
    }
  }

  private show(file: File, img: RgbImage, code: string, indices: Int32Array, distances: Int32Array, timings: Record<string, number>): void {
    const preview = $<HTMLImageElement>('query-preview');
    if (preview.src.startsWith('blob:')) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file);
    preview.alt = `Query image ${file.name}`;
    preview.hidden = false;
    $('query-name').textContent = `${file.name} (${img.width}×${img.height})`;
    $('query-code').textContent = code;
    const dl = $('timings');
    dl.replaceChildren();
    for (const [name, ms] of Object.entries(timings)) {
      const dt = document.createElement('dt');
      dt.textContent = name;
      const dd = document.createElement('dd');
      dd.textContent = `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
      dl.append(dt, dd);
    }
    const list = $('results');
    list.replaceChildren();
    indices.forEach((idx, r) => {
      const li = document.createElement('li');
      const fig = document.createElement('figure');
      const f = this.items.files[idx];
      const label = labelText(this.items, idx);
      const id = this.items.ids[idx] ?? String(idx);
      if (f) {
        const a = document.createElement('a');
        a.href = imageUrl(f);
        const im = document.createElement('img');
        im.src = imageUrl(f);
        im.alt = `Result ${r + 1}: ${label}, Hamming distance ${distances[r]}`;
        im.loading = 'lazy';
        im.decoding = 'async';
        a.append(im);
        fig.append(a);
      } else {
        const p = document.createElement('p');
        p.className = 'noimage';
        p.textContent = 'image not found';
        fig.append(p);
      }
      const cap = document.createElement('figcaption');
      const d = document.createElement('strong');
      d.textContent = `#${r + 1} · d = ${distances[r]}`;
      const l = document.createElement('span');
      l.textContent = label;
      const i = document.createElement('span');
      i.className = 'id';
      i.textContent = id;
      cap.append(d, l, i);
      fig.append(cap);
      li.append(fig);
      li.dataset.id = id;
      list.append(li);
    });
    $('result-section').hidden = false;
  }

  private async loadEvaluation(): Promise<void> {
    const panel = $('eval-body');
    if (!this.info.evaluation.runs && !this.info.evaluation.query) {
      panel.textContent = 'No evaluation was given: start fgh serve with --query CODES (the query split) and/or --runs DIR (a fgh train --out folder).';
      return;
    }
    const ev = await getJson<Evaluation>('/api/evaluation');
    panel.replaceChildren();
    if (ev.runs.length) {
      const h = document.createElement('h3');
      h.textContent = `mAP@all per code length${ev.runsDir ? ` (training run ${ev.runsDir})` : ''}`;
      const table = document.createElement('table');
      table.id = 'runs-table';
      const cap = document.createElement('caption');
      cap.textContent = 'Best and last mAP@all logged by training, per code length';
      table.append(cap);
      const head = table.createTHead().insertRow();
      for (const c of ['bits', 'best mAP', 'at epoch', 'last mAP', 'evaluations', 'epochs']) {
        const th = document.createElement('th');
        th.scope = 'col';
        th.textContent = c;
        head.append(th);
      }
      const body = table.createTBody();
      for (const r of ev.runs) {
        const row = body.insertRow();
        if (r.bits === ev.modelBits) row.className = 'current';
        for (const v of [String(r.bits), r.best?.toFixed(4) ?? '—', r.bestAt === null ? '—' : String(r.bestAt), r.last?.toFixed(4) ?? '—', String(r.evaluations), String(r.steps)]) row.insertCell().textContent = v;
      }
      panel.append(h, table);
    }
    if (ev.current) {
      const c = ev.current;
      const h = document.createElement('h3');
      h.textContent = `This model: ${c.bits} bits, ${c.numQuery} queries against ${c.numDb} gallery codes`;
      const p = document.createElement('p');
      p.id = 'current-map';
      p.textContent = `mAP@all ${c.map.toFixed(4)}; ${c.precisionAt.map((a) => `precision@${a.k} ${a.precision.toFixed(3)}`).join(', ')}`;
      const img = document.createElement('img');
      img.src = '/api/evaluation/pr.svg';
      img.alt = `Precision-recall curve by Hamming radius for ${c.bits}-bit codes: mAP@all ${c.map.toFixed(4)}`;
      img.className = 'pr';
      panel.append(h, p, img);
    }
  }
}

new Page().start().catch((e: unknown) => {
  setStatus(`The page could not start: ${e instanceof Error ? e.message : String(e)}`, true);
  document.body.dataset.state = 'error';
});
