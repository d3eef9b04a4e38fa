import { createRequire } from 'node:module';
import os from 'node:os';
import { GraphBuilder } from '../../../exporters/graph.js';
import { encodeModel } from '../../../exporters/onnx-writer.js';
import { releaseArrayBuffer } from '../array-release.js';
import { ArrayPool, type ResultArray } from './array-pool.js';

/**
 * onnxruntime-node's CPU provider as a synchronous compute engine for tfjs kernels.
 *
 * tfjs kernels must return their result synchronously; onnxruntime-node's public `run` is a
 * Promise, but it only wraps the native binding's `run`, which is synchronous. We call the
 * binding directly. Each kernel signature (op, attributes, input shapes) becomes a small ONNX
 * graph with static shapes, loaded once into a session kept for the life of the process.
 */

type Numeric = Float32Array | Int32Array | BigInt64Array | Uint8Array;

interface OrtTensor {
  readonly data: Numeric;
  readonly dims: readonly number[];
  readonly type: string;
}

interface TensorConstructor {
  new (type: string, data: Numeric, dims: readonly number[]): OrtTensor;
}

interface NativeSession {
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: Record<string, unknown>): void;
  run(feeds: Record<string, OrtTensor>, fetches: Record<string, OrtTensor>, options: Record<string, unknown>): Record<string, OrtTensor | undefined>;
  dispose(): void;
}

interface NativeBinding {
  binding: { InferenceSession: new () => NativeSession };
  initOrt(): void;
}

/** A value handed to or returned by the engine: a dense tensor in row-major order. */
export interface EngineTensor {
  data: Numeric;
  shape: readonly number[];
}

const TYPE_OF = new Map<Function, string>([
  [Float32Array, 'float32'],
  [Int32Array, 'int32'],
  [BigInt64Array, 'int64'],
  [Uint8Array, 'bool'],
]);

/** One cached graph: a loaded session, its input names and its (float32 or bool) outputs in order. */
interface Entry {
  session: NativeSession;
  inputs: string[];
  outputs: Array<{ name: string; shape: number[]; size: number; bool: boolean }>;
  calls: number;
  ms: number;
}

/** os.totalmem(), the cgroup's limit where there is one, and FGH_MEMORY_LIMIT_MB if set: the least. */
/** checkMemory reads the RSS afresh for outputs this large, or when its last reading is this old. */
const LARGE_OUTPUT_BYTES = 32 * 2 ** 20;
const RSS_TTL_MS = 50;

export function memoryLimit(env: NodeJS.ProcessEnv = process.env): number {
  let limit = os.totalmem();
  const cgroup = process.constrainedMemory?.() ?? 0;
  if (cgroup > 0 && cgroup < limit) limit = cgroup;
  const raw = env.FGH_MEMORY_LIMIT_MB;
  if (raw !== undefined && raw !== '') {
    const mb = Number(raw);
    if (!Number.isFinite(mb) || mb <= 0) throw new Error(`FGH_MEMORY_LIMIT_MB must be a positive number of MiB, got "${raw}"`);
    limit = Math.min(limit, mb * 2 ** 20);
  }
  return limit;
}

/** Kernels whose inputs hold fewer elements run on one thread (measured: faster below about this). */
export const SMALL_KERNEL_ELEMENTS = 1 << 18;

/** Builds the graph for a signature: declares inputs and outputs on `g`. */
export type GraphRecipe = (g: GraphBuilder) => void;

export interface EngineStats {
  sessions: number;
  calls: number;
  ms: number;
}

export class OrtEngine {
  private readonly sessions = new Map<string, Entry>();
  private readonly native: NativeBinding;
  private readonly Tensor: TensorConstructor;
  private readonly options: Record<string, unknown>;
  /** For small kernels: waking the pool's other threads costs more than it saves. */
  private readonly singleThread: Record<string, unknown>;

  /** Bytes this process may hold: the machine's, its cgroup's or FGH_MEMORY_LIMIT_MB, the least. */
  readonly memoryLimit: number;
  private rss = 0;
  private rssAt = -Infinity;

  constructor(readonly threads: number = os.availableParallelism()) {
    this.memoryLimit = memoryLimit();
    const require = createRequire(import.meta.url);
    this.native = require('onnxruntime-node/dist/binding') as NativeBinding;
    this.Tensor = (require('onnxruntime-common') as { Tensor: TensorConstructor }).Tensor;
    this.native.initOrt();
    this.options = {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      // Hundreds of sessions live side by side: an arena each would keep every session's peak
      // scratch memory forever, and idle pools spinning would steal the cores from the busy one.
      enableCpuMemArena: false,
      enableMemPattern: false,
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    };
    this.singleThread = { ...this.options, intraOpNumThreads: 1 };
    this.pool = new ArrayPool(Math.min(this.memoryLimit / 4, 8 * 2 ** 30));
  }

  /** Output arrays of disposed results, for the next outputs of their size. */
  private readonly pool: ArrayPool;

  /** Takes back the array of a disposed result that nothing else references (see OrtBackend.store). */
  recycle(data: ResultArray): void {
    this.pool.give(data);
  }

  /** A float32 array for a result computed in JavaScript, from the pool when one fits (contents undefined). */
  allocate(length: number): Float32Array {
    return this.pool.take(false, length) as Float32Array;
  }

