import { FghError } from '../../util/errors.js';
import { Rng } from '../../util/rng.js';
import { checkBits, packSigns, type Codes } from '../codes.js';
import { checkSameWidth, signs, type Features } from './features.js';
import { jacobiSvd, orthonormaliseRows } from './linalg.js';
import { fitPca, projectPca, type Pca, type PcaOptions } from './pca.js';

/**
 * Iterative quantisation (Gong & Lazebnik, CVPR 2011; their ITQ.m): after PCA to `bits`
 * dimensions, find the rotation R that minimises the quantisation loss ||B - VR||² by
 * alternating B = sign(VR) and R = the orthogonal Procrustes solution for B: with
 * BᵀV = U S Wᵀ, R = W Uᵀ.
 */

/** A random orthogonal k x k matrix (Gram-Schmidt of a Gaussian one; ITQ.m takes the SVD's U, equally random). */
export function randomRotation(k: number, seed: number): Float64Array {
  const rng = new Rng(seed);
  const r = new Float64Array(k * k);
  for (let i = 0; i < r.length; i++) r[i] = rng.normal();
  orthonormaliseRows(r, k, k);
  return r;
}

/** V·R for V [n, k] and R [k, k], row-major. */
function rotate(v: Float64Array, n: number, r: Float64Array, k: number): Float64Array {
  const out = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    const o = i * k;
    for (let a = 0; a < k; a++) {
      const x = v[o + a]!;
      if (x === 0) continue;
      const ra = a * k;
      for (let b = 0; b < k; b++) out[o + b]! += x * r[ra + b]!;
    }
  }
  return out;
}

/** ||sign(VR) - VR||², the loss ITQ minimises. */
export function quantisationLoss(v: Float64Array, n: number, k: number, r: Float64Array): number {
  const z = rotate(v, n, r, k);
  let loss = 0;
  for (let i = 0; i < z.length; i++) {
    const e = (z[i]! >= 0 ? 1 : -1) - z[i]!;
    loss += e * e;
  }
  return loss;
}

export interface ItqOptions {
  /** Alternations of the two steps (ITQ.m is run with 50). */
  iterations?: number;
  /** Seed of the random initial rotation. */
  seed?: number;
  /** The initial rotation [k, k], instead of a random one (tests give numpy the same). */
  init?: Float64Array;
}

/** The ITQ rotation of projected data V [n, k], and its final quantisation loss. */
export function itqRotation(v: Float64Array, n: number, k: number, opts: ItqOptions = {}): { rotation: Float64Array; loss: number } {
  if (v.length !== n * k) throw new FghError(`ITQ: ${v.length} values for [${n}, ${k}]`);
  let r = opts.init ? Float64Array.from(opts.init) : randomRotation(k, opts.seed ?? 0);
  if (r.length !== k * k) throw new FghError(`ITQ: the initial rotation must be ${k} x ${k}`);
  const iterations = opts.iterations ?? 50;
  for (let it = 0; it < iterations; it++) {
    const b = signs(rotate(v, n, r, k));
    // C = BᵀV [k, k].
    const c = new Float64Array(k * k);
    for (let i = 0; i < n; i++) {
      const o = i * k;
      for (let a = 0; a < k; a++) {
        const s = b[o + a]!;
        const ca = a * k;
        for (let j = 0; j < k; j++) c[ca + j]! += s * v[o + j]!;
      }
    }
    const { u, w } = jacobiSvd(c, k);
    // R = W Uᵀ.
    const next = new Float64Array(k * k);
    for (let i = 0; i < k; i++) {
      for (let j = 0; j < k; j++) {
        let s = 0;
        for (let m = 0; m < k; m++) s += w[i * k + m]! * u[j * k + m]!;
        next[i * k + j] = s;
      }
    }
    r = next;
  }
  return { rotation: r, loss: quantisationLoss(v, n, k, r) };
}

export interface PcaItqOptions extends ItqOptions {
  /** A PCA of the database with at least `bits` components, to share across code lengths. */
  pca?: Pca;
  /** How to fit the PCA when `pca` is not given. */
  pcaOptions?: PcaOptions;
}

/**
 * PCA-ITQ codes: zero-centre on the database, PCA to `bits` dimensions, ITQ rotation learned on
 * the database, bit = 1 where the rotated projection is >= 0 (ITQ.m's rule).
 */
export function pcaItqCodes(query: Features, db: Features, bits: number, opts: PcaItqOptions = {}): { query: Codes; db: Codes; loss: number } {
  checkSameWidth(query, db);
  checkBits(bits);
  const pca = opts.pca ?? fitPca(db, bits, opts.pcaOptions);
  const vDb = projectPca(pca, db, bits);
  const { rotation, loss } = itqRotation(vDb, db.rows, bits, opts);
  const code = (v: Float64Array, n: number): Codes => packSigns(signs(rotate(v, n, rotation, bits)), n, bits);
  return { query: code(projectPca(pca, query, bits), query.rows), db: code(vDb, db.rows), loss };
}
