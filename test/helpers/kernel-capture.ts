import type { ExecutionContext } from 'ava';
import { tf } from '../../src/backend/tf.js';

/**
 * Records kernel invocations on one backend so that they can be replayed on two: every kernel
 * registered for `backend` is wrapped; the first few calls of each distinct signature (kernel,
 * attributes, input shapes and dtypes) keep copies of their inputs, taken before the call.
 */

export interface RecordedTensor {
  shape: number[];
  dtype: tf.DataType;
  values: Float32Array | Int32Array | Uint8Array;
}

export interface RecordedCall {
  kernel: string;
  attrs: Record<string, unknown>;
  inputs: Record<string, RecordedTensor>;
  /** Kernels such as Concat and AddN take a list of tensors rather than named ones. */
  list: boolean;
}

export interface Capture {
  calls: RecordedCall[];
  /** Every kernel name seen, with its call count. */
  seen: Map<string, number>;
  /** Calls not recorded because a tensor was too large. */
  skippedForSize: number;
  /** Signatures whose inputs could not be read back (should be none). */
  unreadable: string[];
  stop(): void;
}

type TensorInfo = { dataId: object; shape: number[]; dtype: tf.DataType };
type KernelArgs = { inputs: Record<string, TensorInfo | undefined> | TensorInfo[]; backend: { readSync(dataId: object): unknown }; attrs?: Record<string, unknown> };

function copy(backend: KernelArgs['backend'], t: TensorInfo): RecordedTensor {
  const v = backend.readSync(t.dataId) as Float32Array | Int32Array | Uint8Array;
  return { shape: [...t.shape], dtype: t.dtype, values: v.slice() };
}

/**
 * Max-pool gradients route each window's gradient to its maximum; where a window holds equal
 * maxima (the zeros a ReLU leaves, before ResNet's max pool) backends may pick different ones, all
 * correct (the ReLU behind zeroes the gradient there anyway). They are compared on the recorded
 * input with ties broken by a tiny distinct offset per element.
 */
const TIE_SENSITIVE = new Set(['MaxPoolGrad']);

function withoutTies(c: RecordedCall): RecordedCall {
  const inputs = { ...c.inputs };
  const x = inputs.input;
  if (x && x.dtype === 'float32') {
    const v = Float32Array.from(x.values as Float32Array);
    let scale = 0;
    for (const e of v) scale = Math.max(scale, Math.abs(e));
    // Offsets of 1e-6 of the scale, distinct within any window (9973 is prime, larger than a window).
    const step = Math.max(scale, 1) * 1e-6;
    for (let i = 0; i < v.length; i++) v[i] = v[i]! + (i % 9973) * step;
    inputs.input = { ...x, values: v };
    // The forward output must match the new input (a backend may route by equality with it).
    const xt = tf.tensor(v, x.shape, 'float32');
    const out = tf.engine().runKernel('MaxPool', { x: xt }, c.attrs as tf.NamedAttrMap) as tf.Tensor;
    inputs.output = { shape: [...out.shape], dtype: 'float32', values: Float32Array.from(out.dataSync() as Float32Array) };
    tf.dispose([xt, out]);
  }
  return { ...c, inputs };
}

/** Kernels whose output depends on their input's shape and dtype only. */
const SHAPE_ONLY = new Set(['ZerosLike', 'OnesLike']);

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export interface CaptureOptions {
  /** Calls recorded per distinct signature (default 1). */
  perSignature?: number;
  /** Largest input recorded, in elements (default 4M). */
  maxElements?: number;
  /** Per-kernel caps, for kernels whose reference implementation is slow. */
  maxElementsFor?: Record<string, number>;
  /** Kernels not recorded at all (fgh's own kernels, which the reference backend lacks and a test of their own covers). */
  skip?: readonly string[];
}

