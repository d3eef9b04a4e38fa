import type { Command } from 'commander';
import { FghError } from '../../util/errors.js';
import { loadCodeInput } from '../../retrieval/inputs.js';
import { searchTopK } from '../../retrieval/search.js';
import { fromPackedBytes, type CodeLayout, type Codes } from '../../retrieval/codes.js';
import { codeLayout, positiveInt, progressFor } from './eval.js';

interface SearchOpts {
  db?: string;
  clickhouse?: string;
  table?: string;
  model?: string;
  queryCodes?: string;
  topk: number;
  layout?: CodeLayout;
  threads?: number;
  json?: boolean;
}

/** Results as both searches give them: [queries, k] indices and distances, and each result's id. */
interface Ranked {
  k: number;
  queries: number;
  indices: ArrayLike<number>;
  distances: ArrayLike<number>;
  idAt: (slot: number) => string;
}

/** The query codes: encoded images, or codes from a file, of the database's length. */
async function queryCodes(o: SearchOpts, images: string[], bits: number, where: string): Promise<Codes> {
  if (o.model !== undefined) {
    const { encodeFiles } = await import('../../encode/encoder.js');
    const enc = await encodeFiles(o.model, images);
    if (enc.bits !== bits) throw new FghError(`${o.model} makes ${enc.bits}-bit codes, ${where} holds ${bits}-bit codes`);
    return fromPackedBytes(enc.packed, images.length, enc.codeBytes, enc.bits);
  }
  // The length comes from the database (search has no --bits): a mismatch names it.
  return loadCodeInput(o.queryCodes!, { bits, bitsFrom: `${where} holds ${bits}-bit codes`, ...(o.layout && { layout: o.layout }) }).codes;
}

async function searchLocal(o: SearchOpts & { db: string }, images: string[]): Promise<Ranked> {
  const db = loadCodeInput(o.db);
  if (db.kind !== 'store') throw new FghError(`${o.db}: --db must be a code store (fgh codes import makes one from .npy)`);
  const q = await queryCodes(o, images, db.codes.bits, o.db);
  const bar = progressFor('search', q.count * db.codes.count, q.count, 'queries');
  const r = await searchTopK(db.codes, q, o.topk, { ...(o.threads !== undefined && { threads: o.threads }), ...(bar.progress && { progress: bar.progress }) });
  bar.finish();
  const ids = db.ids!;
  return { ...r, idAt: (slot) => ids[r.indices[slot]!]! };
}

async function searchClickHouse(o: SearchOpts & { clickhouse: string }, images: string[]): Promise<Ranked> {
  if (o.table === undefined) throw new FghError('--clickhouse needs --table T (the table fgh codes push wrote)');
  const { ClickHouseCodes } = await import('../../retrieval/clickhouse/search.js');
  const remote = await ClickHouseCodes.open(o.clickhouse, o.table);
  try {
    const q = await queryCodes(o, images, remote.bits, `table ${o.table}`);
    const bar = progressFor('search', q.count * remote.count, q.count, 'queries');
    const r = await remote.search(q, o.topk, { ...(bar.progress && { progress: bar.progress }) });
    bar.finish();
    return { ...r, idAt: (slot) => r.ids[slot]! };
  } finally {
    await remote.close();
  }
}

export function registerSearch(program: Command): void {
  program
    .command('search')
    .description('top-K database items per query by Hamming distance (ties by database index), with their distances')
    .argument('[images...]', 'query images (with --model)')
    .option('--db <codes>', 'database code store')
    .option('--clickhouse <url>', "search a ClickHouse table instead of --db: the server's HTTP interface, e.g. http://127.0.0.1:8123")
    .option('--table <name>', 'with --clickhouse: the table fgh codes push wrote, or a Distributed table over such tables')
    .option('--model <file.onnx>', 'encode the query images with this exported model')
    .option('--query-codes <file>', 'query codes: .npy (packed uint8, ±1 float, {0,1}) or a code store')
    .requiredOption('--topk <k>', 'results per query', positiveInt('--topk'))
    .option('--layout <l>', 'how .npy uint8 query codes are laid out: auto, packed, bits', codeLayout)
    .option('--threads <n>', 'most threads to use (default: all cores, for large jobs)', positiveInt('--threads'))
    .option('--json', 'print one JSON object on stdout')
    .action(async (images: string[], o: SearchOpts) => {
      if ((o.db === undefined) === (o.clickhouse === undefined)) throw new FghError('give either --db CODES or --clickhouse URL --table T');
      if (o.table !== undefined && o.clickhouse === undefined) throw new FghError('--table goes with --clickhouse URL');
      if ((o.model === undefined) === (o.queryCodes === undefined)) throw new FghError('give either --model FILE.onnx IMAGE... or --query-codes FILE');
      if (o.model !== undefined && images.length === 0) throw new FghError('--model needs one or more query IMAGE arguments');
      if (o.model === undefined && images.length) throw new FghError(`image arguments need --model (got ${images.length} with --query-codes)`);
      const r = o.db !== undefined ? await searchLocal({ ...o, db: o.db }, images) : await searchClickHouse({ ...o, clickhouse: o.clickhouse! }, images);
      if (o.json) {
        const results = [];
        for (let i = 0; i < r.queries; i++) {
          const slots = Array.from({ length: r.k }, (_, e) => i * r.k + e);
          results.push({ query: i, ids: slots.map(r.idAt), indices: slots.map((s) => r.indices[s]!), distances: slots.map((s) => r.distances[s]!) });
        }
        process.stdout.write(`${JSON.stringify({ results })}\n`);
        return;
      }
      const out: string[] = [];
      for (let i = 0; i < r.queries; i++) {
        out.push(`query ${i}${images[i] !== undefined ? ` (${images[i]})` : ''}:`);
        for (let e = 0; e < r.k; e++) {
          const slot = i * r.k + e;
          out.push(`  ${String(e + 1).padStart(String(r.k).length)}. ${r.idAt(slot)}  distance ${r.distances[slot]}  index ${r.indices[slot]}`);
        }
      }
      process.stdout.write(`${out.join('\n')}\n`);
    });
}
