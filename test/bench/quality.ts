/**
 * bench:quality: retrieval quality of models trained from scratch on this machine's CPU, next to
 * baselines computed in the same run, on Fashion-MNIST (Debian's dataset-fashion-mnist).
 *
 * - data: a seeded, class-stratified split written as an fgh `folder` dataset (database = train
 *   split, from the official training set; queries = test split, from t10k);
 * - trained: sRLH and SEMICON through the real CLI (`fgh train`, one process per code length, each
 *   with the budget), exported (`fgh export --onnx`), both splits encoded (`fgh encode`) and scored
 *   (`fgh eval --json`); and a ResNet classifier trained with cross entropy alone (`fgh finetune`,
 *   same budget), whose pooled features are hashed by the sign of their PCA;
 * - baselines: random-projection LSH and PCA-ITQ on the pixels (32 x 32);
 * - mAP@all at every code length; a table on stdout, quality.svg / quality.png and results.json in --out.
 *
 * The budget is a cap: a run still going when it runs out is stopped with SIGINT, which makes fgh
 * save after the current batch, and the saved state is what gets scored (marked in the table).
 * Options: --train N (2000) --query N (1000) --seed S (0) --bits 12,24,32,48
 * --methods srlh,semicon,finetune --budget-minutes M (25, per trained model: SEMICON's 20 iterations take about 19 min on 2 cores) --out DIR.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MALLOC_TUNABLES } from '../../src/backend/malloc-tunables.js';
import { loadDataset, split } from '../../src/data/datasets/index.js';
import { extractFeatures } from '../../src/encode/features.js';
import { fitPca, pcaItqCodes, pcaSignCodes, pixelFeatures, randomProjectionCodes, type Features } from '../../src/retrieval/baselines/index.js';
import type { Codes } from '../../src/retrieval/codes.js';
import { singleLabels, type Labels } from '../../src/retrieval/labels.js';
import { evaluate } from '../../src/retrieval/metrics.js';
import { writeLinePlot } from '../../src/retrieval/plot.js';
import { DATABASE_CODES_FILE } from '../../src/train/run.js';
import { projectRoot } from '../../src/util/version.js';
import { FASHION_MNIST_DIR, fashionMnistAvailable, writeFashionMnist } from '../helpers/fashion-mnist.js';

type Method = 'srlh' | 'semicon' | 'finetune';
const METHODS: readonly Method[] = ['srlh', 'semicon', 'finetune'];

/**
 * The flags of each method on top of `fgh train`'s scratch recipe (its default without --init):
 * the one place the bench's settings are. Everything else (dataset, code length, output) is added
 * by the script. `--eval-every 0`: the bench scores the exported graphs itself, so an evaluation
 * inside the run would only spend budget. finetune: `fgh finetune` flags, the sRLH recipe's epochs,
 * batch and rate with cross entropy alone; its --arch is also the backbone that gets exported.
 */
const RECIPES: Record<Method, string[]> = {
  srlh: ['--size', '48', '--eval-every', '0'],
  semicon: ['--size', '48', '--eval-every', '0'],
  finetune: ['--arch', 'resnet18', '--epochs', '8', '--batch', '16', '--lr', '0.005', '--size', '48'],
};

function flagValue(flags: readonly string[], name: string): string | undefined {
  const i = flags.indexOf(name);
  return i >= 0 ? flags[i + 1] : undefined;
}

/** The backbone `fgh finetune` trains, which is also the graph exported for its features. */
const FINETUNE_ARCH = flagValue(RECIPES.finetune, '--arch') ?? 'resnet18';

const LABEL: Record<Method, string> = { srlh: 'sRLH', semicon: 'SEMICON', finetune: `${FINETUNE_ARCH} CE + PCA sign` };

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  train: number;
  query: number;
  seed: number;
  bits: number[];
  methods: Method[];
  budgetMinutes: number;
  out: string;
}

function usage(msg: string): never {
  process.stderr.write(`bench:quality: ${msg}\nusage: npm run bench:quality -- [--train N] [--query N] [--seed S] [--bits 12,24,32,48] [--methods srlh,semicon,finetune] [--budget-minutes M] [--out DIR]\n`);
  process.exit(2);
}

