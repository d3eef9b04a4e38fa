/**
 * The small amount of dense Float64 linear algebra the unsupervised baselines need, in plain
 * TypeScript: a register-blocked A·Bᵀ (the one heavy kernel: Gram/covariance matrices and
 * subspace iteration), Gram-Schmidt, Jacobi eigen-decomposition of small symmetric matrices,
 * one-sided Jacobi SVD of small square matrices, and top-k eigenvectors of a large symmetric
 * matrix by orthogonal (subspace) iteration with a fixed iteration count and a Rayleigh-Ritz step.
 * Matrices are row-major Float64Arrays.
 */
import { Rng } from '../../util/rng.js';

/** Columns per cache block of gemmNT: 8 rows of 512 doubles stay in L1. */
const K_BLOCK = 512;

/**
 * C = A·Bᵀ, A [m, k] and B [n, k] row-major, C [m, n]. Both operands are read along rows, so every
 * inner loop is contiguous; 4 x 4 blocks of C are accumulated in registers. With `symmetric`
 * (A and B the same matrix) only the upper block triangle is computed and mirrored.
 */
export function gemmNT(a: Float64Array, m: number, b: Float64Array, n: number, k: number, symmetric = false): Float64Array {
  const c = new Float64Array(m * n);
  for (let k0 = 0; k0 < k; k0 += K_BLOCK) {
    const k1 = Math.min(k, k0 + K_BLOCK);
    for (let i0 = 0; i0 < m; i0 += 4) {
      for (let j0 = symmetric ? i0 : 0; j0 < n; j0 += 4) {
        if (i0 + 4 <= m && j0 + 4 <= n) block4x4(a, b, c, i0, j0, k0, k1, k, n);
        else blockEdge(a, b, c, i0, Math.min(m, i0 + 4), j0, Math.min(n, j0 + 4), k0, k1, k, n);
      }
    }
  }
  if (symmetric) for (let i = 0; i < m; i++) for (let j = 0; j < i; j++) c[i * n + j] = c[j * n + i]!;
  return c;
}

function block4x4(a: Float64Array, b: Float64Array, c: Float64Array, i0: number, j0: number, k0: number, k1: number, k: number, n: number): void {
  const a0 = i0 * k, a1 = a0 + k, a2 = a1 + k, a3 = a2 + k;
  const b0 = j0 * k, b1 = b0 + k, b2 = b1 + k, b3 = b2 + k;
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  for (let p = k0; p < k1; p++) {
    const x0 = a[a0 + p]!, x1 = a[a1 + p]!, x2 = a[a2 + p]!, x3 = a[a3 + p]!;
    const y0 = b[b0 + p]!, y1 = b[b1 + p]!, y2 = b[b2 + p]!, y3 = b[b3 + p]!;
    c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
    c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
    c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
    c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
  }
  let o = i0 * n + j0;
  c[o]! += c00; c[o + 1]! += c01; c[o + 2]! += c02; c[o + 3]! += c03;
  o += n;
  c[o]! += c10; c[o + 1]! += c11; c[o + 2]! += c12; c[o + 3]! += c13;
  o += n;
  c[o]! += c20; c[o + 1]! += c21; c[o + 2]! += c22; c[o + 3]! += c23;
  o += n;
  c[o]! += c30; c[o + 1]! += c31; c[o + 2]! += c32; c[o + 3]! += c33;
}

function blockEdge(a: Float64Array, b: Float64Array, c: Float64Array, i0: number, i1: number, j0: number, j1: number, k0: number, k1: number, k: number, n: number): void {
  for (let i = i0; i < i1; i++) {
    for (let j = j0; j < j1; j++) {
      let s = 0;
      for (let p = k0; p < k1; p++) s += a[i * k + p]! * b[j * k + p]!;
      c[i * n + j]! += s;
    }
  }
}

/** Aᵀ of a row-major [m, n] matrix. */
export function transpose(a: Float64Array, m: number, n: number): Float64Array {
  const t = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = a[i * n + j]!;
  return t;
}

/**
 * Orthonormalises the rows of `q` [p, m] in place by modified Gram-Schmidt, twice ("twice is
 * enough" for full working accuracy). A row that vanishes (rank deficiency) is replaced by the
 * first unit vector not in the span of the rows before it, so the result is always orthonormal.
 */
