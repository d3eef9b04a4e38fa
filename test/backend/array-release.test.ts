import test from 'ava';
import { tf } from '../../src/backend/tf.js';
import '@tensorflow/tfjs-backend-cpu';
import { ORT_BACKEND, OrtBackend, registerOrtBackend } from '../../src/backend/onnxruntime/backend.js';
import { arrayReleaseAvailable, releaseArrayBuffer } from '../../src/backend/array-release.js';

/**
 * The onnxruntime backend frees a kernel result's memory when tfjs disposes its tensor (instead
 * of at the next garbage collection), but never an array anyone else can still see: one read
 * out with dataSync, one a cpu kernel stored again as a view, or one the caller wrote.
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

test.serial("an onnxruntime result's memory is freed when its tensor is disposed", (t) => {
  const x = tf.randomNormal(SHAPE);
  const y = tf.relu(x);
  const data = arrayOf(y);
  t.is(data.length, N);
  t.is((tf.backend() as OrtBackend).engine.stats().calls > 0, true);
  y.dispose();
  t.is(data.length, 0, 'freed with the tensor');
  // The input came from tfjs's cpu kernel (RandomNormal), not from onnxruntime: left alone.
  const xs = arrayOf(x);
  x.dispose();
  t.is(xs.length, N);
});

test.serial('a result read out with dataSync stays intact after its tensor is disposed', (t) => {
  const x = tf.randomNormal(SHAPE);
  const y = tf.relu(x);
  const read = y.dataSync() as Float32Array;
  const expected = Float32Array.from(read);
  y.dispose();
  x.dispose();
  t.is(read.length, N);
  t.deepEqual(read, expected);
});

test.serial('a view that a cpu kernel made of a result outlives the result', (t) => {
  const x = tf.randomNormal(SHAPE);
  const y = tf.relu(x);
  const expected = Float32Array.from(arrayOf(y).subarray(0, 32 * 64 * 32));
  // tfjs's cpu Slice returns a subarray of the input's array for a contiguous slice.
  const s = tf.slice(y, [0, 0, 0], [32, 64, 32]);
  t.is(arrayOf(s).buffer, arrayOf(y).buffer, 'the slice shares its input array (else this test checks nothing)');
  y.dispose();
  x.dispose();
  t.deepEqual(arrayOf(s), expected);
  s.dispose();
});

test.serial('an array the caller handed to tf.tensor is never freed, nor a clone or reshape of a live result', (t) => {
  const mine = new Float32Array(N).fill(2);
  const a = tf.tensor(mine, SHAPE);
  const b = tf.relu(a);
  const r = tf.reshape(b, [N]);
  const c = tf.clone(b);
  b.dispose();
  t.is(arrayOf(r).length, N, 'reshape shares the data: alive while the reshape is');
  t.is(arrayOf(c).length, N);
  t.is(arrayOf(r)[7], 2);
  a.dispose();
  t.is(mine.length, N);
  const shared = arrayOf(r);
  r.dispose();
  t.is(shared.length, N, 'the clone still holds it');
  c.dispose();
  t.is(shared.length, 0, 'freed with the last tensor');
});
