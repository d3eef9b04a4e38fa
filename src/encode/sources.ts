import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { loadDataset, split, type SplitSelector } from '../data/datasets/index.js';
import type { DatasetName, Sample } from '../data/types.js';
import { FghError } from '../util/errors.js';

/** What to encode: a dataset split, or every image under a folder (no labels). */
export type EncodeSource =
  | { kind: 'dataset'; dataset: DatasetName; root: string; split: SplitSelector }
  | { kind: 'images'; dir: string };

export interface SourceItems {
  samples: Sample[];
  /** Class count when the items have labels, else null. */
  classes: number | null;
  /** Human description, also recorded to check that a resume encodes the same thing. */
  describe: string;
  warnings: string[];
  /** Declared items whose image file is missing (dropped before encoding). */
  missing: Array<{ path: string; reason: string }>;
}

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff', '.gif', '.avif']);

/** Every image file under `dir`, depth first in sorted order; ids are POSIX relative paths. */
export function listImageTree(dir: string): Sample[] {
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw new FghError(`${dir}: no such directory`);
  }
  if (!st.isDirectory()) throw new FghError(`${dir}: not a directory`);
  const out: Sample[] = [];
  const walk = (rel: string): void => {
    const entries = readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else if (e.isFile() && IMAGE_EXT.has(path.extname(e.name).toLowerCase())) out.push({ path: path.join(dir, r), labels: [], id: r });
    }
  };
  walk('');
  return out;
}

export function resolveSource(src: EncodeSource, opts: { skipBadImages?: boolean } = {}): SourceItems {
  if (src.kind === 'images') {
    const samples = listImageTree(src.dir);
    if (samples.length === 0) throw new FghError(`${src.dir}: no image files (${[...IMAGE_EXT].join(' ')})`);
    return { samples, classes: null, describe: `images ${path.resolve(src.dir)}`, warnings: [], missing: [] };
  }
  const d = loadDataset(src.dataset, { root: src.root, skipBadImages: opts.skipBadImages ?? true });
  return {
    samples: split(d, src.split),
    classes: d.classes.length,
    describe: `${src.dataset} ${path.resolve(src.root)} ${src.split}`,
    warnings: d.warnings,
    missing: d.skipped.map((s) => ({ path: s.path, reason: s.source ? `not found (declared at ${s.source})` : 'not found' })),
  };
}
