import type { GraphBuilder, GraphNode, Initializer } from './graph.js';

/**
 * Graph rewrites that keep outputs equal up to float rounding: batch-norm folding into the
 * preceding convolution, and dropping initializers nothing reads.
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
