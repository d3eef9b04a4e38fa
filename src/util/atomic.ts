import { randomBytes } from 'node:crypto';
import { promises as fsp, writeFileSync, renameSync, readdirSync, rmSync, rmdirSync, openSync, fsyncSync, closeSync, statSync } from 'node:fs';
import path from 'node:path';
import { FghError } from './errors.js';
import { explainFsError, isErrnoError, makeDirSync } from './fs-errors.js';

/** A sibling temporary name, so that the final rename stays on one file system. */
export function tempNameFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/** False only when no process has this pid (EPERM: it runs, as another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes what killed writers of `file` left beside it: temporaries `.NAME.PID.*.tmp` (tempNameFor's,
 * files or folders) whose process no longer runs. A running writer's temporary stays (another fgh at
 * work, or this process). Best effort: what cannot be removed now is left for a later writer.
 * Returns the names removed.
 */
export function removeStaleTemps(file: string): string[] {
  const dir = path.dirname(path.resolve(file));
  const base = path.basename(file).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`^\\.${base}\\.(\\d+)\\.[0-9a-f]+\\.tmp$`);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = Number(pattern.exec(name)?.[1]);
    if (!Number.isSafeInteger(pid) || pid === process.pid || processAlive(pid)) continue;
    try {
      rmSync(path.join(dir, name), { recursive: true, force: true });
      removed.push(name);
    } catch {
      /* a later writer retries */
    }
  }
  return removed;
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
    removeStaleTemps(file);
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
  removeStaleTemps(file);
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
    removeStaleTemps(file);
    const result = await produce(tmp);
    await fsp.rename(tmp, file);
    return result;
  } catch (e) {
    removeQuietly(tmp);
    throw aboutTarget(e, tmp, file);
  }
}

function kindOf(p: string): 'dir' | 'file' | null {
  try {
    return statSync(p).isDirectory() ? 'dir' : 'file';
  } catch {
    return null;
  }
}

/**
 * Fails at once, in one line naming `output`, when nothing can be written in `dir` (read-only,
 * no permission, a file in the way): writers call it before any long work, so that an epoch of
 * training is not lost to a rename at its end. It creates `dir` if needed and a probe file
 * there, then removes both again: the check leaves nothing behind.
 */
export function assertWritableDir(dir: string, output = dir): void {
  const abs = path.resolve(dir);
  let missing: string | null = null; // the outermost folder the check creates
  for (let p = abs; kindOf(p) === null && path.dirname(p) !== p; p = path.dirname(p)) missing = p;
  const probe = path.join(abs, `.fgh-write-probe.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    makeDirSync(abs);
    writeFileSync(probe, '');
    rmSync(probe);
  } catch (e) {
    throw explainFsError(e, output);
  } finally {
    if (missing) {
      for (let p = abs; ; p = path.dirname(p)) {
        try {
          rmdirSync(p);
        } catch {
          break;
        }
        if (p === missing) break;
      }
    }
  }
}

/**
 * The early check for an output that is written beside itself and renamed into place: a file
 * (`kind` "file") or a directory written as a whole (a checkpoint, a dataset). Its folder must be
 * writable and the output itself, if present, of the right kind.
 */
export function assertWritableOutput(output: string, kind: 'file' | 'dir'): void {
  const k = kindOf(output);
  if (k === 'dir' && kind === 'file') throw new FghError(`${output}: is a directory, expected a file`);
  if (k === 'file' && kind === 'dir') throw new FghError(`${output}: is a file, expected a directory`);
  assertWritableDir(path.dirname(path.resolve(output)), output);
}
