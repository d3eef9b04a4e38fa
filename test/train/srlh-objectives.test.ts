import test from 'ava';
import { tf } from '../../src/backend/tf.js';
import type { Tensor2D, Tensor3D } from '../../src/backend/tf.js';
import { selectBackend } from '../../src/backend/select.js';
import { hashLoss, hashTargets, softSimilarity, tripletLoss, updateCentres } from '../../src/train/srlh-objectives.js';
import { Rng } from '../../src/util/rng.js';
import { maxAbs, maxAbsDiff, relativeError } from '../helpers/tensors.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';

/**
 * Each objective against the reference's own formulas (Yajie-Zhang/sRLH utils/hash_loss.py,
 * triplet_loss.py, tools.py get_hash_targets, cub_train.py's centre update and Gram-Schmidt),
 * restated in PyTorch/numpy in the test run on random inputs.
 */
const REFERENCE = String.raw`
import sys, json, math, itertools, numpy as np, torch
import torch.nn.functional as Fc
d = json.load(sys.stdin)
out = {}
# Hash_Loss.forward
F = torch.tensor(d['F'], dtype=torch.float32).reshape(d['n'], d['bits']).requires_grad_()
C = torch.tensor(d['C'], dtype=torch.float32).reshape(d['classes'], d['bits'])
S = torch.tensor(d['S'], dtype=torch.float32).reshape(d['n'], d['classes'])
hash_loss = ((d['bits'] * S - F @ C.t()) ** 2).sum()
quant = ((torch.abs(F) - torch.ones(F.shape)) ** 2).sum()
loss = (hash_loss + d['gamma'] * quant) / (F.shape[0] * C.shape[0])
loss.backward()
out['hash'] = loss.item(); out['hash_grad'] = F.grad.reshape(-1).tolist()
# soft similarity as cub_train.py builds it
labels = torch.tensor(d['labels'])
oh = torch.zeros(d['n'], d['classes']).scatter(1, labels.view(-1, 1), 1)
S0 = oh @ torch.eye(d['classes']).t()
S0[S0 > 0] = 1; S0[S0 < 1] = -1
r = S0.sum() / (1 - S0).sum()
out['S'] = (S0 * (1 + r) - r).reshape(-1).tolist()
# construct_triplets + TripleLoss
V = torch.tensor(d['V'], dtype=torch.float32).reshape(d['n'], d['parts'], d['dim']).requires_grad_()
lab = np.array(d['labels'])
trip = []
for c in set(lab.tolist()):
    idx = np.where(lab == c)[0]
    if len(idx) < 2: continue
    neg = np.where(lab != c)[0]
    for a, p in itertools.combinations(idx, 2):
        for q in neg: trip.append([a, p, q])
t = torch.LongTensor(np.array(trip))
a, p, q = Fc.normalize(V[t[:, 0]], dim=2), Fc.normalize(V[t[:, 1]], dim=2), Fc.normalize(V[t[:, 2]], dim=2)
tl = torch.max((a * q).sum(2) - (a * p).sum(2) + d['margin'], torch.tensor(0.0)).mean()
tl.backward()
out['triplet'] = tl.item(); out['triplet_grad'] = V.grad.reshape(-1).tolist(); out['triplets'] = len(trip)
# centre update (cub_train.py), with its gram_schmidt
def gram_schmidt(A):
    Q = np.zeros_like(A.T); cnt = 0
    for a in A:
        u = np.copy(a)
        if cnt > 0:
            for i in range(cnt - 1, cnt):
                u -= np.dot(np.dot(Q[:, i].T, a), Q[:, i])
        Q[:, cnt] = u / np.linalg.norm(u); cnt += 1
    return Q.T
B = torch.tensor(d['B'], dtype=torch.float32).reshape(d['n'], d['bits'])
Cn = oh.t() @ B
Cn = Fc.normalize(Cn / torch.sum(oh.t(), dim=1, keepdim=True), dim=1)
out['centres'] = ((d['alpha']) * Cn + (1 - d['alpha']) * torch.tensor(gram_schmidt(Cn.numpy()))).sign().reshape(-1).tolist()
# get_hash_targets without random rows (classes <= 2K): Hadamard rows, truncated for non-powers of two
def hadamard(n):
    H = np.array([[1]])
    for _ in range(int(math.log(n, 2))): H = np.vstack((np.hstack((H, H)), np.hstack((H, -H))))
    return H
res = {}
for bits, classes in d['targets']:
    k = bits if 2 ** int(math.log(bits, 2)) == bits else 2 ** (int(math.log(bits, 2)) + 1)
    H = hadamard(k); H2 = np.concatenate((H, -H), 0)
    res['%d,%d' % (bits, classes)] = H2[:classes, :bits].reshape(-1).tolist()
out['targets'] = res
print(json.dumps(out))
`;

const python = referencePython('torch', 'numpy');

test.before(async () => {
  await selectBackend();
});

