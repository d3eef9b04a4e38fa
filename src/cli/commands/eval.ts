import type { Command } from 'commander';
import { FghError } from '../../util/errors.js';
import { Progress } from '../../util/progress.js';
import { loadCodeInput } from '../../retrieval/inputs.js';
import { evaluate, type EvalResult } from '../../retrieval/metrics.js';
import { writePrCurve } from '../../retrieval/plot.js';
import type { CodeLayout } from '../../retrieval/codes.js';

/** Option parsers shared by the retrieval commands (eval, search, codes). */
export function positiveInt(flag: string): (v: string) => number {
  return (v: string) => {
    if (!/^\d+$/.test(v) || Number(v) < 1 || !Number.isSafeInteger(Number(v))) throw new FghError(`${flag} must be a positive integer, got "${v}"`);
    return Number(v);
  };
}

export function anyInt(flag: string): (v: string) => number {
  return (v: string) => {
    if (!/^-?\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new FghError(`${flag} must be an integer, got "${v}"`);
    return Number(v);
  };
}

export function intList(flag: string): (v: string) => number[] {
  const one = positiveInt(flag);
  return (v: string) => v.split(',').map((s) => one(s.trim()));
}

export function codeLayout(v: string): CodeLayout {
  if (v !== 'auto' && v !== 'packed' && v !== 'bits') throw new FghError(`--layout must be auto, packed or bits, got "${v}"`);
  return v;
}

/** A progress bar only for work long enough to want one (about a second or more). */
export function progressFor(label: string, work: number, total: number, unit: string): { progress?: (done: number, total: number) => void; finish: () => void } {
  if (work < 2e9) return { finish: () => undefined };
  const bar = new Progress(label, total, { unit });
  let shown = 0;
  return {
    progress: (done) => {
      if (done > shown) bar.tick(done - shown);
      shown = Math.max(shown, done);
    },
    finish: () => bar.finish(),
  };
}

interface EvalOpts {
  query: string;
  db: string;
  queryLabels?: string;
  dbLabels?: string;
  bits?: number;
  layout?: CodeLayout;
  topk?: number;
  referenceSlice?: number;
  at?: number[];
  prCurve?: string;
  threads?: number;
  json?: boolean;
}

export function evalJson(r: EvalResult, prFile?: string): Record<string, unknown> {
  return {
    map: r.map,
    topk: r.topk,
    num_query: r.numQuery,
    num_db: r.numDb,
    bits: r.bits,
    reference_slice: r.referenceSlice,
    ranked: r.cutoff,
    precision_at_k: Object.fromEntries(r.at.map((a) => [String(a.k), a.precision])),
    recall_at_k: Object.fromEntries(r.at.map((a) => [String(a.k), a.recall])),
    queries_without_relevant: r.relevant.reduce((n, v) => n + (v === 0 ? 1 : 0), 0),
    ...(prFile !== undefined && { pr_curve: prFile }),
  };
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description(
      'mAP@all (or mAP@K), precision@K and recall@K of Hamming ranking: relevant = shares a label; ' +
        'ranked by distance, ties by database index. Q and D are code stores or .npy codes ' +
        '(packed uint8, ±1 float, {0,1}) with labels from --query-labels/--db-labels.',
    )
    .requiredOption('--query <file>', 'query codes: code store or .npy')
    .requiredOption('--db <file>', 'database codes: code store or .npy')
    .option('--query-labels <file.npy>', 'query labels: [N] class ids or [N, classes] one-hot/multi-hot')
    .option('--db-labels <file.npy>', 'database labels, as --query-labels')
    .option('--bits <n>', 'for .npy packed codes: bits used (default all)', positiveInt('--bits'))
    .option('--layout <l>', 'how .npy uint8 codes are laid out: auto (packed), packed, bits (one 0/1 per bit)', codeLayout)
    .option('--topk <k>', 'mAP@K instead of mAP@all (also the default K of precision/recall)', positiveInt('--topk'))
    .option('--reference-slice <s>', "reproduce SEMICON's retrieval[:topk] slice, Python semantics: -1 (its default) drops the last ranked item", anyInt('--reference-slice'))
    .option('--at <k,...>', 'cutoffs for precision@K and recall@K (default: --topk, or 100)', intList('--at'))
    .option('--pr-curve <file>', 'write the precision-recall curve by Hamming radius (.svg or .png)')
    .option('--threads <n>', 'most threads to use (default: all cores, for large jobs)', positiveInt('--threads'))
    .option('--json', 'print one JSON object on stdout')
    .action(async (o: EvalOpts) => {
      if (o.topk !== undefined && o.referenceSlice !== undefined) throw new FghError('--topk and --reference-slice exclude each other');
      const load = (file: string, labelsFile: string | undefined) =>
        loadCodeInput(file, { ...(labelsFile && { labelsFile }), ...(o.bits !== undefined && { bits: o.bits }), ...(o.layout && { layout: o.layout }) });
      const q = load(o.query, o.queryLabels);
      const d = load(o.db, o.dbLabels);
      if (!q.labels) throw new FghError(`${o.query}: no labels; give --query-labels`);
      if (!d.labels) throw new FghError(`${o.db}: no labels; give --db-labels`);
      if (q.codes.bits !== d.codes.bits) throw new FghError(`${o.query} has ${q.codes.bits}-bit codes, ${o.db} has ${d.codes.bits}-bit codes`);
      const bar = progressFor('eval', q.codes.count * d.codes.count, q.codes.count, 'queries');
      const r = await evaluate(q.codes, q.labels, d.codes, d.labels, {
        ...(o.topk !== undefined && { topk: o.topk }),
        ...(o.referenceSlice !== undefined && { referenceSlice: o.referenceSlice }),
        ...(o.at && { at: o.at }),
        ...(o.threads !== undefined && { threads: o.threads }),
        ...(bar.progress && { progress: bar.progress }),
        prCurve: o.prCurve !== undefined,
      });
      bar.finish();
      if (o.prCurve !== undefined && r.pr) {
        const label = r.topk !== null ? `mAP@${r.topk} ${r.map.toFixed(4)}` : `mAP ${r.map.toFixed(4)}`;
        await writePrCurve(o.prCurve, [{ label, curve: r.pr }], `Precision-recall by Hamming radius (${r.bits} bits, ${r.numQuery} queries)`);
      }
      if (o.json) {
        process.stdout.write(`${JSON.stringify(evalJson(r, o.prCurve))}\n`);
        return;
      }
      const what = r.topk !== null ? `mAP@${r.topk}` : r.referenceSlice !== null ? `mAP (reference slice [:${r.referenceSlice}], ${r.cutoff} ranked)` : 'mAP@all';
      const lines = [`${what}: ${r.map.toFixed(4)}  (${r.numQuery} queries, ${r.numDb} database items, ${r.bits} bits)`];
      for (const a of r.at) lines.push(`precision@${a.k}: ${a.precision.toFixed(4)}  recall@${a.k}: ${a.recall.toFixed(4)}`);
      const none = r.relevant.reduce((n, v) => n + (v === 0 ? 1 : 0), 0);
      if (none) lines.push(`${none} queries have no relevant database item (AP 0, counted in the mean)`);
      if (o.prCurve !== undefined) lines.push(`precision-recall curve written to ${o.prCurve}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