export function captureKernels(backend: string, opts: CaptureOptions = {}): Capture {
  const perSignature = opts.perSignature ?? 1;
  const maxElements = opts.maxElements ?? 4_000_000;
  const capture: Capture = { calls: [], seen: new Map(), skippedForSize: 0, unreadable: [], stop: () => undefined };
  const counts = new Map<string, number>();
  const originals = tf.getKernelsForBackend(backend);
  let depth = 0;
  const record = (kernel: string, args: KernelArgs): void => {
    if (opts.skip?.includes(kernel)) return;
    capture.seen.set(kernel, (capture.seen.get(kernel) ?? 0) + 1);
    const inputs = Object.entries(args.inputs).filter((e): e is [string, TensorInfo] => e[1] !== undefined);
    const attrs = { ...(args.attrs ?? {}) };
    const signature = `${kernel} ${JSON.stringify(attrs)} ${inputs.map(([n, t]) => `${n}:${t.dtype}[${t.shape.join(',')}]`).join(' ')}`;
    const n = counts.get(signature) ?? 0;
    if (n >= perSignature) return;
    counts.set(signature, n + 1);
    const cap = opts.maxElementsFor?.[kernel] ?? maxElements;
    if (inputs.some(([, t]) => size(t.shape) > cap)) {
      capture.skippedForSize++;
      return;
    }
    try {
      capture.calls.push({ kernel, attrs, list: Array.isArray(args.inputs), inputs: Object.fromEntries(inputs.map(([name, t]) => [name, copy(args.backend, t)])) });
    } catch {
      // The engine's backward pass asks for zeros shaped like tensors it has already released:
      // only the shape matters there. Any other unreadable input is reported.
      if (SHAPE_ONLY.has(kernel)) capture.calls.push({ kernel, attrs, list: Array.isArray(args.inputs), inputs: Object.fromEntries(inputs.map(([name, t]) => [name, { shape: [...t.shape], dtype: t.dtype, values: new Float32Array(size(t.shape)) }])) });
      else capture.unreadable.push(signature);
    }
  };
  for (const k of originals) {
    const inner = k.kernelFunc;
    tf.unregisterKernel(k.kernelName, backend);
    tf.registerKernel({
      ...k,
      kernelFunc: ((args: KernelArgs) => {
        // Kernels made of other kernels (ours are) are checked as a whole: record the outer call only.
        if (depth === 0) record(k.kernelName, args);
        depth++;
        try {
          return (inner as unknown as (a: KernelArgs) => TensorInfo | TensorInfo[])(args);
        } finally {
          depth--;
        }
      }) as unknown as tf.KernelFunc,
    });
  }
  capture.stop = () => {
    for (const k of originals) {
      tf.unregisterKernel(k.kernelName, backend);
      tf.registerKernel(k);
    }
  };
  return capture;
}

export interface ReplayResult {
  kernel: string;
  /** max |a - b| / max(1, max |b|) over all outputs; integer outputs: 0 if equal, else 1. */
  error: number;
  detail: string;
  /** Milliseconds the reference backend took. */
  ms: number;
}

function run(c: RecordedCall, backend: string): RecordedTensor[] | string {
  const previous = tf.getBackend();
  tf.setBackend(backend);
  const inputs = Object.fromEntries(Object.entries(c.inputs).map(([n, t]) => [n, tf.tensor(t.values, t.shape, t.dtype)]));
  try {
    const given = c.list ? Object.keys(inputs).sort((x, y) => Number(x) - Number(y)).map((k) => inputs[k]!) : inputs;
    const outs = tf.engine().runKernel(c.kernel, given as unknown as tf.NamedTensorMap, c.attrs as tf.NamedAttrMap) as tf.Tensor | tf.Tensor[];
    const list = Array.isArray(outs) ? outs : [outs];
    const copies = list.map((o) => ({ shape: [...o.shape], dtype: o.dtype, values: (o.dataSync() as Float32Array | Int32Array | Uint8Array).slice() }));
    tf.dispose(list);
    return copies;
  } catch (e) {
    return `cannot run on ${backend}: ${(e as Error).message}`;
  } finally {
    tf.dispose(Object.values(inputs));
    tf.setBackend(previous);
  }
}

const SUMS = new Set(['Sum', 'Mean', 'AddN']);
const PRODUCTS = new Set(['Conv2D', 'FusedConv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter', 'BatchMatMul', '_FusedMatMul']);

function maxAbsOf(t: RecordedTensor | undefined): number {
  let m = 0;
  if (t && t.dtype === 'float32') for (const v of t.values) m = Math.max(m, Math.abs(v));
  return m;
}

/**
 * The magnitude of the terms a kernel adds up: an output of sums can be far smaller than its terms
 * (cancellation), and float32's error is relative to the terms, so the error is measured against
 * the larger of that and the output's own magnitude. Sums: the largest input entry; products
 * (convolutions, matrix products): the product of the two operands' largest entries.
 */