(python ? test.serial : test.skip)('hash loss, soft similarity, triplet loss, centre update and hash targets match the reference formulas', (t) => {
  if (!python) return t.log(missingPythonMessage('torch', 'numpy'));
  const rng = new Rng(3);
  const n = 12;
  const bits = 16;
  const classes = 5;
  const parts = 3;
  const dim = 8;
  const labels = Array.from({ length: n }, (_, i) => (i * 7) % classes);
  const F = Array.from({ length: n * bits }, () => Math.tanh(rng.normal()));
  const C = hashTargets(classes, bits, rng);
  const S = softSimilarity(labels, classes);
  const V = Array.from({ length: n * parts * dim }, () => rng.normal());
  const B = Array.from({ length: n * bits }, () => (rng.bool() ? 1 : -1) * rng.uniform(0.1, 1));
  const targets: Array<[number, number]> = [[16, 5], [32, 64], [12, 20], [48, 90], [24, 7]];
  const input = { n, bits, classes, parts, dim, labels, F, C: Array.from(C), S: Array.from(S), gamma: 0.1, V, margin: 0.5, B, alpha: 0.9, targets };
  const ref = JSON.parse(runPython(python, REFERENCE, [], JSON.stringify(input))) as {
    hash: number; hash_grad: number[]; S: number[]; triplet: number; triplet_grad: number[]; triplets: number; centres: number[]; targets: Record<string, number[]>;
  };

  // Soft similarities are 1 (same class) and -#similar/#dissimilar pairs (-1/4 here): max |S| 1; one run: equal.
  t.true(relativeError(S, ref.S) < 1e-6, `soft similarity: max abs diff ${maxAbsDiff(S, ref.S)} at max |S| ${maxAbs(ref.S)}`);

  const f = tf.tensor2d(F, [n, bits]);
  const c = tf.tensor2d(C, [classes, bits]);
  const s = tf.tensor2d(S, [n, classes]);
  const h = tf.valueAndGrad((x: tf.Tensor) => hashLoss(x as Tensor2D, c, s, 0.1))(f);
  const hv = h.value.dataSync()[0]!;
  const hashGradErr = relativeError(h.grad.dataSync(), ref.hash_grad);
  t.log(`hash loss ${hv} vs ${ref.hash}; gradient rel err ${hashGradErr.toExponential(2)} at max |grad| ${maxAbs(ref.hash_grad).toFixed(3)}`);
  // The loss is a sum of squares (71 here), its gradient relative to its largest entry; one run:
  // the loss equal, the gradient 1.1e-7.
  t.true(Math.abs(hv - ref.hash) / ref.hash < 1e-6, `hash loss ${hv} vs ${ref.hash}`);
  t.true(hashGradErr < 1e-6, `hash loss gradient: relative error ${hashGradErr}`);

  const v = tf.tensor3d(V, [n, parts, dim]);
  const tr = tf.valueAndGrad((x: tf.Tensor) => tripletLoss(x as Tensor3D, labels, 0.5))(v);
  const tv = tr.value.dataSync()[0]!;
  const tripletGradErr = relativeError(tr.grad.dataSync(), ref.triplet_grad);
  t.log(`triplet loss ${tv} vs ${ref.triplet} over ${ref.triplets} triplets; gradient rel err ${tripletGradErr.toExponential(2)} at max |grad| ${maxAbs(ref.triplet_grad).toFixed(3)}`);
  t.true(ref.triplets > 0);
  // A mean of hinges (0.53 here), relative to it; the gradient relative to its largest entry. One
  // run: the loss equal, the gradient 1.4e-7.
  t.true(Math.abs(tv - ref.triplet) / ref.triplet < 1e-6, `triplet loss ${tv} vs ${ref.triplet}`);
  t.true(tripletGradErr < 1e-6, `triplet loss gradient: relative error ${tripletGradErr}`);

  const updated = updateCentres(C, Float32Array.from(B), labels, classes, bits, 0.9);
  t.deepEqual(Array.from(updated), ref.centres, 'centre update');

  for (const [b, k] of targets) {
    const ours = hashTargets(k, b, new Rng(1));
    t.deepEqual(Array.from(ours), ref.targets[`${b},${k}`], `hash targets ${b} bits, ${k} classes`);
  }
  tf.dispose([f, c, s, h.value, h.grad, v, tr.value, tr.grad]);
});

test('hash targets beyond 2K classes: random rows with K/2 minus ones, deterministic per seed', (t) => {
  const bits = 16;
  const classes = 40; // 2K = 32 Hadamard rows, then 8 random rows
  const a = hashTargets(classes, bits, new Rng(5));
  const b = hashTargets(classes, bits, new Rng(5));
  t.deepEqual(a, b);
  for (let c = 32; c < classes; c++) {
    const row = a.subarray(c * bits, (c + 1) * bits);
    t.is(row.filter((x) => x === -1).length, bits / 2);
    t.is(row.filter((x) => x === 1).length, bits / 2);
  }
});

test('triplet loss is 0 without a same-class pair, and still has a (zero) gradient', (t) => {
  const v = tf.randomNormal([3, 2, 4]);
  const r = tf.valueAndGrad((x: tf.Tensor) => tripletLoss(x as Tensor3D, [0, 1, 2], 0.5))(v);
  t.is(r.value.dataSync()[0], 0);
  t.is(tf.max(tf.abs(r.grad)).dataSync()[0], 0);
  tf.dispose([v, r.value, r.grad]);
});
