/**
 * Real ClickHouse servers for the tests, from Debian's clickhouse-server package: each one a
 * process of its own, on free loopback ports, with its config, data and logs in a temporary
 * folder, killed (SIGKILL, its whole process group) when the test file ends. The system service,
 * if any, is never used.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { requireReference } from './python.js';

export const CLICKHOUSE_PACKAGE = 'clickhouse-server';

/** The server program: clickhouse-server, or the single clickhouse binary's `server` mode. */
export function clickhouseServerCommand(): string[] | null {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin'].filter(Boolean);
  for (const d of dirs) if (existsSync(path.join(d, 'clickhouse-server'))) return [path.join(d, 'clickhouse-server')];
  for (const d of dirs) if (existsSync(path.join(d, 'clickhouse'))) return [path.join(d, 'clickhouse'), 'server'];
  return null;
}

/** The server command, or null with a skip message; under CI=true a missing server fails the file. */
export function referenceClickHouse(): string[] | null {
  const cmd = clickhouseServerCommand();
  requireReference(cmd !== null, `ClickHouse server (Debian: apt-get install ${CLICKHOUSE_PACKAGE})`);
  return cmd;
}

export const missingClickHouseMessage = `skipped: needs a ClickHouse server (Debian: apt-get install ${CLICKHOUSE_PACKAGE})`;

/** Distinct free loopback ports (held open together, so that none is handed out twice). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<net.Server>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export interface ServerPorts {
  http: number;
  tcp: number;
}

export interface ClickHouseServer extends ServerPorts {
  url: string;
  dir: string;
  stop(): void;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) killTree(p);
});

function killTree(p: ChildProcess): void {
  try {
    process.kill(-p.pid!, 'SIGKILL');
  } catch {
    // already gone
  }
}

function configXml(dir: string, ports: ServerPorts, clusters: Record<string, ServerPorts[]>): string {
  const remote = Object.entries(clusters)
    .map(([name, shards]) => `<${name}>${shards.map((s) => `<shard><replica><host>127.0.0.1</host><port>${s.tcp}</port></replica></shard>`).join('')}</${name}>`)
    .join('');
  return `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>${dir}/server.log</log><errorlog>${dir}/server.err.log</errorlog><size>10M</size><count>1</count></logger>
  <http_port>${ports.http}</http_port>
  <tcp_port>${ports.tcp}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <user_files_path>${dir}/user_files/</user_files_path>
  <format_schema_path>${dir}/format_schemas/</format_schema_path>
  <users_config>${dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <remote_servers>${remote}</remote_servers>
</yandex>
`;
}

const USERS_XML = `<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
`;

/**
 * Starts a server in `dir` on `ports`; `clusters` names the remote_servers (shards by their ports)
 * its Distributed tables may use. Resolves once /ping answers.
 */
export async function startClickHouse(command: string[], dir: string, ports: ServerPorts, clusters: Record<string, ServerPorts[]> = {}): Promise<ClickHouseServer> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.xml'), configXml(dir, ports, clusters));
  writeFileSync(path.join(dir, 'users.xml'), USERS_XML);
  const child = spawn(command[0]!, [...command.slice(1), `--config-file=${path.join(dir, 'config.xml')}`], { cwd: dir, detached: true, stdio: 'ignore' });
  live.add(child);
  let exited: number | null | undefined;
  child.once('exit', (code) => {
    exited = code;
  });
  const url = `http://127.0.0.1:${ports.http}`;
  const stop = () => {
    killTree(child);
    live.delete(child);
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const r = await fetch(`${url}/ping`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (exited !== undefined || Date.now() > deadline) {
      stop();
      const log = path.join(dir, 'server.err.log');
      const tail = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').slice(-3).join(' | ') : '';
      throw new Error(`clickhouse-server in ${dir} ${exited !== undefined ? `exited (${exited})` : 'did not answer within 60 s'}: ${tail}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { ...ports, url, dir, stop };
}

/** One statement over HTTP; throws with the server's message. */
export async function sql(server: { url: string }, statement: string): Promise<string> {
  const r = await fetch(`${server.url}/`, { method: 'POST', body: statement });
  const text = await r.text();
  if (!r.ok) throw new Error(`ClickHouse: ${text.trim()}`);
  return text;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
