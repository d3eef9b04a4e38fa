import { randomBytes } from 'node:crypto';
import { promises as fsp, writeFileSync, renameSync, rmSync, openSync, fsyncSync, closeSync } from 'node:fs';
import path from 'node:path';

/** A sibling temporary name, so that the final rename stays on one file system. */
export function tempNameFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Writes a file atomically: readers see the old file or the complete new one, never a
 * half-written file, even if the process is killed midway.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  await fsp.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = tempNameFor(file);
  try {
    const fh = await fsp.open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
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
    rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Runs `produce` with a temporary path, then renames it into place; for writers that need a
 * path of their own (streams, native libraries). The temporary file is removed on failure.
 */
export async function withAtomicPath<T>(file: string, produce: (tmp: string) => Promise<T>): Promise<T> {
  await fsp.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = tempNameFor(file);
  try {
    const result = await produce(tmp);
    await fsp.rename(tmp, file);
    return result;
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}