  /**
   * Runs the graph cached under `key` (built by `recipe` on first use) on `inputs`, in the order
   * the recipe declared them; returns the outputs in declaration order.
   */
  run(key: string, recipe: GraphRecipe, inputs: EngineTensor[]): EngineTensor[] {
    let entry = this.sessions.get(key);
    if (!entry) {
      const elements = inputs.reduce((a, t) => a + t.data.length, 0);
      entry = this.load(key, recipe, elements < SMALL_KERNEL_ELEMENTS ? this.singleThread : this.options);
      this.sessions.set(key, entry);
    }
    if (entry.inputs.length !== inputs.length) throw new Error(`onnxruntime kernel ${key}: ${inputs.length} inputs for ${entry.inputs.length}`);
    const feeds: Record<string, OrtTensor> = {};
    for (let i = 0; i < inputs.length; i++) {
      const t = inputs[i]!;
      const type = TYPE_OF.get(t.data.constructor);
      if (!type) throw new Error(`onnxruntime kernel ${key}: unsupported input array ${t.data.constructor.name}`);
      feeds[entry.inputs[i]!] = new this.Tensor(type, t.data, t.shape);
    }
    // Each output's copy from the binding is new memory, and so is the output itself unless the pool has one.
    this.checkMemory(key, entry.outputs.reduce((a, o) => a + (this.pool.has(o.bool, o.size) ? 1 : 2) * o.size * (o.bool ? 1 : 4), 0));
    // Outputs are written into arrays from the pool. The binding still hands back a copy of each
    // in a new ArrayBuffer, which nothing else has seen: freed at once, its memory serves the next.
    const fetches: Record<string, OrtTensor> = {};
    const results: EngineTensor[] = [];
    for (const o of entry.outputs) {
      const data = this.pool.take(o.bool, o.size);
      fetches[o.name] = new this.Tensor(o.bool ? 'bool' : 'float32', data, o.shape);
      results.push({ data, shape: o.shape });
    }
    const t0 = performance.now();
    const out = entry.session.run(feeds, fetches, {});
    entry.ms += performance.now() - t0;
    entry.calls++;
    for (let i = 0; i < results.length; i++) {
      const copy = out[entry.outputs[i]!.name]?.data;
      if (copy && copy.buffer !== results[i]!.data.buffer) releaseArrayBuffer(copy.buffer as ArrayBuffer);
    }
    return results;
  }

  /**
   * The binding copies each output into a new ArrayBuffer, and V8 aborts the whole process when
   * that allocation fails (no exception to catch). So a call that would take the process past its
   * memory limit is refused beforehand with an error that callers can explain.
   */
  private checkMemory(key: string, needed: number): void {
    // Reading the RSS is a system call that cost seconds a run when made for every kernel. Between
    // readings the figure grows by what each call may allocate (frees are not subtracted, so it
    // only overstates), and it is read afresh when it gets old, the call is large or the margin thin.
    const now = performance.now();
    if (needed > LARGE_OUTPUT_BYTES || now - this.rssAt > RSS_TTL_MS || this.rss + needed > 0.75 * this.memoryLimit) {
      this.rss = process.memoryUsage.rss();
      this.rssAt = now;
    }
    if (this.rss + needed <= this.memoryLimit) {
      this.rss += needed;
      return;
    }
    const mib = (b: number): string => `${Math.round(b / 2 ** 20)} MiB`;
    throw new Error(`out of memory: ${key.split(':')[0]} needs ${mib(needed)} more with ${mib(this.rss)} in use, over the limit of ${mib(this.memoryLimit)}`);
  }

  private load(key: string, recipe: GraphRecipe, options: Record<string, unknown>): Entry {
    const g = new GraphBuilder();
    recipe(g);
    const bytes = encodeModel(g, { graphName: key.slice(0, 64), producerName: 'fgh', producerVersion: 'kernel', opset: 17 });
    const session = new this.native.binding.InferenceSession();
    try {
      session.loadModel(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength, options);
    } catch (e) {
      throw new Error(`onnxruntime could not load the graph for kernel ${key}: ${(e as Error).message}`);
    }
    const outputs = g.outputs.map((v) => {
      if ((v.dtype !== 'float32' && v.dtype !== 'bool') || v.shape.some((d) => typeof d !== 'number')) throw new Error(`kernel ${key}: outputs must be float32 or bool with static shapes`);
      const shape = v.shape as number[];
      return { name: v.name, shape, size: shape.reduce((a, b) => a * b, 1), bool: v.dtype === 'bool' };
    });
    return { session, inputs: g.inputs.map((v) => v.name), outputs, calls: 0, ms: 0 };
  }

  /** Per-signature counts and time, heaviest first (for profiles). */
  profile(): Array<{ key: string; calls: number; ms: number }> {
    return [...this.sessions].map(([key, e]) => ({ key, calls: e.calls, ms: e.ms })).sort((a, b) => b.ms - a.ms);
  }

  stats(): EngineStats {
    let calls = 0;
    let ms = 0;
    for (const e of this.sessions.values()) {
      calls += e.calls;
      ms += e.ms;
    }
    return { sessions: this.sessions.size, calls, ms };
  }

  dispose(): void {
    for (const e of this.sessions.values()) e.session.dispose();
    this.sessions.clear();
    this.pool.clear();
  }
}
