import type { AttrValue, GraphBuilder, GraphNode, Initializer } from './graph.js';

/**
 * Graph rewrites that keep outputs equal up to float rounding: batch-norm folding into the
 * preceding convolution, constant folding, dead nodes and initializers nothing reads.
 */

function consumers(g: GraphBuilder, value: string): GraphNode[] {
  return g.nodes.filter((n) => n.inputs.includes(value));
}

function floatInit(g: GraphBuilder, name: string | undefined): Initializer | null {
  if (name === undefined) return null;
  const t = g.initializers.get(name);
  return t && t.dtype === 'float32' ? t : null;
}

/**
 * Conv -> BatchNormalization (inference form) becomes one Conv with scaled weights and a bias:
 * w' = w * gamma / sqrt(var + eps) per output channel, b' = (b - mean) * gamma / sqrt(var + eps) + beta.
 * Computed in float64 and rounded once. Returns the number of folded pairs.
 */
export function foldBatchNorm(g: GraphBuilder): number {
  let folded = 0;
  // A module applied several times (SEMICON's shared refine stage) folds once: same weights, same BN.
  const cache = new Map<string, [string, string]>();
  for (const bn of [...g.nodes]) {
    if (bn.opType !== 'BatchNormalization' || bn.outputs.length !== 1) continue;
    const conv = g.nodes.find((n) => n.outputs.includes(bn.inputs[0]!));
    if (!conv || conv.opType !== 'Conv' || consumers(g, conv.outputs[0]!).length !== 1) continue;
    if (g.outputs.some((o) => o.name === conv.outputs[0])) continue;
    const [gamma, beta, mean, variance] = bn.inputs.slice(1).map((n) => floatInit(g, n));
    const w = floatInit(g, conv.inputs[1]);
    if (!gamma || !beta || !mean || !variance || !w) continue;
    const eps = bn.attrs.epsilon?.kind === 'float' ? bn.attrs.epsilon.value : 1e-5;
    const key = [...conv.inputs.slice(1), ...bn.inputs.slice(1), eps].join('|');
    let names = cache.get(key);
    if (!names) {
      names = foldedInitializers(g, w, floatInit(g, conv.inputs[2]), { gamma, beta, mean, variance }, eps);
      cache.set(key, names);
    }
    conv.inputs = [conv.inputs[0]!, names[0], names[1]];
    conv.outputs = [bn.outputs[0]!];
    g.nodes.splice(g.nodes.indexOf(bn), 1);
    folded++;
  }
  pruneInitializers(g);
  return folded;
}

interface BatchNormParams {
  gamma: Initializer;
  beta: Initializer;
  mean: Initializer;
  variance: Initializer;
}

function foldedInitializers(g: GraphBuilder, w: Initializer, oldBias: Initializer | null, bn: BatchNormParams, eps: number): [string, string] {
  const co = w.dims[0]!;
  const per = w.data.length / co;
  const wData = new Float32Array(w.data.length);
  const bData = new Float32Array(co);
  for (let o = 0; o < co; o++) {
    const scale = (bn.gamma.data[o] as number) / Math.sqrt((bn.variance.data[o] as number) + eps);
    for (let k = 0; k < per; k++) wData[o * per + k] = (w.data[o * per + k] as number) * scale;
    const b0 = oldBias ? (oldBias.data[o] as number) : 0;
    bData[o] = (b0 - (bn.mean.data[o] as number)) * scale + (bn.beta.data[o] as number);
  }
  const base = bn.gamma.name.replace(/\.weight$/, '');
  const wName = g.fresh(`${w.name}.folded`);
  const bName = g.fresh(`${base}.folded_bias`);
  g.initializers.set(wName, { name: wName, dtype: 'float32', dims: w.dims, data: wData });
  g.initializers.set(bName, { name: bName, dtype: 'float32', dims: [co], data: bData });
  return [wName, bName];
}

