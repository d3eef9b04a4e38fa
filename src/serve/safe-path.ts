import { realpathSync } from 'node:fs';
import path from 'node:path';

/**
 * Maps the still percent-encoded tail of a URL (`a/b%20c.jpg`) to a file inside `root`, or null.
 * Decodes exactly once; refuses NUL, backslashes, absolute paths and any `.`/`..` segment before
 * touching the disk, then checks the resolved real path again so that a symlink cannot lead out.
 * `root` must itself be a real path (see `realRoot`).
 */
export function resolveInside(root: string, encoded: string): string | null {
  let rel: string;
  try {
    rel = decodeURIComponent(encoded);
  } catch {
    return null;
  }
  if (rel === '' || rel.includes('\0') || rel.includes('\\') || rel.startsWith('/') || path.isAbsolute(rel)) return null;
  const segments = rel.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return null;
  const full = path.join(root, ...segments);
  if (!isInside(root, full)) return null;
  let real: string;
  try {
    real = realpathSync(full);
  } catch {
    return null;
  }
  return isInside(root, real) ? real : null;
}

export function isInside(root: string, p: string): boolean {
  const r = root.endsWith(path.sep) ? root : root + path.sep;
  return p.startsWith(r);
}

export function realRoot(dir: string): string {
  return realpathSync(path.resolve(dir));
}
