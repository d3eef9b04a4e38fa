/**
 * One writer at a time: an exclusive lock file `TARGET.lock` next to what a command appends to or
 * resumes (a code store, a training run). It holds the holder's pid, so that a second writer is
 * refused with a line naming it, and a lock left by a killed process (its pid no longer running)
 * is taken over instead of blocking the user for ever. Locks are reentrant within a process.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, linkSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { processAlive } from './atomic.js';
import { FghError } from './errors.js';
import { describeFsProblem, isErrnoError, makeDirSync } from './fs-errors.js';

interface LockInfo {
  pid: number;
  host: string;
  since: string;
  what: string;
  token: string;
}

export const lockPath = (target: string): string => `${target}.lock`;

/** Held by this process: lock path -> [token, depth]. */
const held = new Map<string, { token: string; depth: number }>();

function readLock(file: string): { raw: string; info: LockInfo | null } | null {
  let raw: string;
  try {
    raw = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    const info = JSON.parse(raw) as LockInfo;
    return { raw, info: Number.isInteger(info.pid) ? info : null };
  } catch {
    // Killed between creating and writing it: an empty or partial lock.
    return { raw, info: null };
  }
}

/** Errors of file systems without hard links (the lock is then created, then written). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV']);

/**
 * Creates the lock file with its content in one step, or throws EEXIST: the content is written
 * under a name of its own and hard-linked into place, so no other writer ever reads the lock
 * empty (one that did could only be refused without the holder's name). Where the file system
 * has no hard links, the file is created exclusively and then written.
 */
function createLockFile(file: string, content: string): void {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, content, { flag: 'wx' });
  try {
    linkSync(tmp, file);
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (!NO_HARD_LINKS.has(code)) throw e;
  } finally {
    rmSync(tmp, { force: true });
  }
  const fd = openSync(file, 'wx');
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
}

/**
 * Takes the lock on `target` for `what` (e.g. "fgh encode"); returns its release. Throws an
 * FghError naming the holder when another live process has it.
 */
export function acquireLock(target: string, what: string): () => void {
  const file = lockPath(target);
  const mine = held.get(file);
  if (mine) {
    mine.depth++;
    return () => release(file, mine.token);
  }
  const info: LockInfo = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), what, token: randomBytes(8).toString('hex') };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      createLockFile(file, JSON.stringify(info));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // A new store in a folder still to be made: the writer would make it anyway.
      if (code === 'ENOENT' && attempt === 0) {
        try {
          makeDirSync(path.dirname(path.resolve(file)));
        } catch (m) {
          throw new FghError(`${target}: cannot take the writer's lock ${file} (${isErrnoError(m) ? describeFsProblem(m) : String(m)})`);
        }
        continue;
      }
      if (code !== 'EEXIST') throw new FghError(`${target}: cannot take the writer's lock ${file} (${isErrnoError(e) ? describeFsProblem(e) : String(e)})`);
      const other = readLock(file);
      if (!other) continue; // released meanwhile
      const o = other.info;
      // A lock from another host cannot be checked: respect it.
      if (o && (o.host !== info.host || processAlive(o.pid)) && o.pid !== process.pid) {
        throw new FghError(`${target} is in use by ${o.what} (pid ${o.pid}${o.host !== info.host ? ` on ${o.host}` : ''}, since ${o.since}): one writer at a time; if no such process runs, delete ${file}`);
      }
      if (!o && Date.now() - safeMtime(file) < 10_000) {
        throw new FghError(`${target} is in use (${file} is being created): one writer at a time`);
      }
      // Stale: remove it unless it changed since we read it (another process took it over).
      const again = readLock(file);
      if (again && again.raw === other.raw) rmSync(file, { force: true });
      continue;
    }
    held.set(file, { token: info.token, depth: 1 });
    return () => release(file, info.token);
  }
  throw new FghError(`${target}: could not take the writer's lock ${file}: it keeps changing hands`);
}

function safeMtime(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

function release(file: string, token: string): void {
  const mine = held.get(file);
  if (!mine || mine.token !== token) return;
  if (--mine.depth > 0) return;
  held.delete(file);
  const cur = readLock(file);
  if (cur?.info?.token === token) rmSync(file, { force: true });
}

/** Runs `work` holding the lock on `target`. */
export async function withLock<T>(target: string, what: string, work: () => Promise<T>): Promise<T> {
  const unlock = acquireLock(target, what);
  try {
    return await work();
  } finally {
    unlock();
  }
}
