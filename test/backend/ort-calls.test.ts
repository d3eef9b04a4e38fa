import test from 'ava';
import { OrtEngine, type EngineTensor, type OrtCalls } from '../../src/backend/onnxruntime/engine.js';
import { output } from '../../src/backend/onnxruntime/delegate.js';
import { ints, type GraphBuilder } from '../../exporters/graph.js';

/**
 * The onnxruntime engine calls its sessions through onnxruntime's C API (outputs written in place,
 * no copies) or, as a fallback, through onnxruntime-node's binding. Both must give the values
 * computed here by hand, for float32, bool and int64 tensors, small arrays included, and report
 * onnxruntime's errors as exceptions that name the kernel.
 */

const engines = new Map<OrtCalls, OrtEngine>();
function engine(calls: OrtCalls): OrtEngine {
  let e = engines.get(calls);
  if (!e) engines.set(calls, (e = new OrtEngine(2, { FGH_ORT_CALLS: calls })));
  return e;
}

test.after.always(() => {
  for (const e of engines.values()) e.dispose();
});

function random(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    a[i] = s / 2147483648 - 0.5;
  }
  return a;
}

/** y = a @ b + 1 and y > 0 for a [m, k] and b [k, n]. */
function matMulRecipe(m: number, k: number, n: number) {
  return (g: GraphBuilder): void => {
    const a = g.input('a', 'float32', [m, k]);
    const b = g.input('b', 'float32', [k, n]);
    const y = g.op('Add', [g.op('MatMul', [a, b]), g.floatConst('one', [1], [])]);
    const positive = g.op('Greater', [y, g.floatConst('zero', [0], [])]);
    output(g, y, [m, n], 'float32', 'y');
    output(g, positive, [m, n], 'bool', 'positive');
  };
}

function matMulByHand(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float64Array {
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let p = 0; p < k; p++) s += a[i * k + p]! * b[p * n + j]!;
    y[i * n + j] = s + 1;
  }
  return y;
}

for (const calls of ['c-api', 'binding'] as const) {
  for (const [m, k, n] of [[1, 1, 2], [3, 5, 4], [64, 300, 96]] as const) {
    test(`${calls}: MatMul + 1 and its sign over [${m}, ${k}] x [${k}, ${n}] match the product by hand`, (t) => {
      const e = engine(calls);
      t.is(e.calls, calls);
      const a = random(m * k, 1 + m);
      const b = random(k * n, 2 + n);
      const want = matMulByHand(a, b, m, k, n);
      // Twice: the second call reuses the session (and, after recycling, a pooled output array).
      for (let round = 0; round < 2; round++) {
        const [y, positive] = e.run(`test-matmul:${m}x${k}x${n}`, matMulRecipe(m, k, n), [{ data: a, shape: [m, k] }, { data: b, shape: [k, n] }]) as [EngineTensor, EngineTensor];
        t.true(y.data instanceof Float32Array);
        t.true(positive.data instanceof Uint8Array);
        t.deepEqual([...y.shape], [m, n]);
        let worst = 0;
        for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs((y.data as Float32Array)[i]! - want[i]!) / Math.max(1, Math.abs(want[i]!)));
        t.true(worst < 1e-5, `worst relative error ${worst}`);
        t.deepEqual([...(positive.data as Uint8Array)], [...want].map((v) => (Math.fround(v) > 0 ? 1 : 0)));
        e.recycle(y.data as Float32Array);
      }
    });
  }

  test(`${calls}: int64 inputs are read in place (a Reshape whose shape comes in as a tensor)`, (t) => {
    const e = engine(calls);
    const x = random(24, 7);
    const recipe = (g: GraphBuilder): void => {
      const y = g.op('Reshape', [g.input('x', 'float32', [2, 3, 4]), g.input('shape', 'int64', [2])]);
      output(g, g.op('Transpose', [y], { perm: ints([1, 0]) }), [4, 6], 'float32', 'y');
    };
    const [y] = e.run('test-reshape', recipe, [{ data: x, shape: [2, 3, 4] }, { data: BigInt64Array.from([6n, 4n]), shape: [2] }]);
    const want: number[] = [];
    for (let j = 0; j < 4; j++) for (let i = 0; i < 6; i++) want.push(x[i * 4 + j]!);
    t.deepEqual([...(y!.data as Float32Array)], want);
  });

  test(`${calls}: an onnxruntime error is an exception that names the kernel, and the engine still works after it`, (t) => {
    const e = engine(calls);
    const recipe = (g: GraphBuilder): void => {
      const y = g.op('Reshape', [g.input('x', 'float32', [2, 3]), g.input('shape', 'int64', [1])]);
      output(g, y, [6], 'float32', 'y');
    };
    // A shape of 7 elements for 6 values: onnxruntime refuses at run time.
    const err = t.throws(() => e.run('test-bad-reshape', recipe, [{ data: random(6, 3), shape: [2, 3] }, { data: BigInt64Array.from([7n]), shape: [1] }]));
    t.regex(err!.message, /test-bad-reshape/);
    const [y] = e.run('test-bad-reshape', recipe, [{ data: Float32Array.from([1, 2, 3, 4, 5, 6]), shape: [2, 3] }, { data: BigInt64Array.from([6n]), shape: [1] }]);
    t.deepEqual([...(y!.data as Float32Array)], [1, 2, 3, 4, 5, 6]);
  });
}

test('the C API is what this machine uses by default, and a bad FGH_ORT_CALLS is refused', (t) => {
  const e = new OrtEngine(1, {});
  t.is(e.calls, 'c-api', e.callsNote);
  e.dispose();
  t.throws(() => new OrtEngine(1, { FGH_ORT_CALLS: 'ffi' }), { message: /FGH_ORT_CALLS must be c-api or binding, got "ffi"/ });
});
