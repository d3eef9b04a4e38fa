import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadDataset, split } from '../../src/data/datasets/index.js';
import { unpackBits, type Codes } from '../../src/retrieval/codes.js';
import { singleLabels } from '../../src/retrieval/labels.js';
import { evaluate } from '../../src/retrieval/metrics.js';
import { fitPca, itqRotation, pcaItqCodes, pcaSignCodes, pixelFeatures, projectPca, quantisationLoss, randomProjectionCodes, randomRotation, type Features } from '../../src/retrieval/baselines/index.js';
import { jacobiEigen, jacobiSvd } from '../../src/retrieval/baselines/linalg.js';
import { writeNpySync } from '../../src/util/npy.js';
import { Rng } from '../../src/util/rng.js';
import { MISSING_FASHION_MNIST, readFashionMnist, writeFashionMnist, referenceFashionMnist } from '../helpers/fashion-mnist.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';

const fashion = referenceFashionMnist();

const python = referencePython('numpy');

function tmpDir(t: { teardown: (f: () => void) => void }, prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Rows with a decaying spectrum: sum_j z_j s_j m_j with s_j = 1/(j+1) over `rank` random directions, plus noise. */
function synthetic(n: number, d: number, rank: number, seed: number): Features {
  const rng = new Rng(seed);
  const dirs = Float64Array.from({ length: rank * d }, () => rng.normal() / Math.sqrt(d));
  const data = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < rank; j++) {
      const z = (rng.normal() * 10) / (j + 1);
      for (let c = 0; c < d; c++) data[i * d + c]! += z * dirs[j * d + c]!;
    }
    for (let c = 0; c < d; c++) data[i * d + c]! += 0.01 * rng.normal() + 0.5;
  }
  return { rows: n, cols: d, data };
}

/** The first `n` Fashion-MNIST training images as raw 28 x 28 pixels in [0, 1]. */
function fashionPixels(n: number): Features {
  const { images } = readFashionMnist('train');
  const d = images.rows * images.cols;
  return { rows: n, cols: d, data: Float64Array.from(images.pixels.subarray(0, n * d), (v) => v / 255) };
}

function rowsOf(f: Features, start: number, end: number): Features {
  return { rows: end - start, cols: f.cols, data: f.data.slice(start * f.cols, end * f.cols) };
}

const f64 = (data: Float64Array, shape: number[]) => ({ dtype: 'f8' as const, shape, data });
const bits01 = (c: Codes) => ({ dtype: 'u1' as const, shape: [c.count, c.bits], data: unpackBits(c) });

/**
 * numpy's side: PCA by eigh of the sample covariance (a different route from ours whenever we use
 * the Gram matrix), the same sign rule (largest-magnitude entry positive), ITQ.m's loop with
 * numpy.linalg.svd, and the sign of the PCA projection.
 */
const REFERENCE = String.raw`
import json, sys, numpy as np
cfg = json.load(sys.stdin)
d = cfg['dir']
L = lambda name: np.load(f"{d}/{name}.npy")
out = {}
for case in cfg['cases']:
    name, k, iters = case['name'], case['k'], case['iterations']
    X, Q = L(name + '-db'), L(name + '-query')
    W, var, mean = L(name + '-components'), L(name + '-variances'), L(name + '-mean')
    mu = X.mean(0); Xc = X - mu
    w, V = np.linalg.eigh(Xc.T @ Xc / (len(X) - 1))
    order = np.argsort(w)[::-1][:k]
    w, V = w[order], V[:, order].T
    V *= np.sign(V[np.arange(k), np.argmax(np.abs(V), axis=1)])[:, None]
    cos = np.linalg.svd(W @ V.T, compute_uv=False)
    r = dict(
        mean=float(np.max(np.abs(mean - mu))),
        variances=float(np.max(np.abs(var - w)) / w[0]),
        min_cos=float(cos.min()),
        components=float(np.max(np.abs(W - V))),
    )
    def itq(Vp, R, iters):
        for _ in range(iters):
            B = np.where(Vp @ R >= 0, 1.0, -1.0)
            UB, s, UAt = np.linalg.svd(B.T @ Vp)
            R = UAt.T @ UB.T
        return R
    loss = lambda Vp, R: float(((np.where(Vp @ R >= 0, 1.0, -1.0) - Vp @ R) ** 2).sum())
    R0, Vours, Rours = L(name + '-r0'), L(name + '-v'), L(name + '-r')
    R = itq(Vours, R0, iters)
    Vnp = Xc @ V[:k].T
    r.update(
        loss_init=loss(Vours, R0),
        loss=loss(Vours, R),
        rotation=float(np.max(np.abs(R - Rours))),
        loss_full=loss(Vnp, itq(Vnp, R0, iters)),
        pcah_mismatch=int((((Q - mu) @ V[:k].T > 0).astype(np.uint8) != L(name + '-pcah')).sum()),
        pcah_bits=int(len(Q) * k),
    )
    out[name] = r
print(json.dumps(out))
`;

