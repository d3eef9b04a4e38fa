import { createRequire } from 'node:module';
import os from 'node:os';
import { GraphBuilder } from '../../../exporters/graph.js';
import { encodeModel } from '../../../exporters/onnx-writer.js';
import { releaseArrayBuffer } from '../array-release.js';
import { ArrayPool, type ResultArray } from './array-pool.js';
import { OrtCApi, type CSessionSettings, type CTensor } from './c-api.js';

/**
 * onnxruntime-node's CPU provider as a synchronous compute engine for tfjs kernels.
 *
 * tfjs kernels must return their result synchronously. Each kernel signature (op, attributes,
 * input shapes) becomes a small ONNX graph with static shapes, loaded once into a session kept
 * for the life of the process. Sessions are called through onnxruntime's C API (c-api.ts), which
 * writes results straight into arrays from the pool; where that cannot be bound (or with
 * FGH_ORT_CALLS=binding), through onnxruntime-node's native binding, whose synchronous `run`
 * (the public one is a Promise around it) hands back a copy of every output.
 */

type Numeric = EngineTensor['data'];

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
export type EngineTensor = CTensor;

const TYPE_OF = new Map<Function, string>([
  [Float32Array, 'float32'],
  [Int32Array, 'int32'],
  [BigInt64Array, 'int64'],
  [Uint8Array, 'bool'],
]);

/** A loaded graph, whichever way it is called. */
interface KernelSession {
  /** Reads `inputs`, writes each output into the array given for it. */
  run(inputNames: string[], inputs: readonly EngineTensor[], outputNames: string[], outputs: readonly EngineTensor[]): void;
  dispose(): void;
}

/** How sessions are called: onnxruntime's C API (no copies) or onnxruntime-node's binding. */
export type OrtCalls = 'c-api' | 'binding';

function typeName(data: Numeric): string {
  const type = TYPE_OF.get(data.constructor);
  if (!type) throw new Error(`unsupported array ${data.constructor.name}`);
  return type;
}

/** {'a.b': v} as the binding's nested {a: {b: v}}. */
function nestConfig(config: Record<string, string>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    const parts = key.split('.');
    let node = root;
    for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
    node[parts[parts.length - 1]!] = value;
  }
  return root;
}

/** One cached graph: a loaded session, its input names and its (float32 or bool) outputs in order. */
interface Entry {
  session: KernelSession;
  inputs: string[];
  outputNames: string[];
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
  private readonly capi: OrtCApi | null;
  /** How sessions are called, and why not through the C API where they are not. */
  readonly calls: OrtCalls;
  readonly callsNote: string;
  private readonly settings: CSessionSettings;
  /** For small kernels: waking the pool's other threads costs more than it saves. */
  private readonly singleThread: CSessionSettings;

  /** Bytes this process may hold: the machine's, its cgroup's or FGH_MEMORY_LIMIT_MB, the least. */
  readonly memoryLimit: number;
  private rss = 0;
  private rssAt = -Infinity;

