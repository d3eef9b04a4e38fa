import test from 'ava';
import { allocCodes, type Codes } from '../../src/retrieval/codes.js';
import { multiHotLabels, singleLabels, toMultiHot, type Labels } from '../../src/retrieval/labels.js';
import { evaluate, pythonSliceLength, type EvalOptions } from '../../src/retrieval/metrics.js';
import { Rng } from '../../src/util/rng.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';

interface Case {
  name: string;
  bits: number;
  q: Codes;
  db: Codes;
  ql: Labels;
  dl: Labels;
}

function randomCodes(rng: Rng, bits: number, n: number, pool = 0): Codes {
  const c = allocCodes(bits, n);
  const src = pool ? randomCodes(rng, bits, pool) : null;
  for (let i = 0; i < n; i++) {
    if (src) {
      const k = rng.int(pool);
      c.data.set(src.data.subarray(k * c.stride, (k + 1) * c.stride), i * c.stride);
    } else {
      for (let b = 0; b < bits; b++) if (rng.bool()) c.data[i * c.stride + (b >> 3)]! |= 0x80 >> (b & 7);
    }
  }
  return c;
}

function bit(c: Codes, i: number, b: number): number {
  return (c.data[i * c.stride + (b >> 3)]! >> (7 - (b & 7))) & 1;
}

/** Class sets per item, from either label layout, the slow way. */
function classSets(l: Labels): number[][] {
  const m = toMultiHot(l);
  return Array.from({ length: l.count }, (_, i) => Array.from({ length: l.numClasses }, (_, c) => c).filter((c) => m[i * l.numClasses + c] === 1));
}

interface Brute {
  map: number;
  ap: number[];
  precision: number[];
  recall: number[];
  prPrecision: Array<number | null>;
  prRecall: number[];
}

/** Independent float64 loops: distances bit by bit, stable sort, AP as the references define it. */
function brute(c: Case, cutoff: number, at: number[]): Brute {
  const qs = classSets(c.ql);
  const ds = classSets(c.dl);
  const n = c.db.count;
  const ap: number[] = [];
  const precision = at.map(() => 0);
  const recall = at.map(() => 0);
  const prP = new Array<number>(c.bits + 1).fill(0);
  const prPn = new Array<number>(c.bits + 1).fill(0);
  const prR = new Array<number>(c.bits + 1).fill(0);
  let prRn = 0;
  for (let i = 0; i < c.q.count; i++) {
    const items = Array.from({ length: n }, (_, j) => {
      let d = 0;
      for (let b = 0; b < c.bits; b++) d += bit(c.q, i, b) ^ bit(c.db, j, b);
      return { j, d, rel: ds[j]!.some((x) => qs[i]!.includes(x)) };
    });
    const ranked = [...items].sort((a, b) => a.d - b.d);
    const top = ranked.slice(0, cutoff);
    let hits = 0;
    let s = 0;
    top.forEach((it, p) => {
      if (it.rel) {
        hits++;
        s += hits / (p + 1);
      }
    });
    ap.push(hits ? s / hits : 0);
    const total = items.filter((it) => it.rel).length;
    at.forEach((k, e) => {
      const h = ranked.slice(0, k).filter((it) => it.rel).length;
      precision[e]! += h / Math.min(k, n);
      recall[e]! += total ? h / total : 0;
    });
    if (total > 0) {
      prRn++;
      for (let r = 0; r <= c.bits; r++) {
        const ret = items.filter((it) => it.d <= r);
        const relRet = ret.filter((it) => it.rel).length;
        if (ret.length) {
          prP[r]! += relRet / ret.length;
          prPn[r]!++;
        }
        prR[r]! += relRet / total;
      }
    }
  }
  const nq = c.q.count;
  return {
    map: ap.reduce((a, b) => a + b, 0) / nq,
    ap,
    precision: precision.map((v) => v / nq),
    recall: recall.map((v) => v / nq),
    prPrecision: prP.map((v, r) => (prPn[r] ? v / prPn[r]! : null)),
    prRecall: prR.map((v) => v / prRn),
  };
}

