/**
 * The ClickHouse side of fgh's codes: the table layout and the SQL that searches it. Written for
 * the functions both Debian's ClickHouse 18.16 and current releases have. 18.16 has no bitCount
 * (nor bitHammingDistance), so a word's population count is the classic SWAR sum of bitAnd,
 * bitShiftRight, + and * on UInt64, which wrap modulo 2^64 in every release.
 *
 * Table: item UInt64 (the store index), id String, labels Array(UInt32) (class ids: one for single
 * labels, the members for multi-hot, none for unlabelled), bits UInt16 DEFAULT <bits> (the code
 * length, read back from the schema), w0..w{W-1} UInt64 with W = ceil(bits / 64). Word w is the
 * little-endian reading of bytes 8w..8w+7 of the store's in-memory code (codes of <= 32 bits: the
 * little-endian UInt32 of their 4 bytes), so a code's bits are those of `fgh codes export`'s
 * packed bytes, regrouped; padding bits are zero and never count.
 */
import { FghError } from '../../util/errors.js';
import type { Codes } from '../codes.js';
import type { Labels } from '../labels.js';

/** Most rows one INSERT carries: below max_insert_block_size (1,048,576), so a MergeTree takes it whole or not at all. */
export const MAX_INSERT_ROWS = 1_000_000;

export function wordsFor(bits: number): number {
  return Math.ceil(bits / 64);
}

