import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { at, FghError } from '../../util/errors.js';
import type { Dataset, DatasetName, LoadOptions, Sample, SplitName } from '../types.js';

/** Shared parsing for metadata files: every problem becomes a one-line `file:line: ...` error. */

export interface Line {
  /** 1-based line number. */
  n: number;
  text: string;
}

/** The non-empty lines of a metadata file under the dataset root. */
export function readLines(root: string, rel: string): Line[] {
  const file = path.join(root, rel);
  if (!existsSync(file)) throw new FghError(`${file}: missing metadata file`);
  const text = readFileSync(file, 'utf8');
  const out: Line[] = [];
  text.split(/\r?\n/).forEach((t, i) => {
    if (t.trim() !== '') out.push({ n: i + 1, text: t.trim() });
  });
  return out;
}

/** `<first> <rest of the line>`; the rest may contain spaces (variant and class names do). */
export function twoFields(file: string, l: Line, expected: string): [string, string] {
  const m = /^(\S+)\s+(.+)$/.exec(l.text);
  if (!m) throw new FghError(`${at(file, l.n)}: expected "${expected}", got "${l.text}"`);
  return [m[1]!, m[2]!];
}

export function positiveInt(file: string, l: Line, s: string, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(s) || Number(s) < 1 || Number(s) > max) {
    throw new FghError(`${at(file, l.n)}: ${what} must be an integer in 1..${max === Number.MAX_SAFE_INTEGER ? 'N' : max}, got "${s}"`);
  }
  return Number(s);
}

/** Maps `<id> <value>` lines to a Map, refusing duplicates. */
export function idMap(root: string, rel: string, expected: string): Map<string, { value: string; line: number }> {
  const m = new Map<string, { value: string; line: number }>();
  for (const l of readLines(root, rel)) {
    const [id, value] = twoFields(rel, l, expected);
    if (m.has(id)) throw new FghError(`${at(rel, l.n)}: duplicate id ${id} (first on line ${m.get(id)!.line})`);
    m.set(id, { value, line: l.n });
  }
  return m;
}

/**
 * Existence checks with one readdir per directory (cached), so a dataset of 100k images is
 * checked in well under a second instead of 100k stat calls.
 */
export class FileIndex {
  private readonly dirs = new Map<string, Set<string> | null>();
  has(file: string): boolean {
    const dir = path.dirname(file);
    let entries = this.dirs.get(dir);
    if (entries === undefined) {
      try {
        entries = new Set(readdirSync(dir));
      } catch {
        entries = null;
      }
      this.dirs.set(dir, entries);
    }
    return entries !== null && entries.has(path.basename(file));
  }
}

/** Collects samples and applies the missing-image policy. */
export class DatasetBuilder {
  readonly dataset: Dataset;
  private readonly files = new FileIndex();
  constructor(
    name: DatasetName,
    private readonly opts: LoadOptions,
    classes: string[] = [],
  ) {
    this.dataset = { name, root: path.resolve(opts.root), classes, splits: {}, warnings: [], skipped: [] };
  }

  add(split: SplitName, rel: string, labels: number[], id: string, source: string): void {
    const file = path.join(this.dataset.root, rel);
    if (this.opts.checkFiles !== false && !this.files.has(file)) {
      if (!this.opts.skipBadImages) throw new FghError(`${source}: image not found: ${file}`);
      this.dataset.skipped.push({ path: file, source, reason: 'not found' });
      return;
    }
    const s: Sample = { path: file, labels, id, source };
    (this.dataset.splits[split] ??= []).push(s);
  }

  /** Warns (never fails) when counts differ from the canonical ones: users subset datasets. */
  expect(canonical: { classes: number; train: number; test: number; val?: number }): Dataset {
    const d = this.dataset;
    const got = { classes: d.classes.length, train: d.splits.train?.length ?? 0, test: d.splits.test?.length ?? 0, val: d.splits.val?.length ?? 0 };
    for (const k of ['classes', 'train', 'test', 'val'] as const) {
      const want = canonical[k];
      if (want !== undefined && got[k] !== want) d.warnings.push(`${d.name}: ${got[k]} ${k === 'classes' ? 'classes' : `${k} images`}, the canonical dataset has ${want}`);
    }
    if (d.skipped.length > 0) d.warnings.push(`${d.name}: skipped ${d.skipped.length} missing image(s)`);
    return d;
  }
}

export function requireDir(root: string): void {
  if (!existsSync(root)) throw new FghError(`${root}: dataset root not found`);
}
