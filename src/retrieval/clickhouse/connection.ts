/**
 * A connection to a ClickHouse server through the official client (@clickhouse/client, HTTP).
 * It talks to 18.16 as to current servers as long as fgh sends neither query parameters (added in
 * 19.x) nor formats 18.16 lacks; fgh's SQL carries only numbers it formats itself and checked
 * identifiers. Errors become one line naming the URL (the client's own log, which would print
 * them with a stack, is off).
 */
import { Readable } from 'node:stream';
import { ClickHouseLogLevel, createClient, type ClickHouseClient, type ClickHouseSettings } from '@clickhouse/client';
import { FghError, errorMessage } from '../../util/errors.js';

/**
 * Long statements (a search of many queries over a large table) must not time out; progress
 * headers every 30 s keep an idle connection (a proxy, a load balancer) from being cut meanwhile,
 * as the client's documentation advises (Node's 16 KiB header limit holds about two hours of them).
 * A connection per request: servers before 23.11 close idle connections after 3 s, and a client
 * busy building a large INSERT (or on a loaded machine) would write into one they had closed
 * (EPIPE, "socket hang up"); fgh's requests are few and large, so a fresh connection costs nothing.
 */
const REQUEST_TIMEOUT_MS = 3_600_000;
const PROGRESS_SETTINGS = { send_progress_in_http_headers: 1, http_headers_progress_interval_ms: '30000' } as const;

export class ClickHouse {
  private readonly client: ClickHouseClient;

  /** The URL without its password, for messages. */
  readonly url: string;

  constructor(url: string) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new FghError(`--clickhouse: not a URL (e.g. http://127.0.0.1:8123)`);
    }
    if (parsed.password) parsed.password = '***';
    this.url = parsed.toString().replace(/\/$/, '');
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new FghError(`--clickhouse ${this.url}: give the HTTP interface's http:// or https:// URL`);
    this.client = createClient({ url, request_timeout: REQUEST_TIMEOUT_MS, clickhouse_settings: PROGRESS_SETTINGS, log: { level: ClickHouseLogLevel.OFF }, keep_alive: { enabled: false } });
  }

  private fail(e: unknown, what: string): never {
    const first = errorMessage(e).split('\n')[0]!.replace(/, e\.what\(\) = .*$/, '');
    throw new FghError(`ClickHouse at ${this.url}: ${what}: ${first}`, { cause: e });
  }

  /** Rows of a SELECT as objects (UInt64 values come as strings). */
  async rows<T>(sql: string, what: string, settings: ClickHouseSettings = {}): Promise<T[]> {
    try {
      const r = await this.client.query({ query: sql, format: 'JSONEachRow', clickhouse_settings: settings });
      return await r.json<T>();
    } catch (e) {
      this.fail(e, what);
    }
  }

  async command(sql: string, what: string): Promise<void> {
    try {
      await this.client.command({ query: sql });
    } catch (e) {
      this.fail(e, what);
    }
  }

  /** INSERT of TabSeparated text, under a chosen query id (ClickHouse refuses a second running query with the same id). */
  async insertTsv(table: string, columns: [string, ...string[]], tsv: string, queryId: string, settings: ClickHouseSettings): Promise<void> {
    try {
      await this.client.insert({ table, columns, format: 'TabSeparated', values: Readable.from([Buffer.from(tsv)], { objectMode: false }), query_id: queryId, clickhouse_settings: settings });
    } catch (e) {
      this.fail(e, `inserting into ${table}`);
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