export function orthonormaliseRows(q: Float64Array, p: number, m: number): void {
  let nextUnit = 0;
  for (let v = 0; v < p; v++) {
    const row = q.subarray(v * m, (v + 1) * m);
    for (let attempt = 0; ; attempt++) {
      const before = Math.sqrt(dot(row, row));
      for (let pass = 0; pass < 2; pass++) {
        for (let u = 0; u < v; u++) {
          const other = q.subarray(u * m, (u + 1) * m);
          const d = dot(row, other);
          for (let i = 0; i < m; i++) row[i]! -= d * other[i]!;
        }
      }
      const norm = Math.sqrt(dot(row, row));
      if (norm > 1e-10 * Math.max(before, 1e-300) && norm > 1e-300) {
        for (let i = 0; i < m; i++) row[i]! /= norm;
        break;
      }
      if (attempt > m) throw new Error('orthonormaliseRows: no independent vector left');
      row.fill(0);
      row[nextUnit++ % m] = 1;
    }
  }
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

export interface SymmetricEigen {
  /** Eigenvalues, descending. */
  values: Float64Array;
  /** Eigenvectors as rows [n, n], in the order of `values`. */
  vectors: Float64Array;
}

/**
 * All eigenpairs of a small symmetric matrix by the cyclic Jacobi method (accurate to working
 * precision, including small eigenvalues; O(n³) per sweep, for n up to a few hundred).
 */
export function jacobiEigen(sym: Float64Array, n: number): SymmetricEigen {
  const a = Float64Array.from(sym);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let diag = 0;
    for (let i = 0; i < n; i++) {
      diag += a[i * n + i]! * a[i * n + i]!;
      for (let j = i + 1; j < n; j++) off += a[i * n + j]! * a[i * n + j]!;
    }
    if (off <= 1e-30 * diag || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (apq === 0) continue;
        const app = a[p * n + p]!;
        const aqq = a[q * n + q]!;
        // Skip rotations below rounding of both diagonal entries (they would change nothing).
        if (Math.abs(apq) < 1e-18 * Math.max(Math.abs(app), Math.abs(aqq)) && sweep > 3) {
          a[p * n + q] = 0;
          a[q * n + p] = 0;
          continue;
        }
        const theta = (aqq - app) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!;
          const vkq = v[k * n + q]!;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => a[y * n + y]! - a[x * n + x]! || x - y);
  const values = Float64Array.from(order, (i) => a[i * n + i]!);
  const vectors = new Float64Array(n * n);
  order.forEach((col, r) => {
    for (let k = 0; k < n; k++) vectors[r * n + k] = v[k * n + col]!;
  });
  return { values, vectors };
}

export interface Svd {
  /** Left singular vectors as columns, row-major [n, n]. */
  u: Float64Array;
  /** Singular values (in column order of u and w, not sorted). */
  s: Float64Array;
  /** Right singular vectors as columns, row-major [n, n]: A = U diag(s) Wᵀ. */
  w: Float64Array;
}

/**
 * SVD of a small square matrix by one-sided (Hestenes) Jacobi: rotations on the right make the
 * columns of A·W mutually orthogonal; their norms are the singular values. Accurate where the
 * squared-matrix route (eigenvectors of AᵀA) loses small singular values. Left vectors of zero
 * singular values are completed to an orthonormal basis.
 */
export function jacobiSvd(a: Float64Array, n: number): Svd {
  // Columns as contiguous rows: cols[j] = A[:, j].
  const cols = transpose(a, n, n);
  const w = new Float64Array(n * n); // rows of w = columns of W
  for (let i = 0; i < n; i++) w[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        let alpha = 0, beta = 0, gamma = 0;
        for (let k = 0; k < n; k++) {
          const x = cols[p * n + k]!;
          const y = cols[q * n + k]!;
          alpha += x * x;
          beta += y * y;
          gamma += x * y;
        }
        if (gamma === 0 || Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let k = 0; k < n; k++) {
          const x = cols[p * n + k]!;
          const y = cols[q * n + k]!;
          cols[p * n + k] = c * x - s * y;
          cols[q * n + k] = s * x + c * y;
          const u = w[p * n + k]!;
          const z = w[q * n + k]!;
          w[p * n + k] = c * u - s * z;
          w[q * n + k] = s * u + c * z;
        }
      }
    }
    if (!rotated) break;
  }
  const s = new Float64Array(n);
  let smax = 0;
  for (let j = 0; j < n; j++) {
    s[j] = Math.sqrt(dot(cols.subarray(j * n, (j + 1) * n), cols.subarray(j * n, (j + 1) * n)));
    smax = Math.max(smax, s[j]!);
  }
  // Left vectors: normalised columns; null directions completed by Gram-Schmidt.
  const ut = new Float64Array(n * n);
  const zero: number[] = [];
  for (let j = 0; j < n; j++) {
    if (s[j]! > 1e-14 * smax && s[j]! > 0) for (let k = 0; k < n; k++) ut[j * n + k] = cols[j * n + k]! / s[j]!;
    else zero.push(j);
  }
  if (zero.length) {
    // Put the good rows first so that Gram-Schmidt keeps them and fills in the rest.
    const good = Array.from({ length: n }, (_, j) => j).filter((j) => !zero.includes(j));
    const order = [...good, ...zero];
    const tmp = new Float64Array(n * n);
    order.forEach((j, r) => tmp.set(ut.subarray(j * n, (j + 1) * n), r * n));
    orthonormaliseRows(tmp, n, n);
    order.forEach((j, r) => ut.set(tmp.subarray(r * n, (r + 1) * n), j * n));
  }
  return { u: transpose(ut, n, n), s, w: transpose(w, n, n) };
}

