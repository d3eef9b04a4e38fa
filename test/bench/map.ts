/**
 * bench:map: mAP@all of 5,794 queries over 5,994 database codes of 48 bits (CUB-200-2011's test
 * and train sizes, 200 classes), fgh against the reference evaluate function (SEMICON's
 * utils/evaluate.py semantics, a per-query loop in PyTorch on all cores) on the same codes, in the
 * same run, alternating rounds. Codes are class prototypes with bits flipped at random, so that
 * mAP is far from both 0 and 1 and distances tie often, as with trained codes.
 * The reference runs with 1 thread and with all cores; the faster counts.
 * The reference uses a stable sort here so that both sides break ties by database index and must
 * agree on the value (SEMICON's own torch.sort is not stable; it then differs only among ties).
 * Options: --rounds N (default 5), --reps N (fgh runs per round, default 5), --queries N, --db N,
 * --bits N, --classes N, --flip P.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { allocCodes, toPackedBytes, type Codes } from '../../src/retrieval/codes.js';
import { singleLabels } from '../../src/retrieval/labels.js';
import { evaluate } from '../../src/retrieval/metrics.js';
import { Rng } from '../../src/util/rng.js';
import { pythonWith, runPython } from '../helpers/python.js';
import { numberArg } from '../helpers/bench.js';


const NQ = numberArg('queries', 5794);
const ND = numberArg('db', 5994);
const BITS = numberArg('bits', 48);
const CLASSES = numberArg('classes', 200);
const FLIP = numberArg('flip', 0.25);
const ROUNDS = numberArg('rounds', 5);
const REPS = numberArg('reps', 5);

/** Items of class i % classes: the class prototype with each bit flipped with probability FLIP. */
function classCodes(rng: Rng, protos: Uint8Array[], n: number): { codes: Codes; labels: Int32Array } {
  const codes = allocCodes(BITS, n);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % CLASSES;
    labels[i] = c;
    for (let b = 0; b < BITS; b++) {
      const bit = protos[c]![b]! ^ (rng.bool(FLIP) ? 1 : 0);
      if (bit) codes.data[i * codes.stride + (b >> 3)]! |= 0x80 >> (b & 7);
    }
  }
  return { codes, labels };
}

const REFERENCE = String.raw`
import os, sys, time, numpy as np, torch
d, bits, nq, nd, classes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def load(name, n):
    packed = np.fromfile(d + '/' + name + '.bin', dtype=np.uint8).reshape(n, -1)
    return torch.from_numpy(np.unpackbits(packed, axis=1)[:, :bits].astype(np.float32) * 2 - 1)
def onehot(name, n):
    y = np.fromfile(d + '/' + name + '.labels', dtype=np.int32)
    return torch.nn.functional.one_hot(torch.from_numpy(y).long(), classes).float()
qB, dB, qL, dL = load('q', nq), load('db', nd), onehot('q', nq), onehot('db', nd)

def evaluate(query_code, database_code, query_labels, database_labels):
    # SEMICON's per-query loop in float32 on torch tensors, restated (see metrics.test.ts).
    total = 0.0
    for i in range(query_code.shape[0]):
        rel = (query_labels[i, :] @ database_labels.t() > 0).float()
        dist = 0.5 * (database_code.shape[1] - query_code[i, :] @ database_code.t())
        rel = rel[torch.sort(dist, stable=True)[1]]
        cnt = int(rel.sum().item())
        if cnt == 0:
            continue
        score = torch.linspace(1, cnt, cnt)
        ranks = (torch.nonzero(rel == 1).squeeze() + 1.0).float()
        total += (score / ranks).mean()
    return float(total / query_code.shape[0])

# The per-query loop is made of small ops; one thread is often faster than all, so time both.
best = None
for threads in sorted({1, os.cpu_count()}):
    torch.set_num_threads(threads)
    t = time.perf_counter()
    m = evaluate(qB, dB, qL, dL)
    s = time.perf_counter() - t
    if best is None or s < best[0]:
        best = (s, m, threads)
print(*best)
`;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (s: number) => (s >= 1 ? `${s.toFixed(2)} s` : `${(s * 1000).toFixed(1)} ms`);

