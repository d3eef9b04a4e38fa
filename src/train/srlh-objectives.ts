import { tf } from '../backend/tf.js';
import type { Scalar, Tensor, Tensor2D, Tensor3D } from '../backend/tf.js';
import type { Rng } from '../util/rng.js';

/**
 * sRLH's objectives (Yajie-Zhang/sRLH utils/tools.py, hash_loss.py, triplet_loss.py, cub_train.py),
 * restated for batched tensors: hash centres, the soft similarity to them, the hash and
 * quantisation loss, the triplet loss over all triplets of a batch, and the centre update.
 */

function hadamard(n: number): Int8Array {
  let h = Int8Array.of(1);
  for (let size = 1; size < n; size *= 2) {
    const next = new Int8Array(4 * size * size);
    for (let i = 0; i < size; i++) {
      for (let j = 0; j < size; j++) {
        const v = h[i * size + j]!;
        next[i * 2 * size + j] = v;
        next[i * 2 * size + j + size] = v;
        next[(i + size) * 2 * size + j] = v;
        next[(i + size) * 2 * size + j + size] = -v;
      }
    }
    h = next;
  }
  return h;
}

/**
 * Class centres [classes, bits] of ±1: rows of [H; -H] for the Hadamard matrix H of the smallest
 * power of two >= bits, truncated to `bits` columns; when there are more classes than 2K rows,
 * the rest are random rows with K/2 minus ones, redrawn up to 20 times until the minimum pairwise
 * distance exceeds K/4 and the mean reaches K/2 (the reference's rule; it keeps the last draw).
 */
export function hashTargets(classes: number, bits: number, rng: Rng): Float32Array {
  const k = 2 ** Math.ceil(Math.log2(bits) - 1e-9);
  const h = hadamard(k);
  const rows = new Float32Array(classes * k);
  const fixed = Math.min(classes, 2 * k);
  for (let c = 0; c < fixed; c++) for (let j = 0; j < k; j++) rows[c * k + j] = c < k ? h[c * k + j]! : -h[(c - k) * k + j]!;
  if (classes > 2 * k) {
    for (let attempt = 0; attempt < 20; attempt++) {
      for (let c = 2 * k; c < classes; c++) {
        rows.fill(1, c * k, (c + 1) * k);
        for (const j of rng.sample(k, Math.floor(k / 2))) rows[c * k + j] = -1;
      }
      let min = Infinity;
      let sum = 0;
      let pairs = 0;
      for (let a = 0; a < classes; a++) {
        for (let b = a + 1; b < classes; b++) {
          let d = 0;
          for (let j = 0; j < k; j++) if (rows[a * k + j] !== rows[b * k + j]) d++;
          min = Math.min(min, d);
          sum += d;
          pairs++;
        }
      }
      if (min > k / 4 && sum / pairs >= k / 2) break;
    }
  }
  const out = new Float32Array(classes * bits);
  for (let c = 0; c < classes; c++) for (let j = 0; j < bits; j++) out[c * bits + j] = rows[c * k + j]!;
  return out;
}

/** S[i, c] = +1 if item i is of class c else -1, then S(1 + r) - r with r = sum(S) / sum(1 - S). */
export function softSimilarity(labels: readonly number[], classes: number): Float32Array {
  const n = labels.length;
  const s = new Float32Array(n * classes).fill(-1);
  labels.forEach((y, i) => (s[i * classes + y] = 1));
  let sum = 0;
  let oneMinus = 0;
  for (const v of s) {
    sum += v;
    oneMinus += 1 - v;
  }
  const r = sum / oneMinus;
  for (let i = 0; i < s.length; i++) s[i] = s[i]! * (1 + r) - r;
  return s;
}

/** [sum (bits S - F C^T)^2 + gamma sum (|F| - 1)^2] / (N * classes). */
export function hashLoss(f: Tensor2D, centres: Tensor2D, s: Tensor2D, gamma: number): Scalar {
  return tf.tidy(() => {
    const bits = f.shape[1];
    const fit = tf.sum(tf.square(tf.sub(tf.mul(s, bits), tf.matMul(f, centres, false, true))));
    const quant = tf.sum(tf.square(tf.sub(tf.abs(f), 1)));
    return tf.div(tf.add(fit, tf.mul(quant, gamma)), f.shape[0] * centres.shape[0]) as Scalar;
  });
}

