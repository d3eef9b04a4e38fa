/**
 * `fgh codes push`: a code store into a ClickHouse table, resumable and idempotent.
 *
 * Items go in batches of item ranges [bB, (b+1)B). Before inserting, the table is asked how many
 * distinct items of each range it holds: a full range is skipped, an empty one inserted, and of a
 * partly present one (an insert through a Distributed table that reached one shard before a kill,
 * or a server that kept part of a cut-off body) only the missing items are inserted. So a re-run
 * after a kill inserts nothing twice, whatever the batch size of either run. This holds because
 * what the table shows is all it will ever hold: inserts run with insert_distributed_sync=1 (a
 * Distributed table returns only once every shard has its rows, instead of queueing them), and a
 * push first waits for any insert of an earlier push into the same table still running on the
 * server (found by the query ids fgh gives them). The local tables are ReplacingMergeTree by item,
 * so even two pushes racing each other would leave duplicates only until the next merge.
 */
import { FghError } from '../../util/errors.js';
import { killPoint } from '../../util/test-hooks.js';
import { CodeStoreReader, type StoreChunk } from '../code-store.js';
import { ClickHouse } from './connection.js';
import { MAX_INSERT_ROWS, bitsOfSchema, codeWords, createTableSql, insertColumns, quoteTable, tableWhere, tsvRows, type ColumnInfo } from './sql.js';

export interface PushOptions {
  /** Items per INSERT (default 65,536). */
  batch?: number;
  /** Hears (items done, items) after each batch. */
  progress?: (done: number, total: number, inserted: number) => void;
  /** Longest wait for an earlier push's running insert (default 60 s). */
  waitMs?: number;
}

export interface PushReport {
  table: string;
  bits: number;
  count: number;
  created: boolean;
  inserted: number;
  /** Items already in the table (an earlier, interrupted push). */
  present: number;
  engine: string;
}

const SETTINGS = { insert_distributed_sync: 1 } as const;

function queryIdPrefix(table: string): string {
  return `fgh-push-${table}-`;
}