function makeCases(): Case[] {
  const rng = new Rng(21);
  const cases: Case[] = [];
  {
    // Single label, 12 bits: some query classes absent from the database, one unlabelled query.
    const n = 400;
    const nq = 60;
    const db = randomCodes(rng, 12, n);
    const q = randomCodes(rng, 12, nq);
    const dl = singleLabels(Array.from({ length: n }, () => rng.int(12)), 15);
    const ql = singleLabels(Array.from({ length: nq }, (_, i) => (i === 0 ? -1 : rng.int(15))), 15);
    cases.push({ name: 'single-label 12 bits', bits: 12, q, db, ql, dl });
  }
  {
    // Multi-label, 48 bits, codes from a small pool (ties everywhere), a few items without labels.
    const n = 500;
    const nq = 40;
    const classes = 20;
    const hot = (m: number) => Array.from({ length: m * classes }, (_, k) => (k % classes === 0 && rng.bool(0.05) ? 0 : rng.bool(0.08) ? 1 : 0));
    cases.push({
      name: 'multi-label 48 bits with ties',
      bits: 48,
      q: randomCodes(rng, 48, nq, 30),
      db: randomCodes(rng, 48, n, 30),
      ql: multiHotLabels(hot(nq), nq, classes),
      dl: multiHotLabels(hot(n), n, classes),
    });
  }
  {
    // Multi-label over two label words (40 classes), 64 bits; 21 queries: groups of 4 and a tail.
    const n = 350;
    const nq = 21;
    const classes = 40;
    const hot = (m: number) => Array.from({ length: m * classes }, () => (rng.bool(0.05) ? 1 : 0));
    cases.push({
      name: 'multi-label 64 bits, 2 label words',
      bits: 64,
      q: randomCodes(rng, 64, nq, 40),
      db: randomCodes(rng, 64, n, 40),
      ql: multiHotLabels(hot(nq), nq, classes),
      dl: multiHotLabels(hot(n), n, classes),
    });
  }
  {
    const n = 300;
    const nq = 30;
    cases.push({
      name: 'single-label 100 bits',
      bits: 100,
      q: randomCodes(rng, 100, nq),
      db: randomCodes(rng, 100, n),
      ql: singleLabels(Array.from({ length: nq }, () => rng.int(5))),
      dl: singleLabels(Array.from({ length: n }, () => rng.int(5))),
    });
  }
  return cases;
}

/** Cutoffs: mAP@all, K < N, K > N, SEMICON's default slice [:-1], a positive slice, a slice that keeps nothing. */
function variants(n: number): Array<{ label: string; opts: EvalOptions; cutoff: number; py: string }> {
  return [
    { label: 'mAP@all', opts: {}, cutoff: n, py: 'None' },
    { label: 'mAP@10', opts: { topk: 10 }, cutoff: 10, py: '10' },
    { label: `mAP@${n + 50}`, opts: { topk: n + 50 }, cutoff: n, py: String(n + 50) },
    { label: 'slice [:-1]', opts: { referenceSlice: -1 }, cutoff: n - 1, py: '-1' },
    { label: 'slice [:7]', opts: { referenceSlice: 7 }, cutoff: 7, py: '7' },
    { label: `slice [:-${n + 5}]`, opts: { referenceSlice: -(n + 5) }, cutoff: 0, py: String(-(n + 5)) },
  ];
}

test('mAP, precision@K, recall@K and PR curves equal an independent brute force (1e-12), on 1 and 2 threads', async (t) => {
  for (const c of makeCases()) {
    const at = [1, 10, c.db.count + 3];
    for (const v of variants(c.db.count)) {
      const want = brute(c, v.cutoff, at);
      for (const threads of [1, 2]) {
        const r = await evaluate(c.q, c.ql, c.db, c.dl, { ...v.opts, at, prCurve: true, threads, workPerThread: 0 });
        const what = `${c.name}, ${v.label}, ${threads} threads`;
        t.true(Math.abs(r.map - want.map) <= 1e-12, `${what}: map ${r.map} vs ${want.map}`);
        t.is(r.cutoff, v.cutoff, what);
        t.deepEqual([r.ap.length, r.at.length, r.pr!.precision.length, r.pr!.recall.length], [want.ap.length, want.precision.length, want.prPrecision.length, want.prRecall.length], `${what}: lengths`);
        t.true(Array.from(r.ap).every((x, i) => Math.abs(x - want.ap[i]!) <= 1e-12), `${what}: per-query AP`);
        t.true(r.at.every((a, e) => Math.abs(a.precision - want.precision[e]!) <= 1e-12 && Math.abs(a.recall - want.recall[e]!) <= 1e-12), `${what}: precision/recall@K`);
        t.true(r.pr!.precision.every((p, k) => (p === null ? want.prPrecision[k] === null : Math.abs(p - want.prPrecision[k]!) <= 1e-12)), `${what}: PR precision`);
        t.true(r.pr!.recall.every((p, k) => Math.abs(p - want.prRecall[k]!) <= 1e-12), `${what}: PR recall`);
      }
    }
  }
  t.deepEqual([pythonSliceLength(10, -1), pythonSliceLength(10, 20), pythonSliceLength(10, -20), pythonSliceLength(10, 0)], [9, 10, 0, 0]);
});

