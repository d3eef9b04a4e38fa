import test from 'ava';
import { tf } from '../../src/backend/tf.js';
import '@tensorflow/tfjs-backend-cpu';
import { ORT_BACKEND, OrtBackend, registerOrtBackend } from '../../src/backend/onnxruntime/backend.js';
import { arrayReleaseAvailable, releaseArrayBuffer } from '../../src/backend/array-release.js';

/**
 * The onnxruntime backend reuses a kernel result's array for the next output of its size once
 * tfjs disposes its tensor (instead of leaving it to the garbage collector), but never an array
 * anyone else can still see: one read out with dataSync, one a cpu kernel stored again as a
 * view, or one the caller wrote.
 */

// Large enough to be released (small results are left to the collector) and to run in onnxruntime.
const SHAPE = [64, 64, 32];
const N = SHAPE.reduce((a, b) => a * b, 1);

function arrayOf(t: tf.Tensor): Float32Array {
  const v = (tf.backend() as OrtBackend).values(t);
  if (!(v instanceof Float32Array)) throw new Error('not a float32 tensor');
  return v;
}

test.before(async () => {
  registerOrtBackend();
  await tf.setBackend(ORT_BACKEND);
});

test.after.always(async () => {
  await tf.setBackend('cpu');
});

test('this Node can free an ArrayBuffer at once, and views of it then read as empty', (t) => {
  t.true(arrayReleaseAvailable());
  const a = new Float32Array(1024).fill(1);
  const view = a.subarray(10, 20);
  t.true(releaseArrayBuffer(a.buffer));
  t.is(a.length, 0);
  t.is(view.length, 0);
  t.false(releaseArrayBuffer(a.buffer), 'a detached buffer is not released twice');
});

test.serial("an onnxruntime result's array serves the next result of its size once its tensor is disposed", (t) => {
  const x = tf.randomNormal(SHAPE);
  const y = tf.relu(x);
  const data = arrayOf(y);
  t.is(data.length, N);
  const calls = (tf.backend() as OrtBackend).engine.stats().calls;
  const live = tf.relu(x);
  t.not(arrayOf(live), data, 'not while its tensor lives');
  y.dispose();
  const z = tf.neg(x);
  t.true((tf.backend() as OrtBackend).engine.stats().calls > calls, 'onnxruntime computed these (else this test checks nothing)');
  t.is(arrayOf(z), data, 'reused');
  t.deepEqual(arrayOf(z), Float32Array.from(arrayOf(x), (v) => -v), 'and overwritten in full');
  // The input came from tfjs's cpu kernel (RandomNormal), not from onnxruntime: never reused.
  const xs = arrayOf(x);
  x.dispose();
  const w = tf.relu(live);
  t.not(arrayOf(w), xs);
  t.is(xs.length, N);
  tf.dispose([live, z, w]);
});

test.serial('a result read out with dataSync stays intact after its tensor is disposed', (t) => {
  const x = tf.randomNormal(SHAPE);
  const y = tf.relu(x);
  const read = y.dataSync() as Float32Array;
  const expected = Float32Array.from(read);
  y.dispose();
  const other = tf.neg(x); // the next result of that size
  t.not(arrayOf(other), read);
  t.is(read.length, N);
  t.deepEqual(read, expected);
  tf.dispose([x, other]);
});

test.serial('a view that a cpu kernel made of a result outlives the result', (t) => {
  const x = tf.randomNormal(SHAPE);
  const y = tf.relu(x);
  const expected = Float32Array.from(arrayOf(y).subarray(0, 32 * 64 * 32));
  // tfjs's cpu Slice returns a subarray of the input's array for a contiguous slice.
  const s = tf.slice(y, [0, 0, 0], [32, 64, 32]);
  t.is(arrayOf(s).buffer, arrayOf(y).buffer, 'the slice shares its input array (else this test checks nothing)');
  y.dispose();
  const other = tf.neg(x);
  t.not(arrayOf(other).buffer, arrayOf(s).buffer);
  t.deepEqual(arrayOf(s), expected);
  tf.dispose([x, s, other]);
});

test.serial('an array the caller handed to tf.tensor is never reused, nor a clone or reshape of a live result', (t) => {
  const mine = new Float32Array(N).fill(2);
  const a = tf.tensor(mine, SHAPE);
  const b = tf.relu(a);
  const r = tf.reshape(b, [N]);
  const c = tf.clone(b);
  const shared = arrayOf(b);
  b.dispose();
  r.dispose();
  t.is(arrayOf(c), shared, 'the clone holds it');
  const e = tf.neg(a);
  t.not(arrayOf(e), shared, 'not reused while the clone lives');
  t.is(arrayOf(c)[7], 2);
  a.dispose();
  t.is(mine.length, N);
  t.true(mine.every((v) => v === 2));
  c.dispose();
  const f = tf.neg(e);
  t.is(arrayOf(f), shared, 'reused after the last tensor');
  tf.dispose([e, f]);
});

test.serial("MaxPool's gradient, computed in JavaScript into a pooled array, starts from zeros", (t) => {
  const x = tf.randomNormal([2, 32, 32, 64]);
  const w = tf.randomNormal([2, 16, 16, 64]);
  const grad = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(v as tf.Tensor4D, 3, 2, 'same'), w)));
  const g1 = grad(x);
  const first = arrayOf(g1);
  const expected = Float32Array.from(first);
  g1.dispose();
  const g2 = grad(x);
  t.is(arrayOf(g2), first, 'the second gradient lands in the first one\'s array (else this test checks nothing)');
  t.deepEqual(arrayOf(g2), expected);
  tf.dispose([x, w, g2]);
});