interface Reference {
  mean: number;
  variances: number;
  min_cos: number;
  components: number;
  loss_init: number;
  loss: number;
  rotation: number;
  loss_full: number;
  pcah_mismatch: number;
  pcah_bits: number;
}

(python ? test : test.skip)(`PCA, ITQ and PCA-sign codes agree with numpy (eigh of the covariance, ITQ.m with numpy.linalg.svd)${python ? '' : ` (${missingPythonMessage('numpy')})`}`, (t) => {
  if (!python) return;
  // Gram-matrix route (rows < dims) and covariance route (rows > dims), both by orthogonal iteration.
  const cases: Array<{ name: string; x: Features; db: number; k: number }> = [
    { name: 'gram', x: synthetic(500, 600, 40, 1), db: 400, k: 16 },
    { name: 'covariance', x: synthetic(900, 300, 60, 2), db: 800, k: 24 },
  ];
  if (fashion) cases.push({ name: 'fashion-mnist', x: fashionPixels(600), db: 500, k: 32 });
  else t.log(`the Fashion-MNIST case is ${MISSING_FASHION_MNIST}`);
  const dir = tmpDir(t, 'fgh-baselines-');
  const iterations = 50;
  const ours = new Map<string, { loss: number }>();
  for (const c of cases) {
    const db = rowsOf(c.x, 0, c.db);
    const query = rowsOf(c.x, c.db, c.x.rows);
    const pca = fitPca(db, c.k);
    const v = projectPca(pca, db);
    const r0 = randomRotation(c.k, 3);
    const { rotation, loss } = itqRotation(v, db.rows, c.k, { init: r0, iterations });
    ours.set(c.name, { loss });
    const save = (what: string, arr: Parameters<typeof writeNpySync>[1]) => writeNpySync(path.join(dir, `${c.name}-${what}.npy`), arr);
    save('db', f64(db.data as Float64Array, [db.rows, db.cols]));
    save('query', f64(query.data as Float64Array, [query.rows, query.cols]));
    save('components', f64(pca.components, [c.k, pca.dim]));
    save('variances', f64(pca.variances, [c.k]));
    save('mean', f64(pca.mean, [pca.dim]));
    save('v', f64(v, [db.rows, c.k]));
    save('r0', f64(r0, [c.k, c.k]));
    save('r', f64(rotation, [c.k, c.k]));
    save('pcah', bits01(pcaSignCodes(query, db, c.k, { pca }).query));
    t.is(quantisationLoss(v, db.rows, c.k, rotation), loss);
  }
  const ref = JSON.parse(runPython(python, REFERENCE, [], JSON.stringify({ dir, cases: cases.map((c) => ({ name: c.name, k: c.k, iterations })) }))) as Record<string, Reference>;
  for (const c of cases) {
    const r = ref[c.name]!;
    const mine = ours.get(c.name)!;
    t.log(`${c.name}: variances ${r.variances.toExponential(1)}, min cos ${r.min_cos.toFixed(14)}, components ${r.components.toExponential(1)}, ITQ loss ${mine.loss.toFixed(6)} vs numpy ${r.loss.toFixed(6)} (init ${r.loss_init.toFixed(3)}, numpy's own PCA ${r.loss_full.toFixed(6)}), rotation ${r.rotation.toExponential(1)}, PCA-sign bits differing ${r.pcah_mismatch}/${r.pcah_bits}`);
    t.true(r.mean < 1e-12, `${c.name}: mean`);
    t.true(r.variances < 1e-10, `${c.name}: variances differ by ${r.variances} of the largest`);
    t.true(r.min_cos > 1 - 1e-10, `${c.name}: the subspaces differ (smallest principal cosine ${r.min_cos})`);
    t.true(r.components < 1e-9, `${c.name}: components differ by ${r.components}`);
    t.true(mine.loss < r.loss_init * 0.99, `${c.name}: ITQ did not lower the loss`);
    t.true(mine.loss <= r.loss * (1 + 1e-9), `${c.name}: our ITQ loss ${mine.loss} is worse than numpy's ${r.loss}`);
    t.true(r.rotation < 1e-10, `${c.name}: rotations differ by ${r.rotation}`);
    t.true(Math.abs(mine.loss - r.loss_full) <= 1e-6 * r.loss_full, `${c.name}: numpy's own PCA then ITQ reaches ${r.loss_full}, ours ${mine.loss}`);
    t.true(r.pcah_mismatch <= r.pcah_bits * 1e-4, `${c.name}: ${r.pcah_mismatch} PCA-sign bits differ`);
  }
});

