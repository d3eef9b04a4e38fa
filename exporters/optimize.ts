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
  for (const bn of [...g.nodes]) {
    if (bn.opType !== 'BatchNormalization' || bn.outputs.length !== 1) continue;
    const conv = g.nodes.find((n) => n.outputs.includes(bn.inputs[0]!));
    if (!conv || conv.opType !== 'Conv' || consumers(g, conv.outputs[0]!).length !== 1) continue;
    if (g.outputs.some((o) => o.name === conv.outputs[0])) continue;
    const [gamma, beta, mean, variance] = bn.inputs.slice(1).map((n) => floatInit(g, n));
    const w = floatInit(g, conv.inputs[1]);
    if (!gamma || !beta || !mean || !variance || !w) continue;
    if (conv.inputs[1] && consumers(g, conv.inputs[1]).length !== 1) continue;
    const eps = bn.attrs.epsilon?.kind === 'float' ? bn.attrs.epsilon.value : 1e-5;
    const co = w.dims[0]!;
    const per = w.data.length / co;
    const oldBias = floatInit(g, conv.inputs[2]);
    const wData = new Float32Array(w.data.length);
    const bData = new Float32Array(co);
    for (let o = 0; o < co; o++) {
      const scale = (gamma.data[o] as number) / Math.sqrt((variance.data[o] as number) + eps);
      for (let k = 0; k < per; k++) wData[o * per + k] = (w.data[o * per + k] as number) * scale;
      const b0 = oldBias ? (oldBias.data[o] as number) : 0;
      bData[o] = (b0 - (mean.data[o] as number)) * scale + (beta.data[o] as number);
    }
    const wName = `${w.name}.folded`;
    const bName = `${w.name.replace(/\.weight$/, '')}.bias.folded`;
    g.initializers.set(wName, { name: wName, dtype: 'float32', dims: w.dims, data: wData });
    g.initializers.set(bName, { name: bName, dtype: 'float32', dims: [co], data: bData });
    conv.inputs = [conv.inputs[0]!, wName, bName];
    conv.outputs = [bn.outputs[0]!];
    g.nodes.splice(g.nodes.indexOf(bn), 1);
    folded++;
  }
  pruneInitializers(g);
  return folded;
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
