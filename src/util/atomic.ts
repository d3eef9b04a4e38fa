import { randomBytes } from 'node:crypto';
import { promises as fsp, writeFileSync, renameSync, rmSync, openSync, fsyncSync, closeSync } from 'node:fs';
import path from 'node:path';
import { explainFsError, isErrnoError, makeDirSync } from './fs-errors.js';

/** A sibling temporary name, so that the final rename stays on one file system. */
export function tempNameFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * A writer's failure as one line about the file it writes: the temporary's name means nothing to
 * the user, and write(2) errors (a full disk) carry no path at all. An error about another file
 * (an input read while producing) keeps its own path.
 */
function aboutTarget(e: unknown, tmp: string, file: string): unknown {
  if (!isErrnoError(e) || e.path === undefined) return explainFsError(e, file);
  const p = path.resolve(e.path);
  const target = path.resolve(file);
  // The target, its temporary, or a folder on its way (mkdir -p).
  const mine = p === target || p === path.resolve(tmp) || target.startsWith(p + path.sep);
  return explainFsError(e, mine ? file : undefined);
}

function removeQuietly(tmp: string): void {
  try {
    rmSync(tmp, { force: true });
  } catch {
    /* the write's own error is what matters */
  }
}

/**
 * Writes a file atomically: readers see the old file or the complete new one, never a
 * half-written file, even if the process is killed midway.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempNameFor(file);
  try {
    makeDirSync(path.dirname(path.resolve(file)));
    const fh = await fsp.open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
  } catch (e) {
    removeQuietly(tmp);
    throw aboutTarget(e, tmp, file);
  }
}

export function writeFileAtomicSync(file: string, data: string | Uint8Array): void {
  const tmp = tempNameFor(file);
  try {
    writeFileSync(tmp, data);
    const fd = openSync(tmp, 'r+');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (e) {
    removeQuietly(tmp);
    throw aboutTarget(e, tmp, file);
  }
}

/**
 * Runs `produce` with a temporary path, then renames it into place; for writers that need a
 * path of their own (streams, native libraries). The temporary file is removed on failure.
 */
export async function withAtomicPath<T>(file: string, produce: (tmp: string) => Promise<T>): Promise<T> {
  const tmp = tempNameFor(file);
  try {
    makeDirSync(path.dirname(path.resolve(file)));
    const result = await produce(tmp);
    await fsp.rename(tmp, file);
    return result;
  } catch (e) {
    removeQuietly(tmp);
    throw aboutTarget(e, tmp, file);
  }
}
