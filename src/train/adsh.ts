import { tf } from '../backend/tf.js';
import type { Scalar, Tensor2D } from '../backend/tf.js';

/**
 * SEMICON's asymmetric objective (aassxun/SEMICON models/ADSH_Loss.py, SEMICON_train.py) for
 * single-label data, where the similarity S between sampled images and the database is a
 * function of the labels, so that neither S nor S^T U is ever materialised at N x N scale.
 */

/** r of the soft similarity S = S0 (1 + r) - r, S0 = +1 same class / -1 otherwise, over Ω x database. */
export function softSimilarityRatio(sampleLabels: readonly number[], dbLabels: readonly number[], classes: number): number {
  const dbCount = new Float64Array(classes);
  for (const y of dbLabels) dbCount[y]!++;
  let same = 0;
  for (const y of sampleLabels) same += dbCount[y]!;
  const total = sampleLabels.length * dbLabels.length;
  return (2 * same - total) / (2 * (total - same));
}

/** Rows of S for a batch: [batch, N]. */
export function similarityRows(batchLabels: readonly number[], dbLabels: readonly number[], r: number): Float32Array {
  const n = dbLabels.length;
  const out = new Float32Array(batchLabels.length * n);
  const pos = 1;
  const neg = -1 * (1 + r) - r;
  batchLabels.forEach((y, i) => {
    for (let j = 0; j < n; j++) out[i * n + j] = dbLabels[j] === y ? pos : neg;
  });
  return out;
}

/** ADSH loss: hash = sum (bits S - F B^T)^2 / (b N) / bits * 12; quant = sum (F - B_Ω)^2 / (b N) * gamma / bits * 12. */
export function adshLoss(f: Tensor2D, b: Tensor2D, sRows: Tensor2D, bOmega: Tensor2D, gamma: number): { loss: Scalar; hash: Scalar; quant: Scalar } {
  const bits = f.shape[1];
  const scale = f.shape[0] * b.shape[0];
  const hash = tf.mul(tf.sum(tf.square(tf.sub(tf.mul(sRows, bits), tf.matMul(f, b, false, true)))), 12 / scale / bits) as Scalar;
  const quant = tf.mul(tf.sum(tf.square(tf.sub(f, bOmega))), (12 * gamma) / scale / bits) as Scalar;
  return { loss: tf.add(hash, quant) as Scalar, hash, quant };
}

/**
 * The discrete update of the database codes, bit by bit (solve_dcc): with Q = (bits S)^T U + gamma Ū
 * (Ū = U scattered to the sampled rows), B[:, k] = sign(Q[:, k] - B_{-k} U_{-k}^T U[:, k]) using the
 * columns already updated. Float64 accumulation; sign(0) = 0 as torch.sign.
 */
export function solveDcc(B: Float32Array, U: Float32Array, sampleIndex: readonly number[], sampleLabels: readonly number[], dbLabels: readonly number[], classes: number, bits: number, gamma: number): Float32Array {
  const n = dbLabels.length;
  const ns = sampleIndex.length;
  const r = softSimilarityRatio(sampleLabels, dbLabels, classes);
  // S^T U = (1 + r) S0^T U - r * colsum(U), S0^T U[j] = 2 * (sum of U over samples of j's class) - colsum(U).
  const classSum = new Float64Array(classes * bits);
  const colSum = new Float64Array(bits);
  for (let i = 0; i < ns; i++) {
    const y = sampleLabels[i]!;
    for (let k = 0; k < bits; k++) {
      classSum[y * bits + k]! += U[i * bits + k]!;
      colSum[k]! += U[i * bits + k]!;
    }
  }
  const q = new Float64Array(n * bits);
  for (let j = 0; j < n; j++) {
    const y = dbLabels[j]!;
    for (let k = 0; k < bits; k++) q[j * bits + k] = bits * ((1 + r) * (2 * classSum[y * bits + k]! - colSum[k]!) - r * colSum[k]!);
  }
  sampleIndex.forEach((j, i) => {
    for (let k = 0; k < bits; k++) q[j * bits + k]! += gamma * U[i * bits + k]!;
  });
  const utu = new Float64Array(bits * bits);
  for (let i = 0; i < ns; i++) for (let a = 0; a < bits; a++) for (let c = 0; c < bits; c++) utu[a * bits + c]! += U[i * bits + a]! * U[i * bits + c]!;
  const out = Float32Array.from(B);
  for (let k = 0; k < bits; k++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let c = 0; c < bits; c++) if (c !== k) s += out[j * bits + c]! * utu[c * bits + k]!;
      out[j * bits + k] = Math.sign(q[j * bits + k]! - s);
    }
  }
  return out;
}