export function wordColumns(bits: number): string[] {
  return Array.from({ length: wordsFor(bits) }, (_, w) => `w${w}`);
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `db.table` or `table`, checked and quoted; anything else is refused rather than escaped. */
export function quoteTable(table: string): string {
  const parts = table.split('.');
  if (parts.length > 2 || !parts.every((p) => IDENT.test(p))) throw new FghError(`--table ${JSON.stringify(table)}: give a table name (letters, digits, _), optionally as database.table`);
  return parts.map((p) => `\`${p}\``).join('.');
}

/** The database and name of `table` for system-table lookups (currentDatabase() when none is given). */
export function tableWhere(table: string): string {
  quoteTable(table);
  const parts = table.split('.');
  const db = parts.length === 2 ? `'${parts[0]}'` : 'currentDatabase()';
  return `database = ${db} AND name = '${parts[parts.length - 1]}'`;
}

/** CREATE TABLE for `bits`-bit codes: a ReplacingMergeTree by item, or any other ENGINE clause (e.g. Distributed(...)). */
export function createTableSql(table: string, bits: number, engine = 'ReplacingMergeTree ORDER BY item'): string {
  const words = wordColumns(bits).map((w) => `${w} UInt64`);
  return `CREATE TABLE IF NOT EXISTS ${quoteTable(table)} (item UInt64, id String, labels Array(UInt32), bits UInt16 DEFAULT ${bits}, ${words.join(', ')}) ENGINE = ${engine}`;
}

export interface ColumnInfo {
  name: string;
  type: string;
  default_type: string;
  default_expression: string;
}

/** The code length a table's schema (DESCRIBE TABLE) records, or why the table is not an fgh codes table. */
export function bitsOfSchema(table: string, columns: ColumnInfo[]): number {
  const bad = (why: string) => new FghError(`table ${table} is not an fgh codes table (${why}); push to a new --table`);
  const byName = new Map(columns.map((c) => [c.name, c]));
  const bitsCol = byName.get('bits');
  const m = bitsCol && /(\d+)/.exec(bitsCol.default_expression);
  if (!bitsCol || bitsCol.default_type !== 'DEFAULT' || !m) throw bad('no column bits UInt16 DEFAULT <code length>');
  const bits = Number(m[1]);
  const want: Array<[string, string]> = [['item', 'UInt64'], ['id', 'String'], ['labels', 'Array(UInt32)'], ['bits', 'UInt16'], ...wordColumns(bits).map((w): [string, string] => [w, 'UInt64'])];
  for (const [name, type] of want) {
    const c = byName.get(name);
    if (!c) throw bad(`no column ${name}`);
    if (c.type !== type) throw bad(`column ${name} is ${c.type}, not ${type}`);
  }
  if (columns.length !== want.length) throw bad(`${columns.length} columns where ${bits}-bit codes have ${want.length}`);
  return bits;
}

/** Code `i`'s words as decimal strings (UInt64 does not fit a JavaScript number). */
export function codeWords(codes: Codes, i: number): string[] {
  const dv = new DataView(codes.data.buffer, codes.data.byteOffset + i * codes.stride, codes.stride);
  if (codes.stride === 4) return [String(dv.getUint32(0, true))];
  return Array.from({ length: wordsFor(codes.bits) }, (_, w) => dv.getBigUint64(w * 8, true).toString());
}

/** Item `i`'s class ids as a ClickHouse array literal. */
export function labelArray(labels: Labels | null, i: number): string {
  if (!labels) return '[]';
  if (labels.kind === 'single') return labels.ids[i]! >= 0 ? `[${labels.ids[i]}]` : '[]';
  const out: number[] = [];
  for (let c = 0; c < labels.numClasses; c++) if ((labels.sets[i * labels.words + (c >> 5)]! >>> (c & 31)) & 1) out.push(c);
  return `[${out.join(',')}]`;
}

/** A string as a TabSeparated field. */
export function tsvField(s: string): string {
  return s.replace(/[\\\t\n\r\0]/g, (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r', '\0': '\\0' })[c]!);
}

/** Rows [start, end) of a store chunk as TabSeparated lines for the columns of `insertColumns`. */
export function tsvRows(codes: Codes, labels: Labels | null, ids: string[], first: number, items: Iterable<number>): string {
  const lines: string[] = [];
  for (const i of items) lines.push(`${first + i}\t${tsvField(ids[i]!)}\t${labelArray(labels, i)}\t${codeWords(codes, i).join('\t')}\n`);
  return lines.join('');
}

export function insertColumns(bits: number): [string, ...string[]] {
  return ['item', 'id', 'labels', ...wordColumns(bits)];
}

const M1 = '6148914691236517205'; // 0x5555555555555555
const M2 = '3689348814741910323'; // 0x3333333333333333
const M4 = '1085102592571150095'; // 0x0f0f0f0f0f0f0f0f
const H01 = '72340172838076673'; // 0x0101010101010101

/**
 * The Hamming distance between column words w* and a query's words, as a UInt64 SQL expression.
 * Per word: 2-, 4- then 8-bit partial counts (each byte <= 8); the byte counts of up to 3 words
 * are added (each byte <= 24, their total <= 192 < 256) and summed by one multiply by 0x0101...
 * and a shift by 56. Inline aliases (x0, a0, b0) keep the text linear in the words.
 */
export function hammingSql(queryWords: string[]): string {
  const bytes = queryWords.map((v, w) => {
    const a = `bitAnd((bitXor(w${w}, ${v}) AS x${w}), ${M1}) + bitAnd(bitShiftRight(x${w}, 1), ${M1})`;
    const b = `bitAnd(((${a}) AS a${w}), ${M2}) + bitAnd(bitShiftRight(a${w}, 2), ${M2})`;
    return `bitAnd(((${b}) AS b${w}) + bitShiftRight(b${w}, 4), ${M4})`;
  });
  const groups: string[] = [];
  for (let g = 0; g < bytes.length; g += 3) groups.push(`bitShiftRight((${bytes.slice(g, g + 3).join(' + ')}) * ${H01}, 56)`);
  return groups.join(' + ');
}

/** One query's top-K: its index, then (item, id, d) by distance and item. */
export function topKSql(table: string, query: number, queryWords: string[], k: number): string {
  return `SELECT ${query} AS q, item, id, ${hammingSql(queryWords)} AS d FROM ${quoteTable(table)} ORDER BY d, item LIMIT ${k}`;
}

/** Below ClickHouse's max_query_size (262,144 bytes by default in every release). */
export const MAX_STATEMENT_BYTES = 200_000;

/** Several queries' top-K in one statement (UNION ALL of one sorted, limited SELECT each). */
export function unionSql(parts: string[]): string {
  return parts.map((p) => `SELECT * FROM (${p})`).join(' UNION ALL ');
}