/** Removes initializers that no node reads and that are not graph inputs. */
export function pruneInitializers(g: GraphBuilder): number {
  const used = new Set<string>();
  for (const n of g.nodes) for (const i of n.inputs) used.add(i);
  for (const o of g.outputs) used.add(o.name);
  let removed = 0;
  for (const name of [...g.initializers.keys()]) {
    if (!used.has(name)) {
      g.initializers.delete(name);
      removed++;
    }
  }
  return removed;
}

/**
 * Removes nodes whose outputs reach no graph output (e.g. a backbone's pooling that a model
 * does not use), then the initializers only they read. Returns the number of nodes removed.
 */
export function pruneDeadNodes(g: GraphBuilder): number {
  const live = new Set(g.outputs.map((o) => o.name));
  const keep = new Array<boolean>(g.nodes.length).fill(false);
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const n = g.nodes[i]!;
    if (n.outputs.some((o) => live.has(o))) {
      keep[i] = true;
      for (const x of n.inputs) live.add(x);
    }
  }
  const before = g.nodes.length;
  const kept = g.nodes.filter((_, i) => keep[i]);
  g.nodes.length = 0;
  g.nodes.push(...kept);
  pruneInitializers(g);
  return before - kept.length;
}

type Data = Initializer['data'];

function strides(dims: readonly number[]): number[] {
  const s = new Array<number>(dims.length).fill(1);
  for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1]! * dims[i + 1]!;
  return s;
}

const size = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

function emptyLike(dtype: Initializer['dtype'], n: number): Data {
  switch (dtype) {
    case 'float32':
      return new Float32Array(n);
    case 'int64':
      return new BigInt64Array(n);
    case 'int32':
      return new Int32Array(n);
    default:
      return new Uint8Array(n);
  }
}

/** Reads element `i` as a number or bigint, whichever the array holds. */
const at = (d: Data, i: number): number | bigint => d[i]!;

function ints64(t: Initializer): number[] {
  return Array.from(t.data as BigInt64Array, Number);
}

function transpose(t: Initializer, perm: number[]): Initializer {
  const dims = perm.map((p) => t.dims[p]!);
  const inS = strides(t.dims);
  const outS = strides(dims);
  const out = emptyLike(t.dtype, t.data.length);
  const idx = new Array<number>(dims.length).fill(0);
  for (let o = 0; o < out.length; o++) {
    let rest = o;
    let src = 0;
    for (let k = 0; k < dims.length; k++) {
      idx[k] = Math.floor(rest / outS[k]!);
      rest -= idx[k]! * outS[k]!;
      src += idx[k]! * inS[perm[k]!]!;
    }
    (out as unknown as (number | bigint)[])[o] = at(t.data, src);
  }
  return { ...t, dims, data: out };
}

/** numpy broadcasting of two shapes; null where they do not broadcast. */
function broadcastDims(a: readonly number[], b: readonly number[]): number[] | null {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return null;
    out.push(Math.max(x, y));
  }
  return out;
}

/** Offset into a tensor of shape `dims` for an output index of shape `outDims` (broadcast). */
function broadcastIndex(o: number, outDims: readonly number[], outS: readonly number[], dims: readonly number[], s: readonly number[]): number {
  let rest = o;
  let src = 0;
  const lead = outDims.length - dims.length;
  for (let k = 0; k < outDims.length; k++) {
    const i = Math.floor(rest / outS[k]!);
    rest -= i * outS[k]!;
    if (k >= lead && dims[k - lead] !== 1) src += i * s[k - lead]!;
  }
  return src;
}

const FLOAT_BINARY: Record<string, (x: number, y: number) => number> = {
  Add: (x, y) => x + y,
  Sub: (x, y) => x - y,
  Mul: (x, y) => x * y,
  Div: (x, y) => x / y,
};
const INT_BINARY: Record<string, (x: bigint, y: bigint) => bigint> = {
  Add: (x, y) => x + y,
  Sub: (x, y) => x - y,
  Mul: (x, y) => x * y,
  Div: (x, y) => x / y,
};