function termScale(c: RecordedCall): number {
  const ins = Object.values(c.inputs);
  if (SUMS.has(c.kernel)) return Math.max(0, ...ins.map(maxAbsOf));
  if (PRODUCTS.has(c.kernel)) return maxAbsOf(ins[0]) * maxAbsOf(ins[1]);
  return 0;
}

/** Runs each recorded call on backends `a` and `b` and compares their outputs (b is the reference). */
export function replay(calls: readonly RecordedCall[], a: string, b: string): ReplayResult[] {
  const results: ReplayResult[] = [];
  for (const original of calls) {
    const c = TIE_SENSITIVE.has(original.kernel) ? withoutTies(original) : original;
    const got = run(c, a);
    const t0 = performance.now();
    const want = run(c, b);
    const ms = performance.now() - t0;
    if (typeof got === 'string' || typeof want === 'string') {
      results.push({ kernel: c.kernel, error: Infinity, detail: typeof got === 'string' ? got : (want as string), ms });
      continue;
    }
    let error = 0;
    let detail = '';
    if (got.length !== want.length) {
      results.push({ kernel: c.kernel, error: Infinity, detail: `${got.length} outputs vs ${want.length}`, ms });
      continue;
    }
    want.forEach((w, i) => {
      const g = got[i]!;
      if (g.shape.join() !== w.shape.join() || g.dtype !== w.dtype) {
        error = Infinity;
        detail = `output ${i}: ${g.dtype}[${g.shape}] vs ${w.dtype}[${w.shape}]`;
        return;
      }
      if (w.dtype === 'float32') {
        // Relative to the output's largest magnitude, or to its terms' where it sums (see termScale).
        let diff = 0;
        let scale = termScale(c);
        for (let j = 0; j < w.values.length; j++) {
          const x = g.values[j]!;
          const y = w.values[j]!;
          if (Number.isNaN(x) !== Number.isNaN(y)) diff = Infinity;
          else if (!Number.isNaN(y)) diff = Math.max(diff, Math.abs(x - y));
          scale = Math.max(scale, Math.abs(y));
        }
        const rel = diff === 0 ? 0 : diff / Math.max(scale, 1e-30);
        if (rel > error) {
          error = rel;
          detail = `output ${i}: max abs diff ${diff.toExponential(2)} at scale ${scale.toExponential(2)}`;
        }
      } else {
        for (let j = 0; j < w.values.length; j++) {
          if (Number(g.values[j]) !== Number(w.values[j])) {
            error = Math.max(error, 1);
            detail = `output ${i} (${w.dtype}) differs at ${j}: ${g.values[j]} vs ${w.values[j]}`;
            break;
          }
        }
      }
    });
    results.push({ kernel: c.kernel, error, detail, ms });
  }
  return results;
}

/**
 * Replays every recorded call on `backend` and on tfjs's cpu backend and asserts each kernel's
 * worst error is within `bound`; logs the kernels seen, the slowest on cpu and the worst errors.
 */
export function assertReplayMatchesCpu(t: ExecutionContext, label: string, capture: Capture, backend: string, bound: number): void {
  const t0 = Date.now();
  const results = replay(capture.calls, backend, 'cpu');
  t.log(`${label}: replay ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const worst = new Map<string, { error: number; detail: string }>();
  for (const r of results) if (!worst.has(r.kernel) || r.error > worst.get(r.kernel)!.error) worst.set(r.kernel, r);
  const names = [...capture.seen.keys()].sort();
  t.log(`${label}: ${names.length} kernels, ${results.length} signatures replayed on cpu, ${capture.skippedForSize} skipped for size: ${names.join(' ')}`);
  const ranked = [...worst].sort((a, b) => b[1].error - a[1].error);
  const slow = new Map<string, number>();
  for (const r of results) slow.set(r.kernel, (slow.get(r.kernel) ?? 0) + r.ms);
  t.log(`${label} cpu replay ms: ${[...slow].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([k, v]) => `${k} ${Math.round(v)}`).join(', ')}`);
  t.log(`${label} worst relative errors: ${ranked.slice(0, 6).map(([k, v]) => `${k} ${v.error.toExponential(1)}`).join(', ')}`);
  for (const [k, v] of ranked) t.true(v.error <= bound, `${label} ${k}: ${v.detail}`);
  t.deepEqual(capture.unreadable, [], 'every recorded input could be read back');
  for (const k of [...capture.seen.keys()]) t.true(worst.has(k), `${label}: ${k} ran but was never recorded (all calls too large?)`);
}