function parseOptions(argv: string[]): Options {
  const o: Options = { train: 2000, query: 1000, seed: 0, bits: [12, 24, 32, 48], methods: [...METHODS], budgetMinutes: 25, out: path.join(os.tmpdir(), 'fgh-bench-quality') };
  const int = (name: string, v: string | undefined, min: number): number => {
    if (v === undefined || !/^\d+$/.test(v) || Number(v) < min) usage(`--${name} must be an integer >= ${min}, got "${v ?? ''}"`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, v] = [argv[i]!, argv[i + 1]];
    switch (flag) {
      case '--train': o.train = int('train', v, 10); break;
      case '--query': o.query = int('query', v, 10); break;
      case '--seed': o.seed = int('seed', v, 0); break;
      case '--bits': o.bits = (v ?? '').split(',').map((b) => int('bits', b.trim(), 1)); break;
      case '--methods':
        o.methods = (v ?? '').split(',').filter(Boolean).map((m) => {
          if (!(METHODS as readonly string[]).includes(m)) usage(`--methods takes ${METHODS.join(',')} (any subset), got "${m}"`);
          return m as Method;
        });
        break;
      case '--budget-minutes': {
        const b = Number(v);
        if (!(b > 0)) usage(`--budget-minutes must be a positive number, got "${v ?? ''}"`);
        o.budgetMinutes = b;
        break;
      }
      case '--out': if (!v) usage('--out needs a directory'); o.out = path.resolve(v); break;
      default: usage(`unknown option "${flag}"`);
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// Running fgh

const FGH = path.join(projectRoot(), 'bin', 'fgh.js');
// bin/fgh's shebang sets this; `node bin/fgh.js` does not, so the children get it here.
const ENV = { ...process.env, GLIBC_TUNABLES: MALLOC_TUNABLES };

/** Runs `fgh ARGS` to completion, its output appended to `log`; returns stdout, throws with the output's tail. */
function fgh(args: string[], log: string): string {
  const r = spawnSync(process.execPath, [FGH, ...args], { encoding: 'utf8', env: ENV, maxBuffer: 1 << 28 });
  writeFileSync(log, `$ fgh ${args.join(' ')}\n${r.stdout}${r.stderr}\n`, { flag: 'a' });
  if (r.status !== 0) throw new Error(`fgh ${args[0]} failed (exit ${r.status ?? r.signal}): ${tail(r.stderr || r.stdout)}`);
  return r.stdout;
}

function tail(s: string): string {
  return s.trim().split('\n').filter(Boolean).slice(-3).join(' | ').slice(0, 500);
}

interface TrainRun {
  seconds: number;
}

/**
 * Runs a training command with a time budget: at the deadline SIGINT (fgh saves after the current
 * batch and exits with 130); if it is still running 10 minutes later, SIGKILL and failure.
 * Whether the saved run is complete is read from its checkpoint afterwards (runComplete): a SIGINT
 * that comes after the last batch leaves a finished run.
 */
function fghWithBudget(args: string[], budgetMs: number, log: string): Promise<TrainRun> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const out = createWriteStream(log, { flags: 'a' });
    out.write(`$ fgh ${args.join(' ')}\n`);
    const child = spawn(process.execPath, [FGH, ...args], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    let last = '';
    const keep = (b: Buffer): void => {
      out.write(b);
      last = (last + b.toString('utf8')).slice(-4000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let stopped = false;
    let kill: NodeJS.Timeout | undefined;
    const deadline = setTimeout(() => {
      stopped = true;
      child.kill('SIGINT');
      kill = setTimeout(() => child.kill('SIGKILL'), 10 * 60_000);
    }, budgetMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(deadline);
      clearTimeout(kill);
      out.end();
      const seconds = (Date.now() - started) / 1000;
      // Exit 130: saved and stopped. Killed by the SIGINT itself: it came when fgh was not listening
      // (between the end of training and exit, or before training started); what was saved is used.
      const byBudget = stopped && (code === 130 || signal === 'SIGINT');
      if (code === 0 || byBudget) resolve({ seconds });
      else reject(new Error(`fgh ${args[0]} failed (exit ${code ?? signal}${stopped ? ', after the budget ran out' : ''}): ${tail(last)}`));
    });
  });
}

/** Whether the run saved in `dir` (a checkpoint with its training state) ran to its end. */
function runComplete(dir: string): boolean {
  const file = path.join(dir, 'config.json');
  if (!existsSync(file)) throw new Error(`${dir}: no checkpoint was saved`);
  return (JSON.parse(readFileSync(file, 'utf8')) as { training?: { complete?: boolean } }).training?.complete === true;
}

// ---------------------------------------------------------------------------------------------
// The bench

interface Row {
  name: string;
  kind: 'trained' | 'baseline';
  /** mAP@all by code length (null: the run failed). */
  map: Record<number, number | null>;
  /** Training seconds by code length (or for the one model the row's codes come from). */
  trainSeconds: Record<number, number>;
  stopped: Record<number, boolean>;
  /** One model serves every code length (the classifier whose features are hashed). */
  oneModel: boolean;
  errors: string[];
}

function newRow(name: string, kind: Row['kind'], oneModel = false): Row {
  return { name, kind, map: {}, trainSeconds: {}, stopped: {}, oneModel, errors: [] };
}

const say = (s: string): void => {
  process.stderr.write(`${s}\n`);
};

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  if (!fashionMnistAvailable()) usage(`needs Fashion-MNIST in ${FASHION_MNIST_DIR} (Debian: apt-get install dataset-fashion-mnist)`);
  const t0 = Date.now();
  const dataDir = path.join(o.out, `fashion-mnist-${o.train}-${o.query}-seed${o.seed}`);
  const dirs = { models: path.join(o.out, 'models'), graphs: path.join(o.out, 'graphs'), codes: path.join(o.out, 'codes'), logs: path.join(o.out, 'logs') };
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
  const budgetMs = o.budgetMinutes * 60_000;

  const splitInfo = await writeFashionMnist(dataDir, { train: o.train, query: o.query, seed: o.seed });
  say(`data: ${dataDir} (${splitInfo.written ? 'written' : 'already there'}): ${o.train} database (train) and ${o.query} query (t10k) images, 10 classes`);
  const dataset = loadDataset('folder', { root: dataDir });
  const db = split(dataset, 'train');
  const query = split(dataset, 'test');
  const labels = (s: typeof db): Labels => singleLabels(s.map((x) => x.labels[0]!), dataset.classes.length);
  const [ql, dl] = [labels(query), labels(db)];
  const mapOf = async (c: { query: Codes; db: Codes }): Promise<number> => (await evaluate(c.query, ql, c.db, dl)).map;
  let chance = 0;
  for (const q of query) chance += db.filter((x) => x.labels[0] === q.labels[0]).length / db.length / query.length;

  // Baselines on the pixels; one PCA of the database serves every code length.
  const rows: Row[] = [];
  const maxBits = Math.max(...o.bits);
  const tb = Date.now();
  const [pq, pdb] = [await pixelFeatures(query), await pixelFeatures(db)];
  const lsh = newRow('LSH (pixels)', 'baseline');
  const itq = newRow('PCA-ITQ (pixels)', 'baseline');
  const pixelPca = fitPca(pdb, maxBits);
  for (const bits of o.bits) {
    lsh.map[bits] = await mapOf(randomProjectionCodes(pq, pdb, bits, o.seed));
    itq.map[bits] = await mapOf(pcaItqCodes(pq, pdb, bits, { pca: pixelPca, seed: o.seed }));
  }
  say(`baselines: LSH and PCA-ITQ on ${pdb.cols} pixel values at ${o.bits.join(', ')} bits in ${((Date.now() - tb) / 1000).toFixed(1)} s`);

  const root = ['--dataset', 'folder', '--root', dataDir];
  const budgetNote = `budget ${o.budgetMinutes} min`;
  for (const method of o.methods) {
    const row = newRow(LABEL[method], 'trained', method === 'finetune');
    rows.push(row);
    // SEMICON (ADSH) learns the database's codes: the authors score queries against those, while
    // the row above encodes the database with the network, as for images outside the training set.
    const learned = method === 'semicon' ? newRow(`${LABEL[method]} (db = learned B)`, 'trained') : null;
    if (learned) rows.push(learned);
    const log = path.join(dirs.logs, `${method}.log`);
    rmSync(log, { force: true });
    if (method === 'finetune') {
      const arch = FINETUNE_ARCH;
      const ckpt = path.join(dirs.models, 'finetune');
      rmSync(ckpt, { recursive: true, force: true });
      rmSync(`${ckpt}.run`, { recursive: true, force: true });
      try {
        say(`finetune: ${arch} from scratch, cross entropy (${budgetNote}); log ${log}`);
        const run = await fghWithBudget(['finetune', ...root, ...RECIPES.finetune, '--out', ckpt, '--quiet'], budgetMs, log);
        const complete = runComplete(`${ckpt}.run`);
        // Stopped inside the first epoch: only the run state exists, and it is the latest model.
        const weights = existsSync(ckpt) ? ckpt : `${ckpt}.run`;
        const graph = path.join(dirs.graphs, 'finetune.onnx');
        fgh(['export', '--onnx', '--backbone', arch, '--weights', weights, '--out', graph], log);
        const [fq, fdb]: Features[] = [await extractFeatures(graph, query), await extractFeatures(graph, db)];
        const pca = fitPca(fdb, maxBits);
        for (const bits of o.bits) {
          row.map[bits] = await mapOf(pcaSignCodes(fq, fdb, bits, { pca }));
          row.trainSeconds[bits] = run.seconds;
          row.stopped[bits] = !complete;
        }
        say(`finetune: ${(run.seconds / 60).toFixed(1)} min${complete ? '' : ' (stopped at the budget)'}; mAP ${o.bits.map((b) => row.map[b]!.toFixed(4)).join(' ')}`);
      } catch (e) {
        row.errors.push(String(e instanceof Error ? e.message : e));
        for (const bits of o.bits) row.map[bits] = null;
        say(`finetune: ${row.errors.at(-1)}`);
      }
      continue;
    }
    for (const bits of o.bits) {
      const name = `${method}-${bits}`;
      const out = path.join(dirs.models, name);
      rmSync(out, { recursive: true, force: true });
      try {
        say(`${name}: training (${budgetNote}); log ${log}`);
        const run = await fghWithBudget(['train', '--method', method, ...root, '--bits', String(bits), ...RECIPES[method], '--out', out, '--quiet'], budgetMs, log);
        const complete = runComplete(path.join(out, String(bits)));
        const graph = path.join(dirs.graphs, `${name}.onnx`);
        fgh(['export', '--onnx', '--checkpoint', path.join(out, String(bits)), '--out', graph], log);
        const codes = { query: path.join(dirs.codes, `${name}.query`), db: path.join(dirs.codes, `${name}.db`) };
        for (const [part, file] of [['test', codes.query], ['train', codes.db]] as const) {
          rmSync(file, { force: true });
          fgh(['encode', '--model', graph, ...root, '--split', part, '--out', file, '--quiet'], log);
        }
        const r = JSON.parse(fgh(['eval', '--query', codes.query, '--db', codes.db, '--json'], log)) as { map: number; num_query: number; num_db: number };
        if (r.num_query !== query.length || r.num_db !== db.length) throw new Error(`${name}: scored ${r.num_query} x ${r.num_db} codes, expected ${query.length} x ${db.length}`);
        row.map[bits] = r.map;
        row.trainSeconds[bits] = run.seconds;
        row.stopped[bits] = !complete;
        let learnedNote = '';
        if (learned) {
          const file = path.join(out, String(bits), DATABASE_CODES_FILE);
          if (existsSync(file)) {
            const rb = JSON.parse(fgh(['eval', '--query', codes.query, '--db', file, '--json'], log)) as { map: number; num_db: number };
            if (rb.num_db !== db.length) throw new Error(`${file}: ${rb.num_db} codes, expected ${db.length}`);
            learned.map[bits] = rb.map;
            learned.trainSeconds[bits] = run.seconds;
            learned.stopped[bits] = !complete;
            learnedNote = `; against the learned database codes ${rb.map.toFixed(4)}`;
          } else {
            learned.map[bits] = null;
            learned.errors.push(`${bits} bits: no ${DATABASE_CODES_FILE} (stopped before the first bitwise update)`);
          }
        }
        say(`${name}: ${(run.seconds / 60).toFixed(1)} min${complete ? '' : ' (stopped at the budget)'}, mAP@all ${r.map.toFixed(4)}${learnedNote}`);
      } catch (e) {
        row.errors.push(String(e instanceof Error ? e.message : e));
        row.map[bits] = null;
        say(`${name}: ${row.errors.at(-1)}`);
      }
    }
  }
  rows.push(itq, lsh);

  // The table.
  const wall = (Date.now() - t0) / 1000;
  const cpu = os.cpus();
  const head = `bench:quality: Fashion-MNIST, ${db.length} database (train) / ${query.length} query (t10k) images, 10 classes, seed ${o.seed}; mAP@all; trained from scratch on ${cpu.length} x ${cpu[0]?.model.trim() ?? 'CPU'}, ${budgetNote} per trained model`;
  const cell = (r: Row, b: number): string => {
    const m = r.map[b];
    return m === null || m === undefined ? 'failed' : `${m.toFixed(4)}${r.stopped[b] ? '*' : ''}`;
  };
  const models = (n: number): string => `${n} model${n === 1 ? '' : 's'}`;
  const minutes = (r: Row): string => {
    if (r.kind === 'baseline') return '-';
    const s = Object.values(r.trainSeconds);
    if (!s.length) return '-';
    // The classifier is one model whatever the code length; the hashing methods train one per length.
    return r.oneModel ? (s[0]! / 60).toFixed(1) : `${(s.reduce((a, b) => a + b, 0) / 60).toFixed(1)} (${models(s.length)})`;
  };
  const nameW = Math.max(24, ...rows.map((r) => r.name.length)) + 2;
  const lines = [head, '', `${'method'.padEnd(nameW)}${o.bits.map((b) => `${b} bits`.padStart(10)).join('')}   train min`];
  for (const r of rows) lines.push(`${r.name.padEnd(nameW)}${o.bits.map((b) => cell(r, b).padStart(10)).join('')}   ${minutes(r)}`);
  lines.push(`${'chance (random ranking)'.padEnd(nameW)}${o.bits.map(() => chance.toFixed(4).padStart(10)).join('')}`);
  if (rows.some((r) => Object.values(r.stopped).some(Boolean))) lines.push('', '* stopped at the budget (SIGINT); the state saved then is what was scored');
  for (const r of rows) for (const e of r.errors) lines.push(`${r.name}: ${e}`);
  const recipes = o.methods.map((m) => `  ${m}: ${RECIPES[m].join(' ')}`);
  lines.push('', ...(recipes.length ? ['recipes:', ...recipes] : ['no trained methods (--methods)']), `wall time ${(wall / 60).toFixed(1)} min; outputs in ${o.out}`);
  console.log(lines.join('\n'));

  const plot = {
    title: `Fashion-MNIST, ${db.length} / ${query.length} images: mAP@all`,
    xLabel: 'code length (bits)',
    yLabel: 'mAP@all',
    xTicks: o.bits,
    series: [
      ...rows.map((r) => ({ label: r.name, dashed: r.kind === 'baseline', points: o.bits.map((b) => ({ x: b, y: r.map[b] ?? null })) })),
      { label: 'chance', dashed: true, colour: '#999999', points: o.bits.map((b) => ({ x: b, y: chance })) },
    ],
  };
  await writeLinePlot(path.join(o.out, 'quality.svg'), plot);
  await writeLinePlot(path.join(o.out, 'quality.png'), plot);
  const results = {
    format: 'fgh-bench-quality/1',
    date: new Date().toISOString(),
    machine: { cores: cpu.length, cpu: cpu[0]?.model.trim() ?? null, node: process.version },
    options: o,
    recipes: Object.fromEntries(o.methods.map((m) => [m, RECIPES[m]])),
    data: { dir: dataDir, train: db.length, query: query.length, classes: dataset.classes },
    chance,
    rows,
    wallSeconds: wall,
  };
  writeFileSync(path.join(o.out, 'results.json'), `${JSON.stringify(results, null, 1)}\n`);
  if (rows.some((r) => r.errors.length)) process.exitCode = 1;
}

await main();
