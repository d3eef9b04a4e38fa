import type { KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import type { GraphBuilder } from '../../../exporters/graph.js';
import type { EngineTensor, OrtEngine } from './engine.js';

/**
 * What a tfjs kernel computed by onnxruntime is made of: it reads its inputs' arrays from the
 * backend's store, runs the graph cached for its signature and stores the result arrays as they
 * come back (no copy). A delegate returns null where its case is not delegated (other dtypes,
 * NCHW, tensors too small to repay a call), and the backend then runs tfjs's own cpu kernel.
 */

/** What a delegated kernel needs of the backend: array access and a place for results. */
export interface ArrayStore {
  readonly engine: OrtEngine;
  values(t: TensorInfo): Float32Array | Int32Array | Uint8Array | null;
  store(shape: readonly number[], dtype: 'float32' | 'bool', data: Float32Array | Uint8Array): TensorInfo;
}

export type Delegate = (inputs: Record<string, TensorInfo | undefined>, attrs: NamedAttrMap, store: ArrayStore) => TensorInfo | null;

/** Elementwise work below this many elements stays in JavaScript: a call costs tens of microseconds. */
export const MIN_DELEGATED_ELEMENTS = 1 << 14;

export function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function floats(store: ArrayStore, ...ts: TensorInfo[]): EngineTensor[] | null {
  const out: EngineTensor[] = [];
  for (const t of ts) {
    if (t.dtype !== 'float32') return null;
    const v = store.values(t);
    if (!(v instanceof Float32Array)) return null;
    out.push({ data: v, shape: t.shape });
  }
  return out;
}

/** floats() for kernels with no fallback: anything but float32 arrays is a caller's error. */
export function requireFloats(store: ArrayStore, kernel: string, ...ts: TensorInfo[]): EngineTensor[] {
  const ins = floats(store, ...ts);
  if (!ins) throw new Error(`${kernel} takes float32 inputs; got ${ts.map((t) => t.dtype).join(', ')}`);
  return ins;
}

/** Names a graph value as an output: the engine binds outputs by name, preallocated. */
export function output(g: GraphBuilder, value: string, shape: readonly number[], dtype: 'float32' | 'bool' = 'float32', name = 'y'): void {
  g.rename(value, name);
  g.output(name, dtype, [...shape]);
}

export function run(store: ArrayStore, key: string, recipe: (g: GraphBuilder) => void, ins: EngineTensor[]): TensorInfo {
  const [y] = store.engine.run(key, recipe, ins);
  if (y?.data instanceof Float32Array) return store.store(y.shape, 'float32', y.data);
  if (y?.data instanceof Uint8Array) return store.store(y.shape, 'bool', y.data);
  throw new Error(`onnxruntime kernel ${key} returned no float32 or bool output`);
}

/** A tfjs kernel that tries the delegate first and falls back to tfjs's cpu kernel. */
export function withFallback(name: string, delegate: Delegate, fallback: KernelFunc): KernelFunc {
  const f: KernelFunc = (args) => {
    const store = args.backend as unknown as ArrayStore;
    return delegate(args.inputs as Record<string, TensorInfo>, args.attrs ?? {}, store) ?? fallback(args);
  };
  Object.defineProperty(f, 'name', { value: `ort${name}` });
  return f;
}