/** Waits until no insert of an earlier `fgh codes push` into `table` runs on the server. */
async function waitForEarlierPush(ch: ClickHouse, table: string, waitMs: number): Promise<void> {
  const prefix = queryIdPrefix(table);
  const deadline = Date.now() + waitMs;
  for (;;) {
    const running = await ch.rows<{ query_id: string }>(`SELECT query_id FROM system.processes WHERE startsWith(query_id, '${prefix}')`, 'reading system.processes');
    if (running.length === 0) return;
    if (Date.now() > deadline) throw new FghError(`another fgh codes push into ${table} is still inserting on ${ch.url} (query ${running[0]!.query_id}); let it finish or KILL QUERY it, then push again`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function describe(ch: ClickHouse, table: string): Promise<ColumnInfo[]> {
  return ch.rows<ColumnInfo>(`DESCRIBE TABLE ${quoteTable(table)}`, `reading the columns of ${table}`);
}

export async function tableExists(ch: ClickHouse, table: string): Promise<boolean> {
  const r = await ch.rows<{ n: string }>(`SELECT count() AS n FROM system.tables WHERE ${tableWhere(table)}`, 'reading system.tables');
  return Number(r[0]?.n) > 0;
}

export async function tableEngine(ch: ClickHouse, table: string): Promise<string> {
  const r = await ch.rows<{ engine: string }>(`SELECT engine FROM system.tables WHERE ${tableWhere(table)}`, 'reading system.tables');
  if (!r.length) throw new FghError(`ClickHouse at ${ch.url} has no table ${table}`);
  return r[0]!.engine;
}

/** The code length of an existing fgh codes table. */
export async function tableBits(ch: ClickHouse, table: string): Promise<number> {
  if (!(await tableExists(ch, table))) throw new FghError(`ClickHouse at ${ch.url} has no table ${table} (fgh codes push makes one)`);
  return bitsOfSchema(table, await describe(ch, table));
}

/** Distinct items present per batch range. */
async function presentPerRange(ch: ClickHouse, table: string, batch: number): Promise<{ ranges: Map<number, number>; maxItem: number }> {
  const rows = await ch.rows<{ r: string; n: string; top: string }>(`SELECT intDiv(item, ${batch}) AS r, uniqExact(item) AS n, max(item) AS top FROM ${quoteTable(table)} GROUP BY r`, `counting the items in ${table}`);
  const ranges = new Map<number, number>();
  let maxItem = -1;
  for (const row of rows) {
    ranges.set(Number(row.r), Number(row.n));
    maxItem = Math.max(maxItem, Number(row.top));
  }
  return { ranges, maxItem };
}

async function presentItems(ch: ClickHouse, table: string, start: number, end: number): Promise<Set<number>> {
  const rows = await ch.rows<{ item: string }>(`SELECT DISTINCT item FROM ${quoteTable(table)} WHERE item >= ${start} AND item < ${end}`, `reading the items of ${table}`);
  return new Set(rows.map((r) => Number(r.item)));
}

/** Item `item` of the table against the store's, so that a resume into another store's table is refused. */
async function checkSameItem(ch: ClickHouse, table: string, store: string, chunk: StoreChunk, item: number): Promise<void> {
  const words = codeWords(chunk.codes, item - chunk.first);
  const cols = words.map((_, w) => `w${w}`);
  const rows = await ch.rows<Record<string, string>>(`SELECT id, ${cols.join(', ')} FROM ${quoteTable(table)} WHERE item = ${item} LIMIT 1`, `reading item ${item} of ${table}`);
  const row = rows[0];
  if (!row || row.id !== chunk.ids[item - chunk.first] || cols.some((c, w) => row[c] !== words[w])) {
    throw new FghError(`table ${table} holds another item ${item} than ${store} (id ${JSON.stringify(row?.id)}); it was pushed from another store: push to a new --table`);
  }
}

export async function pushCodes(storeFile: string, url: string, table: string, opts: PushOptions = {}): Promise<PushReport> {
  const batch = opts.batch ?? 65536;
  if (!Number.isInteger(batch) || batch < 1 || batch > MAX_INSERT_ROWS) throw new FghError(`--batch must be 1..${MAX_INSERT_ROWS} (one INSERT stays one block), got ${batch}`);
  quoteTable(table);
  const reader = CodeStoreReader.open(storeFile);
  const ch = new ClickHouse(url);
  try {
    const { bits, count } = reader.header;
    let created = false;
    if (!(await tableExists(ch, table))) {
      await ch.command(createTableSql(table, bits), `creating ${table}`);
      created = true;
    }
    const tableBitsNow = bitsOfSchema(table, await describe(ch, table));
    if (tableBitsNow !== bits) throw new FghError(`table ${table} holds ${tableBitsNow}-bit codes, ${storeFile} ${bits}-bit codes`);
    const engine = await tableEngine(ch, table);
    await waitForEarlierPush(ch, table, opts.waitMs ?? 60_000);

    const { ranges, maxItem } = await presentPerRange(ch, table, batch);
    if (maxItem >= count) throw new FghError(`table ${table} holds item ${maxItem}, ${storeFile} has ${count} items: it was pushed from another store: push to a new --table`);
    const present = [...ranges.values()].reduce((a, n) => a + n, 0);
    // The first and the last item present must be the store's (checked when their chunk is read).
    const toCheck = new Set<number>();
    if (maxItem >= 0) {
      const first = await ch.rows<{ m: string }>(`SELECT min(item) AS m FROM ${quoteTable(table)}`, `reading ${table}`);
      toCheck.add(Number(first[0]!.m));
      toCheck.add(maxItem);
    }

    const columns = insertColumns(bits);
    let done = 0;
    let inserted = 0;
    for (const chunk of reader.chunks()) {
      const end = chunk.first + chunk.codes.count;
      for (const item of toCheck) if (item >= chunk.first && item < end) await checkSameItem(ch, table, storeFile, chunk, item);
      for (let start = chunk.first; start < end; ) {
        const r = Math.floor(start / batch);
        const stop = Math.min(end, (r + 1) * batch);
        const rangeSize = Math.min(count, (r + 1) * batch) - r * batch;
        const have = ranges.get(r) ?? 0;
        let items: number[] = [];
        if (have === 0) items = Array.from({ length: stop - start }, (_, j) => start - chunk.first + j);
        else if (have < rangeSize) {
          const there = await presentItems(ch, table, start, stop);
          for (let i = start; i < stop; i++) if (!there.has(i)) items.push(i - chunk.first);
        }
        if (items.length) {
          const tsv = tsvRows(chunk.codes, chunk.labels, chunk.ids, chunk.first, items);
          await ch.insertTsv(table, columns, tsv, `${queryIdPrefix(table)}${start}`, SETTINGS);
          inserted += items.length;
          killPoint('push');
        }
        done += stop - start;
        opts.progress?.(done, count, inserted);
        start = stop;
      }
    }
    const after = await ch.rows<{ n: string; u: string }>(`SELECT count() AS n, uniqExact(item) AS u FROM ${quoteTable(table)}`, `counting the items in ${table}`);
    const [n, u] = [Number(after[0]!.n), Number(after[0]!.u)];
    if (u !== count) throw new FghError(`table ${table} holds ${u} distinct items after the push, ${storeFile} has ${count}`);
    if (n !== u) throw new FghError(`table ${table} holds ${n - u} duplicate rows (another push ran at the same time?); OPTIMIZE TABLE ... FINAL on its ReplacingMergeTree tables removes them`);
    return { table, bits, count, created, inserted, present, engine };
  } finally {
    reader.close();
    await ch.close();
  }
}
