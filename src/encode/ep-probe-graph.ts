import { GraphBuilder } from '../../exporters/graph.js';
import { encodeModel } from '../../exporters/onnx-writer.js';

/**
 * The tiny graph an execution provider must run before fgh trusts it: y = x · W for a 2x2 x,
 * written with fgh's own ONNX writer. Small enough to cost nothing, real enough that a provider
 * which initialises but cannot compute is caught.
 */
export const PROBE_WEIGHTS = [1, 2, 3, 4];
export const PROBE_INPUT = [1, -1, 0.5, 2];

export function probeGraph(): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', 'float32', [2, 2]);
  const y = g.op('MatMul', [x, g.floatConst('w', PROBE_WEIGHTS, [2, 2])]);
  g.rename(y, 'y');
  g.output('y', 'float32', [2, 2]);
  return encodeModel(g, { graphName: 'fgh-ep-probe', producerName: 'fgh', producerVersion: 'probe' });
}

/** x · W computed in JavaScript, what the provider must return. */
export function probeExpected(): number[] {
  const [a, b, c, d] = PROBE_INPUT as [number, number, number, number];
  const [p, q, r, s] = PROBE_WEIGHTS as [number, number, number, number];
  return [a * p + b * r, a * q + b * s, c * p + d * r, c * q + d * s];
}