(python ? test : test.skip)(`Jacobi eigen-decomposition and SVD agree with numpy, rank-deficient input included${python ? '' : ` (${missingPythonMessage('numpy')})`}`, (t) => {
  if (!python) return;
  const rng = new Rng(5);
  const n = 12;
  const full = Float64Array.from({ length: n * n }, () => rng.normal());
  // Rank 7: the product of [n, 7] and [7, n] Gaussian matrices.
  const a = Float64Array.from({ length: n * 7 }, () => rng.normal());
  const b = Float64Array.from({ length: 7 * n }, () => rng.normal());
  const low = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let p = 0; p < 7; p++) low[i * n + j]! += a[i * 7 + p]! * b[p * n + j]!;
  const sym = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) sym[i * n + j] = full[i * n + j]! + full[j * n + i]!;
  const payload = { n, full: Array.from(full), low: Array.from(low), sym: Array.from(sym) };
  const ref = JSON.parse(
    runPython(
      python,
      String.raw`
import json, sys, numpy as np
p = json.load(sys.stdin); n = p['n']
m = lambda k: np.array(p[k]).reshape(n, n)
print(json.dumps(dict(full=np.linalg.svd(m('full'), compute_uv=False).tolist(), low=np.linalg.svd(m('low'), compute_uv=False).tolist(), sym=np.linalg.eigvalsh(m('sym'))[::-1].tolist())))
`,
      [],
      JSON.stringify(payload),
    ),
  ) as { full: number[]; low: number[]; sym: number[] };
  for (const [name, mat] of [['full', full], ['low', low]] as const) {
    const { u, s, w } = jacobiSvd(mat, n);
    const sorted = Array.from(s).sort((x, y) => y - x);
    sorted.forEach((v, i) => t.true(Math.abs(v - ref[name][i]!) < 1e-10 * ref[name][0]!, `${name}: singular value ${i}: ${v} vs ${ref[name][i]}`));
    // U and W orthogonal, and U diag(s) Wᵀ = A.
    let orth = 0;
    let recon = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let uu = 0, ww = 0, r = 0;
        for (let k = 0; k < n; k++) {
          uu += u[k * n + i]! * u[k * n + j]!;
          ww += w[k * n + i]! * w[k * n + j]!;
          r += u[i * n + k]! * s[k]! * w[j * n + k]!;
        }
        orth = Math.max(orth, Math.abs(uu - (i === j ? 1 : 0)), Math.abs(ww - (i === j ? 1 : 0)));
        recon = Math.max(recon, Math.abs(r - mat[i * n + j]!));
      }
    }
    t.true(orth < 1e-12, `${name}: U or W not orthogonal (${orth})`);
    t.true(recon < 1e-12 * ref[name][0]!, `${name}: reconstruction error ${recon}`);
  }
  const eig = jacobiEigen(sym, n);
  eig.values.forEach((v, i) => t.true(Math.abs(v - ref.sym[i]!) < 1e-12 * Math.abs(ref.sym[0]!), `eigenvalue ${i}: ${v} vs ${ref.sym[i]}`));
});

(fashion ? test : test.skip)(`LSH and PCA-ITQ on Fashion-MNIST pixels rank far above chance, PCA-ITQ above LSH${fashion ? '' : ` (${MISSING_FASHION_MNIST})`}`, async (t) => {
  const dir = tmpDir(t, 'fgh-fm-baselines-');
  await writeFashionMnist(dir, { train: 400, query: 100, seed: 3 });
  const d = loadDataset('folder', { root: dir });
  const db = split(d, 'train');
  const query = split(d, 'test');
  const [fq, fdb] = [await pixelFeatures(query), await pixelFeatures(db)];
  const ql = singleLabels(query.map((s) => s.labels[0]!), 10);
  const dl = singleLabels(db.map((s) => s.labels[0]!), 10);
  // Chance: a random ranking's AP is about the share of relevant items (10 balanced classes: 0.1).
  let chance = 0;
  for (const s of query) chance += db.filter((x) => x.labels[0] === s.labels[0]).length / db.length / query.length;
  const lsh = (await evaluate(...pair(randomProjectionCodes(fq, fdb, 32, 0)), {})).map;
  const itq = (await evaluate(...pair(pcaItqCodes(fq, fdb, 32, { seed: 0 })), {})).map;
  t.log(`32 bits, 400 database / 100 query images: LSH mAP ${lsh.toFixed(4)}, PCA-ITQ ${itq.toFixed(4)}, chance ${chance.toFixed(4)}`);
  t.true(lsh > 2 * chance, `LSH mAP ${lsh}`);
  t.true(itq > 2 * chance, `PCA-ITQ mAP ${itq}`);
  t.true(itq > lsh, `PCA-ITQ ${itq} not above LSH ${lsh}`);

  function pair(c: { query: Codes; db: Codes }): [Codes, typeof ql, Codes, typeof dl] {
    return [c.query, ql, c.db, dl];
  }
});