const REFERENCE = String.raw`
import json, sys
import numpy as np
import torch

def semicon_map(qB, dB, qL, dL, topk):
    # The semantics of SEMICON's utils/evaluate.py, restated: relevance = label product > 0,
    # distance = (bits - q.d) / 2, rank by distance, keep ranked[:topk] (Python slice, so -1 drops
    # the last item), AP = mean over relevant ranks of hits/rank, queries without hits count 0.
    # float64 and a stable sort so that ties go by database index.
    dist = 0.5 * (dB.shape[1] - qB @ dB.t())
    rel = (qL @ dL.t() > 0).double()
    ranked = torch.gather(rel, 1, torch.sort(dist, dim=1, stable=True).indices)[:, :topk]
    total = 0.0
    for row in ranked:
        ranks = torch.nonzero(row).flatten().double() + 1.0
        if ranks.numel():
            total += float((torch.arange(1, ranks.numel() + 1, dtype=torch.float64) / ranks).mean())
    return total / qB.shape[0]

def srlh_map(qB, qL, dB, dL, R):
    # The semantics of sRLH's utils/cal_map.py, restated: similarity of sign codes, the first R
    # items by descending similarity (stable), precision at each rank averaged over the hits.
    order = np.argsort(-(np.sign(dB) @ np.sign(qB).T), axis=0, kind='stable')
    aps = []
    for i in range(qB.shape[0]):
        match = (dL[order[:R, i]] @ qL[i]) > 0
        if not match.any():
            aps.append(0.0)
            continue
        precision = np.cumsum(match) / np.arange(1, len(match) + 1)
        aps.append(float((precision * match).sum() / match.sum()))
    return float(np.mean(aps))

out = []
for c in json.load(sys.stdin):
    qB = np.array(c['qB'], dtype=np.float64); dB = np.array(c['dB'], dtype=np.float64)
    qL = np.array(c['qL'], dtype=np.float64); dL = np.array(c['dL'], dtype=np.float64)
    res = {'semicon': {}, 'srlh': {}}
    for k in c['topk']:
        res['semicon'][str(k)] = semicon_map(torch.from_numpy(qB), torch.from_numpy(dB), torch.from_numpy(qL), torch.from_numpy(dL), None if k is None else k)
    for R in c['R']:
        res['srlh'][str(R)] = srlh_map(qB, qL, dB, dL, R)
    out.append(res)
print(json.dumps(out))
`;

const torchNumpy = referencePython('torch', 'numpy');

(torchNumpy ? test : test.skip)(`mAP equals the reference evaluate functions (SEMICON in torch, sRLH in numpy) with stable ties, to 1e-12${torchNumpy ? '' : ` (${missingPythonMessage('torch', 'numpy')})`}`, async (t) => {
  const py = torchNumpy!;
  const cases = makeCases();
  const pm1 = (c: Codes) => Array.from({ length: c.count }, (_, i) => Array.from({ length: c.bits }, (_, b) => (bit(c, i, b) ? 1 : -1)));
  const hot = (l: Labels) => {
    const m = toMultiHot(l);
    return Array.from({ length: l.count }, (_, i) => Array.from(m.subarray(i * l.numClasses, (i + 1) * l.numClasses)));
  };
  const payload = cases.map((c) => {
    // Both sides need the same class count for the reference's matrix products.
    const width = Math.max(c.ql.numClasses, c.dl.numClasses);
    const pad = (rows: number[][]) => rows.map((r) => [...r, ...new Array<number>(width - r.length).fill(0)]);
    const n = c.db.count;
    return {
      qB: pm1(c.q),
      dB: pm1(c.db),
      qL: pad(hot(c.ql)),
      dL: pad(hot(c.dl)),
      topk: variants(n).map((v) => (v.py === 'None' ? null : Number(v.py))),
      R: [n, 10, 1],
    };
  });
  const ref = JSON.parse(runPython(py, REFERENCE, [], JSON.stringify(payload))) as Array<{ semicon: Record<string, number>; srlh: Record<string, number> }>;
  for (const [ci, c] of cases.entries()) {
    const n = c.db.count;
    for (const v of variants(n)) {
      const r = await evaluate(c.q, c.ql, c.db, c.dl, v.opts);
      const want = ref[ci]!.semicon[v.py]!;
      t.true(Math.abs(r.map - want) <= 1e-12, `${c.name}, ${v.label}: ours ${r.map}, SEMICON's ${want}`);
    }
    for (const R of [n, 10, 1]) {
      const r = await evaluate(c.q, c.ql, c.db, c.dl, { topk: R });
      const want = ref[ci]!.srlh[String(R)]!;
      t.true(Math.abs(r.map - want) <= 1e-12, `${c.name}, R=${R}: ours ${r.map}, sRLH's ${want}`);
    }
  }
});
