import { closeSync, fstatSync, mkdirSync, openSync, statSync } from 'node:fs';
import path from 'node:path';
import { FghError } from './errors.js';

/**
 * Node's file-system errors ("EISDIR: illegal operation on a directory, read") become one line
 * that names the path and says the problem in words. Some carry no path at all (read(2) and
 * write(2) on a descriptor: EISDIR after opening a directory, ENOSPC), so whoever knows the file
 * passes it in.
 */

export type ErrnoError = NodeJS.ErrnoException & { code: string; dest?: string };

/** An error from a system call (fs, child processes), as opposed to a bug or a library's own error. */
export function isErrnoError(e: unknown): e is ErrnoError {
  if (!(e instanceof Error)) return false;
  const x = e as NodeJS.ErrnoException;
  return typeof x.code === 'string' && /^E[A-Z0-9]+$/.test(x.code) && (typeof x.syscall === 'string' || typeof x.errno === 'number');
}

const PROBLEMS: Record<string, string> = {
  EISDIR: 'is a directory, expected a file',
  ENOSPC: 'no space left on the device (ENOSPC)',
  EDQUOT: 'disk quota exceeded (EDQUOT)',
  EFBIG: 'file too large for the file system (EFBIG)',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOENT: 'no such file or directory',
  ENOTEMPTY: 'directory not empty',
  EMFILE: 'too many open files (EMFILE)',
  ENFILE: 'too many open files in the system (ENFILE)',
  ENAMETOOLONG: 'name too long',
  ELOOP: 'too many levels of symbolic links',
  EIO: 'input/output error (EIO)',
  EBUSY: 'busy (EBUSY)',
  EXDEV: 'on another file system (EXDEV)',
};

function kindOf(p: string): 'dir' | 'file' | null {
  try {
    return statSync(p).isDirectory() ? 'dir' : 'file';
  } catch {
    return null;
  }
}

/** The nearest of `p` and its parents that exists and is not a directory (what ENOTDIR and mkdir's EEXIST are about). */
function fileInTheWay(p: string): string | null {
  for (let q = p; ; q = path.dirname(q)) {
    const k = kindOf(q);
    if (k === 'file') return q;
    if (k === 'dir' || path.dirname(q) === q) return null;
  }
}

/** The problem in words, for `file`; without `file`, the error's own path (or none). */
export function describeFsProblem(e: ErrnoError, file?: string): string {
  const target = file ?? pathOf(e);
  if ((e.code === 'ENOTDIR' || (e.code === 'EEXIST' && e.syscall === 'mkdir')) && target) {
    const blocker = fileInTheWay(target);
    if (blocker === target) return 'is a file, expected a directory';
    if (blocker) return `a parent is a file (${blocker})`;
    if (e.code === 'ENOTDIR') return 'a parent is not a directory';
  }
  if (e.code === 'EEXIST') return 'already exists';
  const words = PROBLEMS[e.code];
  if (words) return words;
  // Node's message is "CODE: what, syscall 'path'": keep the "what".
  const what = /^[A-Z0-9]+: ([^,]+)/.exec(e.message)?.[1];
  return what ? `${what} (${e.code})` : e.code;
}

/** The path an error is about: a rename's destination when that is what is wrong with it. */
function pathOf(e: ErrnoError): string | undefined {
  if (e.syscall === 'rename' && e.dest && (e.code === 'EISDIR' || e.code === 'ENOTEMPTY' || e.code === 'EEXIST' || e.code === 'ENOTDIR')) return e.dest;
  return e.path;
}

/** `file: problem` as an FghError (the error kept as its cause); `file` defaults to the error's own path. */
export function fsError(e: ErrnoError, file?: string): FghError {
  const where = file ?? pathOf(e);
  const problem = describeFsProblem(e, where);
  return new FghError(where ? `${where}: ${problem}` : problem, { cause: e });
}

/** Rethrow helper: an errno error becomes an FghError about `file`; anything else is returned as is. */
export function explainFsError(e: unknown, file?: string): unknown {
  return isErrnoError(e) ? fsError(e, file) : e;
}

/** Runs `work`; an errno error it throws becomes one line about `file`. */
export function aboutFile<T>(file: string, work: () => T): T {
  try {
    return work();
  } catch (e) {
    throw explainFsError(e, file);
  }
}

export async function aboutFileAsync<T>(file: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    throw explainFsError(e, file);
  }
}

/**
 * `mkdir -p` that reports the real problem: Node's recursive mkdir says ENOENT where a parent
 * cannot be created (a read-only or unwritable file system), so that case is retried step by step.
 */
export function makeDirSync(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    if (!isErrnoError(e) || e.code !== 'ENOENT') throw e;
    const parent = path.dirname(dir);
    if (parent === dir) throw e;
    makeDirSync(parent);
    try {
      mkdirSync(dir);
    } catch (again) {
      // Created meanwhile by someone else is fine; a file of that name is not.
      if (!isErrnoError(again) || again.code !== 'EEXIST' || kindOf(dir) !== 'dir') throw again;
    }
  }
}

/**
 * Opens `file` for reading, or fails in one line naming it: "no such file", "is a directory,
 * expected a file" (which open(2) would let through, to fail later at read(2) without a path), or
 * the problem in words.
 */
export function openForReading(file: string): number {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    if (isErrnoError(e) && e.code === 'ENOENT') throw new FghError(`${file}: no such file`, { cause: e });
    throw explainFsError(e, file);
  }
  if (fstatSync(fd).isDirectory()) {
    closeSync(fd);
    throw new FghError(`${file}: ${PROBLEMS.EISDIR}`);
  }
  return fd;
}