export interface TopEigenOptions {
  /** Orthogonal-iteration steps (fixed, so the result is deterministic). Default 30. */
  iterations?: number;
  /** Extra vectors carried along; convergence goes as (λ[k+oversample+1] / λ[k])^iterations. Default max(k, 16). */
  oversample?: number;
  /** Seed of the random starting block. */
  seed?: number;
}

/**
 * The k largest eigenpairs of a symmetric [m, m] matrix (positive semi-definite in our use: Gram
 * and covariance matrices): orthogonal iteration on a block of p = k + oversample vectors, then a
 * Rayleigh-Ritz step (Jacobi on the p x p projection) that resolves close eigenvalues inside the
 * block. Small matrices go straight to Jacobi.
 */
export function topEigen(sym: Float64Array, m: number, k: number, opts: TopEigenOptions = {}): SymmetricEigen {
  if (!Number.isInteger(k) || k < 1 || k > m) throw new RangeError(`topEigen: k must be in 1..${m}, got ${k}`);
  const p = Math.min(m, k + (opts.oversample ?? Math.max(k, 16)));
  if (m <= 2 * p || m <= 64) {
    const all = jacobiEigen(sym, m);
    return { values: all.values.slice(0, k), vectors: all.vectors.slice(0, k * m) };
  }
  const rng = new Rng(opts.seed ?? 0x9ca1);
  let q: Float64Array = new Float64Array(p * m);
  for (let i = 0; i < q.length; i++) q[i] = rng.normal();
  orthonormaliseRows(q, p, m);
  const iterations = opts.iterations ?? 30;
  for (let it = 0; it < iterations; it++) {
    // Rows of Q·A are A·q for each block vector (A is symmetric).
    q = gemmNT(q, p, sym, m, m);
    orthonormaliseRows(q, p, m);
  }
  const aq = gemmNT(q, p, sym, m, m);
  const t = gemmNT(aq, p, q, p, m);
  // Symmetrise away rounding before Jacobi.
  for (let i = 0; i < p; i++) for (let j = i + 1; j < p; j++) t[i * p + j] = t[j * p + i] = 0.5 * (t[i * p + j]! + t[j * p + i]!);
  const small = jacobiEigen(t, p);
  const vectors = new Float64Array(k * m);
  for (let r = 0; r < k; r++) {
    const out = vectors.subarray(r * m, (r + 1) * m);
    for (let v = 0; v < p; v++) {
      const coef = small.vectors[r * p + v]!;
      if (coef === 0) continue;
      for (let i = 0; i < m; i++) out[i]! += coef * q[v * m + i]!;
    }
  }
  return { values: small.values.slice(0, k), vectors };
}