  constructor(readonly threads: number = os.availableParallelism(), env: NodeJS.ProcessEnv = process.env) {
    this.memoryLimit = memoryLimit();
    const require = createRequire(import.meta.url);
    this.native = require('onnxruntime-node/dist/binding') as NativeBinding;
    this.Tensor = (require('onnxruntime-common') as { Tensor: TensorConstructor }).Tensor;
    this.native.initOrt();
    this.settings = {
      intraOpThreads: threads,
      // Hundreds of sessions live side by side: an arena each would keep every session's peak
      // scratch memory forever, and idle pools spinning would steal the cores from the busy one.
      memArena: false,
      memPattern: false,
      config: { 'session.intra_op.allow_spinning': '0' },
    };
    this.singleThread = { ...this.settings, intraOpThreads: 1 };
    let capi: OrtCApi | null = null;
    let note = 'C API: results written in place';
    if (env.FGH_ORT_CALLS === 'binding') {
      note = 'FGH_ORT_CALLS=binding';
    } else if (env.FGH_ORT_CALLS !== undefined && env.FGH_ORT_CALLS !== '' && env.FGH_ORT_CALLS !== 'c-api') {
      throw new Error(`FGH_ORT_CALLS must be c-api or binding, got "${env.FGH_ORT_CALLS}"`);
    } else {
      try {
        capi = OrtCApi.load();
      } catch (e) {
        note = `the C API could not be bound (${(e as Error).message})`;
      }
    }
    this.capi = capi;
    this.calls = capi ? 'c-api' : 'binding';
    this.callsNote = note;
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
      entry = this.load(key, recipe, elements < SMALL_KERNEL_ELEMENTS ? this.singleThread : this.settings);
      this.sessions.set(key, entry);
    }
    if (entry.inputs.length !== inputs.length) throw new Error(`onnxruntime kernel ${key}: ${inputs.length} inputs for ${entry.inputs.length}`);
    // Outputs are written into arrays from the pool; the binding also makes a copy of each.
    const copies = this.capi ? 0 : 1;
    this.checkMemory(key, entry.outputs.reduce((a, o) => a + ((this.pool.has(o.bool, o.size) ? 0 : 1) + copies) * o.size * (o.bool ? 1 : 4), 0));
    const results: EngineTensor[] = entry.outputs.map((o) => ({ data: this.pool.take(o.bool, o.size), shape: o.shape }));
    const t0 = performance.now();
    try {
      entry.session.run(entry.inputs, inputs, entry.outputNames, results);
    } catch (e) {
      throw new Error(`onnxruntime kernel ${key}: ${(e as Error).message}`);
    }
    entry.ms += performance.now() - t0;
    entry.calls++;
    return results;
  }

  /**
   * A call needs new memory for each output the pool cannot supply (and, through the binding, for
   * each output's copy, whose failed allocation V8 answers by aborting the whole process). So a
   * call that would take the process past its memory limit is refused beforehand with an error
   * that callers can explain.
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

  private load(key: string, recipe: GraphRecipe, settings: CSessionSettings): Entry {
    const g = new GraphBuilder();
    recipe(g);
    const bytes = encodeModel(g, { graphName: key.slice(0, 64), producerName: 'fgh', producerVersion: 'kernel', opset: 17 });
    let session: KernelSession;
    try {
      session = this.capi ? this.capi.createSession(bytes, settings) : this.bindingSession(bytes, settings);
    } catch (e) {
      throw new Error(`onnxruntime could not load the graph for kernel ${key}: ${(e as Error).message}`);
    }
    const outputs = g.outputs.map((v) => {
      if ((v.dtype !== 'float32' && v.dtype !== 'bool') || v.shape.some((d) => typeof d !== 'number')) throw new Error(`kernel ${key}: outputs must be float32 or bool with static shapes`);
      const shape = v.shape as number[];
      return { name: v.name, shape, size: shape.reduce((a, b) => a * b, 1), bool: v.dtype === 'bool' };
    });
    return { session, inputs: g.inputs.map((v) => v.name), outputNames: outputs.map((o) => o.name), outputs, calls: 0, ms: 0 };
  }

  /** A session called through onnxruntime-node's binding, which returns a copy of each output. */
  private bindingSession(bytes: Uint8Array, s: CSessionSettings): KernelSession {
    const session = new this.native.binding.InferenceSession();
    session.loadModel(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength, {
      intraOpNumThreads: s.intraOpThreads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      enableCpuMemArena: s.memArena,
      enableMemPattern: s.memPattern,
      extra: nestConfig(s.config),
    });
    const Tensor = this.Tensor;
    return {
      run(inputNames, inputs, outputNames, outputs) {
        const feeds: Record<string, OrtTensor> = {};
        const fetches: Record<string, OrtTensor> = {};
        inputs.forEach((t, i) => (feeds[inputNames[i]!] = new Tensor(typeName(t.data), t.data, t.shape)));
        outputs.forEach((t, i) => (fetches[outputNames[i]!] = new Tensor(typeName(t.data), t.data, t.shape)));
        const out = session.run(feeds, fetches, {});
        // The copies are new ArrayBuffers nothing else has seen: freed at once, their memory serves the next.
        for (let i = 0; i < outputs.length; i++) {
          const copy = out[outputNames[i]!]?.data;
          if (copy && copy.buffer !== outputs[i]!.data.buffer) releaseArrayBuffer(copy.buffer as ArrayBuffer);
        }
      },
      dispose: () => session.dispose(),
    };
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
