import { int, type GraphBuilder } from '../../exporters/graph.js';

/**
 * Packs features into codes inside the graph: bit = 1 iff feature > 0, most significant bit
 * first, zero padded to whole bytes (cli.md). One MatMul with a [bits, bytes] matrix of powers
 * of two does the packing; its sums are integers <= 255, exact in float32.
 */
export function emitPackedCodes(g: GraphBuilder, features: string, bits: number): string {
  const bytes = Math.ceil(bits / 8);
  const weights = new Float32Array(bits * bytes);
  for (let i = 0; i < bits; i++) weights[i * bytes + Math.floor(i / 8)] = 2 ** (7 - (i % 8));
  const positive = g.op('Cast', [g.op('Greater', [features, g.floatConst('zero', [0], [])])], { to: int(1) });
  const packed = g.op('MatMul', [positive, g.floatConst('bit_weights', weights, [bits, bytes])]);
  return g.op('Cast', [packed], { to: int(2) }); // 2 = UINT8
}

export function packedBytes(bits: number): number {
  return Math.ceil(bits / 8);
}
