import { FghError } from '../../util/errors.js';
import { checkBits, packSigns, type Codes } from '../codes.js';
import { checkFeatures, checkSameWidth, type Features } from './features.js';
import { gemmNT, topEigen, transpose, type TopEigenOptions } from './linalg.js';

/**
 * Principal component analysis of a set of feature rows, fitted on the database (the hashing
 * baselines never see the queries when they fit).
 */
export interface Pca {
  /** Feature dimension. */
  dim: number;
  /** Number of components. */
  k: number;
  /** The mean that is subtracted before projecting. */
  mean: Float64Array;
  /** Unit principal directions as rows [k, dim], by decreasing variance. */
  components: Float64Array;
  /** Variance along each component (sample variance, divided by rows - 1 as numpy.cov does). */
  variances: Float64Array;
}

export type PcaOptions = TopEigenOptions;

/**
 * The top-k principal components. The centred data X [n, d] gives its covariance's eigenvectors
 * either directly (XᵀX, d x d, when n >= d) or through the Gram matrix XXᵀ (n x n, when n < d):
 * for XXᵀu = λu, Xᵀu/√λ is a unit eigenvector of XᵀX with the same eigenvalue. Whichever is smaller
 * is formed with a blocked product and its top-k eigenvectors found by orthogonal iteration.
 * Signs: each component's largest-magnitude entry is made positive (sklearn's svd_flip rule), so
 * the result does not depend on the solver's arbitrary signs.
 */
export function fitPca(x: Features, k: number, opts: PcaOptions = {}): Pca {
  checkFeatures(x, 'PCA input');
  const { rows: n, cols: d } = x;
  if (!Number.isInteger(k) || k < 1 || k > Math.min(n - 1, d)) {
    throw new FghError(`PCA to ${k} dimensions needs at least ${k + 1} rows and ${k} columns, got [${n}, ${d}]`);
  }
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j]! += x.data[i * d + j]!;
  for (let j = 0; j < d; j++) mean[j]! /= n;
  const xc = new Float64Array(n * d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) xc[i * d + j] = x.data[i * d + j]! - mean[j]!;

  const components = new Float64Array(k * d);
  let values: Float64Array;
  if (n < d) {
    const gram = gemmNT(xc, n, xc, n, d, true);
    const eig = topEigen(gram, n, k, opts);
    values = eig.values;
    // Xᵀu for each eigenvector u: rows of Uᵀ·X.
    for (let r = 0; r < k; r++) {
      const out = components.subarray(r * d, (r + 1) * d);
      for (let i = 0; i < n; i++) {
        const u = eig.vectors[r * n + i]!;
        if (u === 0) continue;
        for (let j = 0; j < d; j++) out[j]! += u * xc[i * d + j]!;
      }
      // |Xᵀu| = √λ in exact arithmetic; normalising by the computed norm keeps it a unit vector.
      let norm = 0;
      for (let j = 0; j < d; j++) norm += out[j]! * out[j]!;
      norm = Math.sqrt(norm);
      if (!(norm > 0)) throw new FghError(`PCA: component ${r + 1} has zero variance (the data have rank < ${k})`);
      for (let j = 0; j < d; j++) out[j]! /= norm;
    }
  } else {
    const xt = transpose(xc, n, d);
    const cov = gemmNT(xt, d, xt, d, n, true);
    const eig = topEigen(cov, d, k, opts);
    values = eig.values;
    components.set(eig.vectors);
  }
  for (let r = 0; r < k; r++) {
    const c = components.subarray(r * d, (r + 1) * d);
    let at = 0;
    for (let j = 1; j < d; j++) if (Math.abs(c[j]!) > Math.abs(c[at]!)) at = j;
    if (c[at]! < 0) for (let j = 0; j < d; j++) c[j] = -c[j]!;
  }
  const variances = Float64Array.from(values, (v) => Math.max(0, v) / (n - 1));
  return { dim: d, k, mean, components, variances };
}

/** (x - mean) projected on the first `k` components: row-major [rows, k]. */
export function projectPca(pca: Pca, x: Features, k = pca.k): Float64Array {
  checkFeatures(x, 'PCA input');
  if (x.cols !== pca.dim) throw new FghError(`PCA was fitted on ${pca.dim} dimensions, got ${x.cols}`);
  if (!Number.isInteger(k) || k < 1 || k > pca.k) throw new FghError(`the PCA has ${pca.k} components, asked for ${k}`);
  const d = pca.dim;
  const xc = new Float64Array(x.rows * d);
  for (let i = 0; i < x.rows; i++) for (let j = 0; j < d; j++) xc[i * d + j] = x.data[i * d + j]! - pca.mean[j]!;
  return gemmNT(xc, x.rows, pca.components.subarray(0, k * d), k, d);
}

/**
 * The "PCA of continuous features, then sign" baseline (PCAH): the features of a network trained
 * with cross entropy, projected on the database's top `bits` principal directions, one bit per
 * direction. A fitted `pca` with at least `bits` components may be passed to reuse it across code lengths.
 */
export function pcaSignCodes(query: Features, db: Features, bits: number, opts: PcaOptions & { pca?: Pca } = {}): { query: Codes; db: Codes } {
  checkSameWidth(query, db);
  checkBits(bits);
  const pca = opts.pca ?? fitPca(db, bits, opts);
  // packSigns sets a bit for v > 0; an exact 0 is -1 here, as on every other sign in fgh.
  return { query: packSigns(projectPca(pca, query, bits), query.rows, bits), db: packSigns(projectPca(pca, db, bits), db.rows, bits) };
}
