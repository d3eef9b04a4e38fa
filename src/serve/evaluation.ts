import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { readCodeStore, type StoreContents } from '../retrieval/code-store.js';
import { evaluate, type PrCurve } from '../retrieval/metrics.js';
import { prCurveSvg } from '../retrieval/plot.js';
import { FghError } from '../util/errors.js';

/** mAP of one code length as its training run logged it. */
export interface RunMap {
  bits: number;
  /** Best logged mAP and where (epoch, or SEMICON's outer iteration); null when never evaluated. */
  best: number | null;
  bestAt: number | null;
  last: number | null;
  /** Logged epochs (or iterations), evaluated or not. */
  steps: number;
  evaluations: number;
  /** (step, mAP) for every logged evaluation, in order. */
  history: Array<[number, number]>;
}

/** The served model's own evaluation: query store against the database store. */
export interface StoreEvaluation {
  bits: number;
  map: number;
  numQuery: number;
  numDb: number;
  precisionAt: Array<{ k: number; precision: number; recall: number }>;
  pr: PrCurve;
}

export interface EvaluationView {
  runs: RunMap[];
  runsDir: string | null;
  current: StoreEvaluation | null;
  prSvg: string | null;
}

/** Reads `DIR/<bits>/log.jsonl` of a `fgh train --out DIR` run (and of `fgh demo`'s model folder). */
export function readRunMaps(dir: string): RunMap[] {
  if (!existsSync(dir)) throw new FghError(`${dir}: no such directory`);
  const out: RunMap[] = [];
  for (const name of readdirSync(dir).filter((n) => /^\d+$/.test(n)).sort((a, b) => Number(a) - Number(b))) {
    const log = path.join(dir, name, 'log.jsonl');
    if (!existsSync(log)) continue;
    const history: Array<[number, number]> = [];
    let steps = 0;
    readFileSync(log, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (!line.trim()) return;
        let row: { map?: unknown; epoch?: unknown; iter?: unknown };
        try {
          row = JSON.parse(line) as typeof row;
        } catch {
          throw new FghError(`${log}:${i + 1}: not a JSON line`);
        }
        const step = typeof row.iter === 'number' ? row.iter : typeof row.epoch === 'number' ? row.epoch : history.length + 1;
        steps++;
        if (typeof row.map === 'number') history.push([step, row.map]);
      });
    let best: [number, number] | null = null;
    for (const h of history) if (!best || h[1] > best[1]) best = h;
    const last = history[history.length - 1];
    out.push({ bits: Number(name), best: best ? best[1] : null, bestAt: best ? best[0] : null, last: last ? last[1] : null, steps, evaluations: history.length, history });
  }
  if (out.length === 0) throw new FghError(`${dir}: no <bits>/log.jsonl (is it a fgh train --out folder?)`);
  return out;
}

export async function evaluateStores(queryFile: string, db: StoreContents): Promise<StoreEvaluation> {
  const q = readCodeStore(queryFile);
  if (q.header.bits !== db.header.bits) throw new FghError(`${queryFile}: ${q.header.bits}-bit codes, the database has ${db.header.bits}`);
  if (!q.labels || !db.labels) throw new FghError(`${!q.labels ? queryFile : 'the database'}: no labels, so nothing to evaluate (encode a dataset split)`);
  const r = await evaluate(q.codes, q.labels, db.codes, db.labels, { prCurve: true, at: [1, 10, 100] });
  return { bits: r.bits, map: r.map, numQuery: r.numQuery, numDb: r.numDb, precisionAt: r.at, pr: r.pr! };
}

export async function buildEvaluationView(opts: { runsDir?: string; queryFile?: string; db: StoreContents }): Promise<EvaluationView> {
  const runs = opts.runsDir ? readRunMaps(opts.runsDir) : [];
  const current = opts.queryFile ? await evaluateStores(opts.queryFile, opts.db) : null;
  const prSvg = current ? prCurveSvg([{ label: `${current.bits} bits, mAP@all ${current.map.toFixed(4)}`, curve: current.pr }], `Precision-recall by Hamming radius (${current.numQuery} queries, ${current.numDb} database items)`) : null;
  return { runs, runsDir: opts.runsDir ?? null, current, prSvg };
}
