import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Small tmpfs mounts, for full and read-only disks in tests (root only, where permitted). */

function run(cmd: string, args: string[]): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return r.error.message;
  return r.status === 0 ? null : (r.stderr.trim() || `${cmd} exited with ${r.status}`);
}

let probed: string | null | undefined;

/** Why a tmpfs cannot be mounted here, or null when it can (probed once). */
export function tmpfsUnavailable(): string | null {
  if (probed !== undefined) return probed;
  if (process.getuid?.() !== 0) return (probed = 'mounting a tmpfs needs root');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-tmpfs-probe-'));
  const failed = run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
  if (!failed) run('umount', [dir]);
  rmdirSync(dir);
  return (probed = failed ? `cannot mount a tmpfs (${failed})` : null);
}

/** Mounts a tmpfs of `size` (e.g. "1m") on `dir`; returns the unmount. */
export function mountTmpfs(dir: string, size: string): () => void {
  const failed = run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  if (failed) throw new Error(`mount tmpfs on ${dir}: ${failed}`);
  return () => {
    // Lazy: a child process still starting up must not keep the mount (and the test's folder) alive.
    run('umount', ['-l', dir]);
  };
}

export function remountReadOnly(dir: string): void {
  const failed = run('mount', ['-o', 'remount,ro', dir]);
  if (failed) throw new Error(`remount ${dir} read-only: ${failed}`);
}
