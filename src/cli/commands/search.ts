import type { Command } from 'commander';
import { FghError } from '../../util/errors.js';
import { loadCodeInput } from '../../retrieval/inputs.js';
import { searchTopK } from '../../retrieval/search.js';
import { fromPackedBytes, type CodeLayout, type Codes } from '../../retrieval/codes.js';
import { encodeFiles } from '../../encode/encoder.js';
import { codeLayout, positiveInt, progressFor } from './eval.js';

interface SearchOpts {
  db: string;
  model?: string;
  queryCodes?: string;
  topk: number;
  layout?: CodeLayout;
  threads?: number;
  json?: boolean;
}

export function registerSearch(program: Command): void {
  program
    .command('search')
    .description('top-K database items per query by Hamming distance (ties by database index), with their distances')
    .argument('[images...]', 'query images (with --model)')
    .requiredOption('--db <codes>', 'database code store')
    .option('--model <file.onnx>', 'encode the query images with this exported model')
    .option('--query-codes <file>', 'query codes: .npy (packed uint8, ±1 float, {0,1}) or a code store')
    .requiredOption('--topk <k>', 'results per query', positiveInt('--topk'))
    .option('--layout <l>', 'how .npy uint8 query codes are laid out: auto, packed, bits', codeLayout)
    .option('--threads <n>', 'most threads to use (default: all cores, for large jobs)', positiveInt('--threads'))
    .option('--json', 'print one JSON object on stdout')
    .action(async (images: string[], o: SearchOpts) => {
      if ((o.model === undefined) === (o.queryCodes === undefined)) throw new FghError('give either --model FILE.onnx IMAGE... or --query-codes FILE');
      if (o.model !== undefined && images.length === 0) throw new FghError('--model needs one or more query IMAGE arguments');
      if (o.model === undefined && images.length) throw new FghError(`image arguments need --model (got ${images.length} with --query-codes)`);
      const db = loadCodeInput(o.db);
      if (db.kind !== 'store') throw new FghError(`${o.db}: --db must be a code store (fgh codes import makes one from .npy)`);
      let q: { codes: Codes };
      if (o.model !== undefined) {
        const enc = await encodeFiles(o.model, images);
        if (enc.bits !== db.codes.bits) throw new FghError(`${o.model} makes ${enc.bits}-bit codes, ${o.db} holds ${db.codes.bits}-bit codes`);
        q = { codes: fromPackedBytes(enc.packed, images.length, enc.codeBytes, enc.bits) };
      } else {
        // The length comes from the database (search has no --bits): a mismatch names it.
        q = loadCodeInput(o.queryCodes!, { bits: db.codes.bits, bitsFrom: `${o.db} holds ${db.codes.bits}-bit codes`, ...(o.layout && { layout: o.layout }) });
      }
      const bar = progressFor('search', q.codes.count * db.codes.count, q.codes.count, 'queries');
      const r = await searchTopK(db.codes, q.codes, o.topk, { ...(o.threads !== undefined && { threads: o.threads }), ...(bar.progress && { progress: bar.progress }) });
      bar.finish();
      const ids = db.ids!;
      if (o.json) {
        const results = [];
        for (let i = 0; i < r.queries; i++) {
          const indices = Array.from(r.indices.subarray(i * r.k, (i + 1) * r.k));
          results.push({ query: i, ids: indices.map((j) => ids[j]!), indices, distances: Array.from(r.distances.subarray(i * r.k, (i + 1) * r.k)) });
        }
        process.stdout.write(`${JSON.stringify({ results })}\n`);
        return;
      }
      const out: string[] = [];
      for (let i = 0; i < r.queries; i++) {
        out.push(`query ${i}${images[i] !== undefined ? ` (${images[i]})` : ''}:`);
        for (let e = 0; e < r.k; e++) {
          const j = r.indices[i * r.k + e]!;
          out.push(`  ${String(e + 1).padStart(String(r.k).length)}. ${ids[j]}  distance ${r.distances[i * r.k + e]}  index ${j}`);
        }
      }
      process.stdout.write(`${out.join('\n')}\n`);
    });
}
