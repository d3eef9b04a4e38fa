/**
 * Top-K by Hamming distance inside ClickHouse: the same results as the local search (ties by item
 * index), computed by the server or, through a Distributed table, by every shard on its part and
 * merged by the one we talk to. Queries go several to a statement (a UNION ALL of one sorted,
 * limited SELECT each), as many as fit the server's query size limit.
 */
import { FghError } from '../../util/errors.js';
import type { Codes } from '../codes.js';
import { ClickHouse } from './connection.js';
import { tableBits } from './push.js';
import { MAX_STATEMENT_BYTES, codeWords, quoteTable, topKSql, unionSql } from './sql.js';

export interface RemoteSearchResult {
  /** Results per query: min(K, table size). */
  k: number;
  queries: number;
  /** [queries, k] item indices, by (distance, index). */
  indices: Float64Array;
  distances: Int32Array;
  /** [queries * k] item ids. */
  ids: string[];
}

export interface RemoteSearchOptions {
  /** Most queries in one statement (default 64). */
  perStatement?: number;
  progress?: (done: number, total: number) => void;
}

export class ClickHouseCodes {
  private constructor(
    private readonly ch: ClickHouse,
    readonly table: string,
    readonly bits: number,
    readonly count: number,
  ) {}

  static async open(url: string, table: string): Promise<ClickHouseCodes> {
    quoteTable(table);
    const ch = new ClickHouse(url);
    try {
      const bits = await tableBits(ch, table);
      const r = await ch.rows<{ n: string }>(`SELECT count() AS n FROM ${quoteTable(table)}`, `counting ${table}`);
      return new ClickHouseCodes(ch, table, bits, Number(r[0]!.n));
    } catch (e) {
      await ch.close();
      throw e;
    }
  }

  async search(queries: Codes, topk: number, opts: RemoteSearchOptions = {}): Promise<RemoteSearchResult> {
    if (queries.bits !== this.bits) throw new Error(`search: ${queries.bits}-bit queries for ${this.bits}-bit codes`);
    const k = Math.min(topk, this.count);
    const n = queries.count;
    const indices = new Float64Array(n * k);
    const distances = new Int32Array(n * k);
    const ids = new Array<string>(n * k).fill('');
    const most = opts.perStatement ?? 64;
    for (let q0 = 0; q0 < n && k > 0; ) {
      const parts: string[] = [];
      let bytes = 0;
      let q = q0;
      while (q < n && parts.length < most) {
        const sql = topKSql(this.table, q, codeWords(queries, q), k);
        if (parts.length && bytes + sql.length > MAX_STATEMENT_BYTES) break;
        parts.push(sql);
        bytes += sql.length + 30;
        q++;
      }
      const rows = await this.ch.rows<{ q: number; item: string; id: string; d: string }>(unionSql(parts), `searching ${this.table}`);
      const got = new Map<number, Array<{ item: number; id: string; d: number }>>();
      for (const r of rows) {
        const list = got.get(Number(r.q)) ?? [];
        list.push({ item: Number(r.item), id: r.id, d: Number(r.d) });
        got.set(Number(r.q), list);
      }
      for (let i = q0; i < q; i++) {
        const list = (got.get(i) ?? []).sort((a, b) => a.d - b.d || a.item - b.item);
        if (list.length !== k) throw new FghError(`ClickHouse at ${this.ch.url}: ${this.table} returned ${list.length} results for query ${i}, expected ${k} (is the table being written?)`);
        list.forEach((e, j) => {
          if (j > 0 && list[j - 1]!.item === e.item) throw new FghError(`table ${this.table} holds item ${e.item} twice (an interrupted push?); run fgh codes push again, or OPTIMIZE TABLE ... FINAL on its ReplacingMergeTree tables`);
          indices[i * k + j] = e.item;
          distances[i * k + j] = e.d;
          ids[i * k + j] = e.id;
        });
      }
      opts.progress?.(q, n);
      q0 = q;
    }
    return { k, queries: n, indices, distances, ids };
  }

  async close(): Promise<void> {
    await this.ch.close();
  }
}