function binary(op: string, a: Initializer, b: Initializer): Initializer | null {
  if (a.dtype !== b.dtype || (a.dtype !== 'float32' && a.dtype !== 'int64')) return null;
  const dims = broadcastDims(a.dims, b.dims);
  if (!dims) return null;
  if (a.dtype === 'int64' && op === 'Div' && Array.from(b.data as BigInt64Array).some((v) => v === 0n)) return null;
  const outS = strides(dims);
  const aS = strides(a.dims);
  const bS = strides(b.dims);
  const n = size(dims);
  const out = emptyLike(a.dtype, n);
  for (let o = 0; o < n; o++) {
    const x = at(a.data, broadcastIndex(o, dims, outS, a.dims, aS));
    const y = at(b.data, broadcastIndex(o, dims, outS, b.dims, bS));
    // A float32 op on float32 inputs is the double result rounded once (exact for + - * /).
    if (a.dtype === 'float32') (out as Float32Array)[o] = FLOAT_BINARY[op]!(x as number, y as number);
    else (out as BigInt64Array)[o] = INT_BINARY[op]!(x as bigint, y as bigint);
  }
  return { name: '', dtype: a.dtype, dims, data: out };
}

function unary(t: Initializer, f: (x: number) => number): Initializer | null {
  if (t.dtype !== 'float32') return null;
  return { ...t, data: (t.data as Float32Array).map(f) };
}

function reshape(t: Initializer, shape: number[], allowZero: boolean): Initializer | null {
  const dims = shape.map((d, i) => (d === 0 && !allowZero ? t.dims[i]! : d));
  const free = dims.indexOf(-1);
  if (free >= 0) {
    const known = dims.reduce((a, d, i) => (i === free ? a : a * d), 1);
    if (known === 0) return null;
    dims[free] = t.data.length / known;
  }
  if (size(dims) !== t.data.length || dims.some((d) => !Number.isInteger(d) || d < 0)) return null;
  return { ...t, dims };
}

function normAxes(axes: number[], rank: number): number[] {
  return axes.map((a) => (a < 0 ? a + rank : a));
}

function concat(ts: Initializer[], axis: number): Initializer | null {
  const first = ts[0]!;
  const rank = first.dims.length;
  const ax = axis < 0 ? axis + rank : axis;
  if (ts.some((t) => t.dtype !== first.dtype || t.dims.length !== rank || t.dims.some((d, i) => i !== ax && d !== first.dims[i]))) return null;
  const dims = first.dims.slice();
  dims[ax] = ts.reduce((a, t) => a + t.dims[ax]!, 0);
  const outer = size(first.dims.slice(0, ax));
  const out = emptyLike(first.dtype, size(dims));
  let o = 0;
  for (let i = 0; i < outer; i++) {
    for (const t of ts) {
      const block = size(t.dims.slice(ax));
      for (let k = 0; k < block; k++) (out as unknown as (number | bigint)[])[o++] = at(t.data, i * block + k);
    }
  }
  return { name: '', dtype: first.dtype, dims, data: out };
}

const ONNX_TO_DTYPE: Record<number, Initializer['dtype']> = { 1: 'float32', 7: 'int64', 2: 'uint8', 6: 'int32', 9: 'bool' };

function cast(t: Initializer, to: Initializer['dtype']): Initializer | null {
  const n = t.data.length;
  const out = emptyLike(to, n);
  for (let i = 0; i < n; i++) {
    const v = at(t.data, i);
    if (to === 'int64') {
      if (typeof v === 'bigint') (out as BigInt64Array)[i] = v;
      else if (!Number.isFinite(v)) return null;
      else (out as BigInt64Array)[i] = BigInt(Math.trunc(v));
    } else if (to === 'bool') (out as Uint8Array)[i] = Number(v) !== 0 ? 1 : 0;
    else if (to === 'float32') (out as Float32Array)[i] = Number(v);
    else return null; // narrowing integer casts wrap; not worth folding
  }
  return { name: '', dtype: to, dims: t.dims.slice(), data: out };
}

