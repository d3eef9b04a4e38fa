import test from 'ava';
import * as ort from 'onnxruntime-node';
import { GraphBuilder, int, ints } from '../../exporters/graph.js';
import { encodeModel } from '../../exporters/onnx-writer.js';
import { foldConstants, pruneDeadNodes } from '../../exporters/optimize.js';
import { hashingGraph } from '../../src/export/hashing.js';
import { selectBackend } from '../../src/backend/select.js';
import { createHashingModel } from '../../src/models/factory.js';
import { Rng } from '../../src/util/rng.js';

const OPTS = { graphName: 't', producerName: 'fgh-test', producerVersion: '0' };

function randomFloats(rng: Rng, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal());
}

/**
 * x [2,3,4] plus chains of constant nodes of every folded kind, some broadcasting, one op we do
 * not fold (Expand) and one constant chain that feeds a dynamic Reshape of x.
 */
function constantHeavyGraph(): GraphBuilder {
  const rng = new Rng(7);
  const g = new GraphBuilder();
  const x = g.input('x', 'float32', ['N', 3, 4]);
  const w = g.floatConst('w', randomFloats(rng, 12), [4, 3]);
  const wt = g.op('Transpose', [w], { perm: ints([1, 0]) }); // [3,4]
  const bias = g.floatConst('bias', randomFloats(rng, 4), [4]);
  const scaled = g.op('Mul', [g.op('Add', [wt, bias]), g.floatConst('half', [0.5], [])]); // broadcast [3,4]
  const ratio = g.op('Div', [g.op('Sqrt', [g.op('Add', [g.op('Mul', [scaled, scaled]), g.floatConst('one', [1], [1])])]), g.floatConst('three', [3], [1, 1])]);
  const neg = g.op('Sub', [g.op('Neg', [ratio]), g.op('Reciprocal', [g.floatConst('four', [4], [1])])]);
  const col = g.op('Unsqueeze', [g.floatConst('v', randomFloats(rng, 3), [3]), g.int64Const('axes', [1])]); // [3,1]
  const cat = g.op('Concat', [neg, col], { axis: int(1) }); // [3,5]
  const sq = g.op('Squeeze', [g.op('Reshape', [cat, g.int64Const('shape', [1, -1, 5])]), g.int64Const('axes', [0])]); // [3,5]
  const asInt = g.op('Cast', [g.op('Mul', [sq, g.floatConst('ten', [10], [])])], { to: int(7) });
  const back = g.op('Cast', [asInt], { to: int(1) }); // truncation towards zero
  const summed = g.op('Add', [back, sq]);
  const kept = g.op('Expand', [g.floatConst('e', [1, 2, 3], [3, 1]), g.int64Const('eshape', [3, 5])]); // not folded
  const y1 = g.op('Mul', [x, g.op('Slice', [g.op('Add', [summed, kept]), g.int64Const('s0', [0]), g.int64Const('s1', [4]), g.int64Const('sa', [1])])]);
  // Shape arithmetic on constants, as exporters emit for reshapes: [-1] ++ [2*6] -> Reshape of the dynamic x.
  const dims = g.op('Concat', [g.int64Const('lead', [-1]), g.op('Mul', [g.int64Const('two', [2]), g.int64Const('six', [6])])], { axis: int(0) });
  const y2 = g.op('Reshape', [x, dims]);
  g.rename(y1, 'y1');
  g.rename(y2, 'y2');
  g.output('y1', 'float32', ['N', 3, 4]);
  g.output('y2', 'float32', ['M', 12]);
  return g;
}

async function run(g: GraphBuilder, x: Float32Array): Promise<Record<string, Float32Array>> {
  const s = await ort.InferenceSession.create(encodeModel(g, OPTS), { graphOptimizationLevel: 'disabled' });
  const out = await s.run({ x: new ort.Tensor('float32', x, [2, 3, 4]) });
  await s.release();
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
}

test('constant folding: onnxruntime computes the same outputs from the folded graph, bit for bit', async (t) => {
  const x = randomFloats(new Rng(3), 24);
  const before = await run(constantHeavyGraph(), x);
  const g = constantHeavyGraph();
  const nodesBefore = g.nodes.length;
  const folded = foldConstants(g);
  const after = await run(g, x);
  t.log(`${nodesBefore} nodes -> ${g.nodes.length} (${folded} folded); left: ${g.nodes.map((n) => n.opType).join(', ')}`);
  t.deepEqual(g.nodes.map((n) => n.opType).sort(), ['Add', 'Expand', 'Mul', 'Reshape', 'Slice']);
  t.is(folded, nodesBefore - 5);
  for (const k of ['y1', 'y2']) t.deepEqual(Array.from(after[k]!), Array.from(before[k]!), k);
  // No initializer is left that nothing reads.
  const read = new Set(g.nodes.flatMap((n) => n.inputs));
  t.true([...g.initializers.keys()].every((k) => read.has(k)));
});

test('constant folding leaves graph outputs, non-constant nodes and unsafe integer divisions alone', (t) => {
  const g = new GraphBuilder();
  const x = g.input('x', 'float32', ['N', 2]);
  const c = g.floatConst('c', [1, 2], [2]);
  const y = g.op('Mul', [x, c]);
  const z = g.op('Div', [g.int64Const('a', [4]), g.int64Const('zero', [0])]);
  const k = g.op('Add', [c, c]);
  g.rename(y, 'y');
  g.rename(z, 'z');
  g.rename(k, 'k');
  g.output('y', 'float32', ['N', 2]);
  g.output('z', 'int64', [1]);
  g.output('k', 'float32', [2]);
  t.is(foldConstants(g), 0);
  t.is(g.nodes.length, 3);
});

test('exported sRLH and SEMICON graphs keep no node whose inputs are all constant', async (t) => {
  await selectBackend();
  for (const method of ['srlh', 'semicon'] as const) {
    const model = createHashingModel({ method, bits: 12, classes: 5 });
    try {
      const g = hashingGraph(model, { inputSize: 64 });
      const constant = g.nodes.filter((n) => n.inputs.length > 0 && n.inputs.every((i) => g.initializers.has(i)));
      t.deepEqual(constant.map((n) => `${n.opType} ${n.name}`), [], method);
      t.is(pruneDeadNodes(g), 0);
    } finally {
      model.dispose();
    }
  }
});