async function main(): Promise<void> {
  const rng = new Rng(48);
  const protos = Array.from({ length: CLASSES }, () => Uint8Array.from({ length: BITS }, () => (rng.bool() ? 1 : 0)));
  const q = classCodes(rng, protos, NQ);
  const db = classCodes(rng, protos, ND);
  const ql = singleLabels(q.labels, CLASSES);
  const dl = singleLabels(db.labels, CLASSES);
  console.log(`bench:map  mAP@all, ${NQ} queries x ${ND} database codes, ${BITS} bits, ${CLASSES} classes, ${os.availableParallelism()} cores, node ${process.version}`);
  const py = pythonWith('torch', 'numpy');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-bench-map-'));
  try {
    if (py) {
      writeFileSync(path.join(dir, 'q.bin'), toPackedBytes(q.codes));
      writeFileSync(path.join(dir, 'db.bin'), toPackedBytes(db.codes));
      writeFileSync(path.join(dir, 'q.labels'), new Uint8Array(q.labels.buffer));
      writeFileSync(path.join(dir, 'db.labels'), new Uint8Array(db.labels.buffer));
    } else {
      console.log('PyTorch not found (Debian: apt-get install python3-torch python3-numpy); timing fgh only');
    }
    // The first call in a process also compiles the kernels: reported on its own.
    let t = performance.now();
    let ours = (await evaluate(q.codes, ql, db.codes, dl, { threads: 1 })).map;
    console.log(`  first call in this process (kernel compilation included): ${fmt((performance.now() - t) / 1000)}`);
    // This machine's speed drifts over seconds, so each round pairs one reference run with the
    // median of REPS fgh runs made right after it, and ratios are taken round by round.
    const ref: number[] = [];
    const one: number[] = [];
    const all: number[] = [];
    let refMap = NaN;
    let threads = 1;
    const timed = async (opts: { threads?: number }): Promise<number> => {
      const times: number[] = [];
      for (let r = 0; r < REPS; r++) {
        t = performance.now();
        const res = await evaluate(q.codes, ql, db.codes, dl, opts);
        times.push((performance.now() - t) / 1000);
        ours = res.map;
        threads = opts.threads ?? res.threads;
      }
      return median(times);
    };
    for (let round = 0; round < ROUNDS; round++) {
      let line = `  round ${round + 1}: `;
      if (py) {
        const [secs, value, torchThreads] = runPython(py, REFERENCE, [dir, String(BITS), String(NQ), String(ND), String(CLASSES)]).trim().split(' ').map(Number);
        ref.push(secs!);
        refMap = value!;
        line += `PyTorch (${torchThreads} threads) ${fmt(secs!)}, `;
      }
      one.push(await timed({ threads: 1 }));
      all.push(await timed({}));
      console.log(`${line}fgh 1 thread ${fmt(one[round]!)}, fgh ${threads} threads ${fmt(all[round]!)} (medians of ${REPS})`);
    }
    console.log(`mAP@all: fgh ${ours.toFixed(12)}${py ? `, reference ${refMap.toFixed(12)}, |diff| ${Math.abs(ours - refMap).toExponential(2)} (reference in float32)` : ''}`);
    if (py) console.log(`reference (PyTorch):  best ${fmt(Math.min(...ref))}  median ${fmt(median(ref))}`);
    console.log(`fgh, 1 thread:        best ${fmt(Math.min(...one))}  median ${fmt(median(one))}`);
    console.log(`fgh, ${threads} threads:       best ${fmt(Math.min(...all))}  median ${fmt(median(all))}`);
    if (py) {
      const ratios = (ours: number[]) => ref.map((r, i) => r / ours[i]!);
      const show = (xs: number[]) => `median ${median(xs).toFixed(0)}x  range ${Math.min(...xs).toFixed(0)}x-${Math.max(...xs).toFixed(0)}x`;
      console.log(`ratio reference / fgh, round by round (1 thread):  ${show(ratios(one))}   (goal >= 100)`);
      console.log(`ratio reference / fgh, round by round (${threads} threads): ${show(ratios(all))}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