/**
 * Triplet loss on the selected local features [N, parts, C]: every (anchor, positive) pair i < j of
 * one class with every negative of another class; features L2-normalised per part, similarity =
 * dot product; mean over triplets and parts of max(0, neg - pos + margin). 0 when there is no triplet.
 * Computed on [parts, N, N, N] with a mask instead of gathers (no gather gradient needed).
 */
export function tripletLoss(locals: Tensor3D, labels: readonly number[], margin: number): Scalar {
  const n = labels.length;
  const mask = new Float32Array(n * n * n);
  let triplets = 0;
  for (let a = 0; a < n; a++) {
    for (let p = a + 1; p < n; p++) {
      if (labels[a] !== labels[p]) continue;
      for (let q = 0; q < n; q++) {
        if (labels[q] === labels[a]) continue;
        mask[(a * n + p) * n + q] = 1;
        triplets++;
      }
    }
  }
  return tf.tidy(() => {
    // A zero tied to the input keeps the gradient defined; |x| makes it +0, never -0.
    if (triplets === 0) return tf.mul(tf.sum(tf.abs(locals)), 0) as Scalar;
    const parts = locals.shape[1];
    const norm = tf.maximum(tf.sqrt(tf.sum(tf.square(locals), 2, true)), 1e-12);
    const x = tf.transpose(tf.div(locals, norm), [1, 0, 2]); // [parts, N, C]
    const sim = tf.matMul(x, x, false, true); // [parts, N, N]
    const neg = tf.reshape(sim, [parts, n, 1, n]); // sim[a, q]
    const pos = tf.reshape(sim, [parts, n, n, 1]); // sim[a, p]
    const hinge = tf.relu(tf.add(tf.sub(neg, pos), margin)) as Tensor;
    const m = tf.tensor4d(mask, [1, n, n, n]);
    return tf.div(tf.sum(tf.mul(hinge, m)), triplets * parts) as Scalar;
  });
}

/**
 * After an epoch: C' = rows of (Y^T B / class counts), L2-normalised; C = sign(alpha C' +
 * (1 - alpha) GS(C')), where GS is the reference's Gram-Schmidt (each row only loses its
 * projection on the previous orthonormal row). A class absent from the epoch keeps its centre
 * (the reference would divide by zero there).
 */
export function updateCentres(centres: Float32Array, codes: Float32Array, labels: readonly number[], classes: number, bits: number, alpha: number): Float32Array {
  const mean = new Float64Array(classes * bits);
  const count = new Float64Array(classes);
  labels.forEach((y, i) => {
    count[y]!++;
    for (let j = 0; j < bits; j++) mean[y * bits + j]! += codes[i * bits + j]!;
  });
  const cp = new Float64Array(classes * bits);
  for (let c = 0; c < classes; c++) {
    if (!count[c]) continue;
    let norm = 0;
    for (let j = 0; j < bits; j++) norm += (mean[c * bits + j]! / count[c]!) ** 2;
    norm = Math.max(Math.sqrt(norm), 1e-12);
    for (let j = 0; j < bits; j++) cp[c * bits + j] = mean[c * bits + j]! / count[c]! / norm;
  }
  const q = new Float64Array(classes * bits);
  for (let c = 0; c < classes; c++) {
    const u = cp.slice(c * bits, (c + 1) * bits);
    if (c > 0) {
      let dot = 0;
      for (let j = 0; j < bits; j++) dot += q[(c - 1) * bits + j]! * cp[c * bits + j]!;
      for (let j = 0; j < bits; j++) u[j]! -= dot * q[(c - 1) * bits + j]!;
    }
    let norm = 0;
    for (let j = 0; j < bits; j++) norm += u[j]! ** 2;
    norm = Math.sqrt(norm);
    if (norm > 0) for (let j = 0; j < bits; j++) q[c * bits + j] = u[j]! / norm;
  }
  const out = new Float32Array(classes * bits);
  for (let c = 0; c < classes; c++) {
    for (let j = 0; j < bits; j++) {
      if (!count[c]) {
        out[c * bits + j] = centres[c * bits + j]!;
        continue;
      }
      out[c * bits + j] = Math.sign(alpha * cp[c * bits + j]! + (1 - alpha) * q[c * bits + j]!);
    }
  }
  return out;
}