/** The value of a node whose inputs are all constant, or null where we do not evaluate it. */
function evaluate(n: GraphNode, xs: Initializer[]): Initializer | null {
  const attr = (k: string): AttrValue | undefined => n.attrs[k];
  const intsAttr = (k: string): number[] | undefined => {
    const a = attr(k);
    return a?.kind === 'ints' ? a.value : undefined;
  };
  const intAttr = (k: string, d: number): number => {
    const a = attr(k);
    return a?.kind === 'int' ? a.value : d;
  };
  const [a, b] = xs;
  switch (n.opType) {
    case 'Identity':
      return a!;
    case 'Transpose':
      return transpose(a!, intsAttr('perm') ?? a!.dims.map((_, i) => a!.dims.length - 1 - i));
    case 'Reshape':
      return b && b.dtype === 'int64' ? reshape(a!, ints64(b), intAttr('allowzero', 0) === 1) : null;
    case 'Unsqueeze': {
      const axes = b && b.dtype === 'int64' ? ints64(b) : intsAttr('axes');
      if (!axes) return null;
      const rank = a!.dims.length + axes.length;
      const set = new Set(normAxes(axes, rank));
      const dims: number[] = [];
      let k = 0;
      for (let i = 0; i < rank; i++) dims.push(set.has(i) ? 1 : a!.dims[k++]!);
      return { ...a!, dims };
    }
    case 'Squeeze': {
      const axes = b && b.dtype === 'int64' ? ints64(b) : intsAttr('axes');
      const set = new Set(axes ? normAxes(axes, a!.dims.length) : a!.dims.flatMap((d, i) => (d === 1 ? [i] : [])));
      if ([...set].some((i) => a!.dims[i] !== 1)) return null;
      return { ...a!, dims: a!.dims.filter((_, i) => !set.has(i)) };
    }
    case 'Concat':
      return concat(xs, intAttr('axis', 0));
    case 'Add':
    case 'Sub':
    case 'Mul':
    case 'Div':
      return binary(n.opType, a!, b!);
    case 'Neg':
      return unary(a!, (x) => -x);
    case 'Sqrt':
      return unary(a!, Math.sqrt);
    case 'Reciprocal':
      return unary(a!, (x) => 1 / x);
    case 'Cast': {
      const to = ONNX_TO_DTYPE[intAttr('to', 0)];
      return to ? cast(a!, to) : null;
    }
    default:
      return null;
  }
}

/**
 * Evaluates nodes whose inputs are all initializers and replaces them by their value, in graph
 * order so that chains fold completely. Ops we do not evaluate are left as they are; so are
 * results larger than their inputs by more than `maxGrowth` (folding must not bloat the file).
 * Returns the number of nodes removed.
 */
export function foldConstants(g: GraphBuilder, maxGrowth = 1 << 20): number {
  const outputs = new Set(g.outputs.map((o) => o.name));
  let folded = 0;
  for (const n of [...g.nodes]) {
    if (n.outputs.length !== 1 || n.domain || outputs.has(n.outputs[0]!)) continue;
    const xs = n.inputs.map((i) => g.initializers.get(i));
    if (xs.length === 0 || xs.some((x) => x === undefined)) continue;
    const value = evaluate(n, xs as Initializer[]);
    if (!value) continue;
    const inputElems = (xs as Initializer[]).reduce((s, x) => s + x.data.length, 0);
    if (value.data.length > inputElems + maxGrowth) continue;
    const name = n.outputs[0]!;
    g.initializers.set(name, { ...value, name });
    g.nodes.splice(g.nodes.indexOf(n), 1);
    folded++;
  }
  pruneInitializers(g);
  return folded;
}
