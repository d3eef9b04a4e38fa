import test from 'ava';
import { tf } from '../../src/backend/tf.js';
import type { Tensor2D } from '../../src/backend/tf.js';
import { selectBackend } from '../../src/backend/select.js';
import { adshLoss, similarityRows, softSimilarityRatio, solveDcc } from '../../src/train/adsh.js';
import { Rng } from '../../src/util/rng.js';
import { maxAbsDiff, relativeError } from '../helpers/tensors.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';

/** SEMICON_train.py's S construction and solve_dcc, and ADSH_Loss, restated in PyTorch on random inputs. */
const REFERENCE = String.raw`
import sys, json, torch
d = json.load(sys.stdin)
N, ns, bits, C, gamma = d['N'], d['ns'], d['bits'], d['classes'], d['gamma']
oh = lambda ys: torch.zeros(len(ys), C).scatter(1, torch.tensor(ys).view(-1, 1), 1)
db_t, tr_t = oh(d['dbLabels']), oh(d['sampleLabels'])
S = (tr_t @ db_t.t() > 0).float()
S = torch.where(S == 1, torch.full_like(S, 1), torch.full_like(S, -1))
r = S.sum() / (1 - S).sum()
S = S * (1 + r) - r
U = torch.tensor(d['U'], dtype=torch.float32).reshape(ns, bits)
B = torch.tensor(d['B'], dtype=torch.float32).reshape(N, bits)
idx = torch.tensor(d['sampleIndex'])
# ADSH_Loss on the first 4 sampled images
F = U[:4].clone().requires_grad_()
hash_loss = ((bits * S[:4] - F @ B.t()) ** 2).sum() / (F.shape[0] * B.shape[0]) / bits * 12
quan = ((F - B[idx[:4], :]) ** 2).sum() / (F.shape[0] * B.shape[0]) * gamma / bits * 12
(hash_loss + quan).backward()
expand_U = torch.zeros(B.shape); expand_U[idx, :] = U
Q = (bits * S).t() @ U + gamma * expand_U
Bn = B.clone()
for bit in range(bits):
    q = Q[:, bit]; u = U[:, bit]
    B_prime = torch.cat((Bn[:, :bit], Bn[:, bit+1:]), dim=1)
    U_prime = torch.cat((U[:, :bit], U[:, bit+1:]), dim=1)
    Bn[:, bit] = (q.t() - B_prime @ U_prime.t() @ u.t()).sign()
print(json.dumps({'r': r.item(), 'S4': S[:4].reshape(-1).tolist(), 'hash': hash_loss.item(), 'quant': quan.item(), 'grad': F.grad.reshape(-1).tolist(), 'B': Bn.reshape(-1).tolist()}))
`;

const python = referencePython('torch');

test.before(async () => {
  await selectBackend();
});

(python ? test.serial : test.skip)('ADSH loss and the bitwise DCC update of B match SEMICON_train.py', (t) => {
  if (!python) return t.log(missingPythonMessage('torch'));
  const rng = new Rng(11);
  const N = 300;
  const ns = 60;
  const bits = 24;
  const classes = 7;
  const gamma = 200;
  const dbLabels = Array.from({ length: N }, () => rng.int(classes));
  const sampleIndex = rng.sample(N, ns);
  const sampleLabels = sampleIndex.map((i) => dbLabels[i]!);
  const U = Array.from({ length: ns * bits }, () => Math.tanh(rng.normal()));
  const B = Array.from({ length: N * bits }, () => rng.normal());
  const ref = JSON.parse(runPython(python, REFERENCE, [], JSON.stringify({ N, ns, bits, classes, gamma, dbLabels, sampleIndex, sampleLabels, U, B }))) as {
    r: number; S4: number[]; hash: number; quant: number; grad: number[]; B: number[];
  };
  const r = softSimilarityRatio(sampleLabels, dbLabels, classes);
  t.true(Math.abs(r - ref.r) < 1e-6, `r ${r} vs ${ref.r}`);
  const rows = similarityRows(sampleLabels.slice(0, 4), dbLabels, r);
  t.true(maxAbsDiff(rows, ref.S4) < 1e-5);

  const f = tf.tensor2d(U.slice(0, 4 * bits), [4, bits]);
  const bT = tf.tensor2d(B, [N, bits]);
  const s = tf.tensor2d(rows, [4, N]);
  const omega = tf.tensor2d(sampleIndex.slice(0, 4).flatMap((i) => B.slice(i * bits, (i + 1) * bits)), [4, bits]);
  let parts = { hash: 0, quant: 0 };
  const g = tf.valueAndGrad((x: tf.Tensor) => {
    const l = adshLoss(x as Tensor2D, bT, s, omega, gamma);
    parts = { hash: l.hash.dataSync()[0]!, quant: l.quant.dataSync()[0]! };
    return l.loss;
  })(f);
  t.log(`hash ${parts.hash} vs ${ref.hash}, quant ${parts.quant} vs ${ref.quant}, gradient rel err ${relativeError(g.grad.dataSync(), ref.grad).toExponential(2)}`);
  t.true(Math.abs(parts.hash - ref.hash) / ref.hash < 1e-5);
  t.true(Math.abs(parts.quant - ref.quant) / ref.quant < 1e-5);
  t.true(relativeError(g.grad.dataSync(), ref.grad) < 1e-5);

  const updated = solveDcc(Float32Array.from(B), Float32Array.from(U), sampleIndex, sampleLabels, dbLabels, classes, bits, gamma);
  t.is(updated.length, ref.B.length, 'B has the reference shape');
  let differ = 0;
  for (let i = 0; i < updated.length; i++) if (updated[i] !== ref.B[i]) differ++;
  t.log(`DCC: ${differ} of ${updated.length} entries of B differ from torch's float32 computation`);
  t.true(updated.every((v) => v === 1 || v === -1));
  t.is(differ, 0);
  tf.dispose([f, bT, s, omega, g.value, g.grad]);
});
