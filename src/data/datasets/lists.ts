import path from 'node:path';
import { existsSync } from 'node:fs';
import { at, FghError } from '../../util/errors.js';
import type { Dataset, DatasetName, LoadOptions, SplitName } from '../types.js';
import { DatasetBuilder, readLines, twoFields, requireDir } from './metadata.js';

/**
 * Datasets described by `<path> <label>` list files (Cars, the sRLH Aircraft layout, the SEMICON
 * Dogs layout, VegFru). Paths are resolved against the first of `bases` where the file exists.
 */
export interface ListSpec {
  name: DatasetName;
  /** Each list's paths are resolved against its `bases`, or the spec's. */
  lists: Array<{ split: SplitName; file: string; bases?: string[] }>;
  bases: string[];
  /** Labels in the files are 1-based (else 0-based). */
  oneBased: boolean;
  canonical: { classes: number; train: number; test: number; val?: number };
  /** Class name from a sample's path, when the dataset has no class list. */
  className?: (rel: string) => string;
}

/** One `<path> <label>` entry of a list, wherever it was read from. */
export interface ListEntry {
  split: SplitName;
  /** The path as written in the list. */
  file: string;
  /** 0-based class id. */
  label: number;
  /** Where the entry was declared, for error messages. */
  source: string;
}

export function loadLists(spec: ListSpec, opts: LoadOptions): Dataset {
  requireDir(opts.root);
  const entries: ListEntry[] = [];
  for (const { split, file } of spec.lists) {
    for (const l of readLines(opts.root, file)) {
      // The label is the last field; paths may contain spaces.
      const m = /^(.+?)\s+(-?\d+)$/.exec(l.text);
      if (!m) throw new FghError(`${at(file, l.n)}: expected "<image path> <label>", got "${l.text}"`);
      const label = Number(m[2]) - (spec.oneBased ? 1 : 0);
      if (label < 0) throw new FghError(`${at(file, l.n)}: label ${m[2]} out of range (labels are ${spec.oneBased ? '1' : '0'}-based)`);
      entries.push({ split, file: m[1]!, label, source: at(file, l.n) });
    }
  }
  return datasetFromEntries(spec, opts, entries);
}

/**
 * The dataset of parsed list entries: each path is resolved against the first of its split's
 * list's bases (one list per split) where the file exists; classes are numbered by label, named by `spec.className` if given.
 */
export function datasetFromEntries(spec: ListSpec, opts: LoadOptions, parsed: ListEntry[]): Dataset {
  const basesOf = new Map(spec.lists.map((l) => [l.split, l.bases ?? spec.bases]));
  let maxLabel = -1;
  const entries = parsed.map((e) => {
    const bases = basesOf.get(e.split) ?? spec.bases;
    maxLabel = Math.max(maxLabel, e.label);
    const base = bases.length === 1 ? bases[0]! : (bases.find((b) => existsSync(path.join(opts.root, b, e.file))) ?? bases[0]!);
    return { split: e.split, rel: path.join(base, e.file), label: e.label, source: e.source };
  });
  const classes = Array.from({ length: maxLabel + 1 }, (_, i) => String(i + (spec.oneBased ? 1 : 0)));
  if (spec.className) for (const e of entries) classes[e.label] = spec.className(e.rel);
  const b = new DatasetBuilder(spec.name, opts, classes);
  for (const e of entries) b.add(e.split, e.rel, [e.label], e.rel, e.source);
  return b.expect(spec.canonical);
}

export function loadCars(opts: LoadOptions): Dataset {
  return loadLists(
    {
      name: 'cars',
      lists: [
        { split: 'train', file: 'train.txt', bases: ['cars_train', ''] },
        { split: 'test', file: 'test.txt', bases: ['cars_test', ''] },
      ],
      bases: [''],
      oneBased: true,
      canonical: { classes: 196, train: 8144, test: 8041 },
    },
    opts,
  );
}

export function loadVegfru(opts: LoadOptions): Dataset {
  return loadLists(
    {
      name: 'vegfru',
      lists: [
        { split: 'train', file: 'vegfru_list/vegfru_train.txt' },
        { split: 'val', file: 'vegfru_list/vegfru_val.txt' },
        { split: 'test', file: 'vegfru_list/vegfru_test.txt' },
      ],
      bases: [''],
      oneBased: false,
      canonical: { classes: 292, train: 29200, val: 14600, test: 116931 },
      className: (rel) => path.basename(path.dirname(rel)),
    },
    opts,
  );
}

/**
 * Stanford Dogs: paths under images/Images, labels 1..120, class names from the `<wnid>-<breed>`
 * folders. `lists` names the list files (the MATLAB layouts reuse this spec with their own files).
 */
export function dogsSpec(lists: [train: string, test: string] = ['train.txt', 'test.txt']): ListSpec {
  return {
    name: 'dogs',
    lists: [
      { split: 'train', file: lists[0] },
      { split: 'test', file: lists[1] },
    ],
    bases: ['images/Images', 'Images', ''],
    oneBased: true,
    canonical: { classes: 120, train: 12000, test: 8580 },
    className: (rel) => path.basename(path.dirname(rel)).replace(/^n\d+-/, ''),
  };
}

/** Stanford Dogs in the SEMICON layout (train.txt/test.txt with paths under images/Images). */
export function loadDogsLists(opts: LoadOptions): Dataset {
  return loadLists(dogsSpec(), opts);
}

/** FGVC-Aircraft: the 2013b variant files, or the sRLH layout (data/train.txt, data/test.txt). */
export function loadAircraft(opts: LoadOptions): Dataset {
  requireDir(opts.root);
  if (existsSync(path.join(opts.root, 'data', 'train.txt'))) {
    return loadLists(
      {
        name: 'aircraft',
        lists: [
          { split: 'train', file: 'data/train.txt' },
          { split: 'test', file: 'data/test.txt' },
        ],
        bases: ['data/images', 'data', ''],
        oneBased: true,
        canonical: { classes: 100, train: 6667, test: 3333 },
      },
      opts,
    );
  }
  const variants = readLines(opts.root, 'data/variants.txt').map((l) => l.text);
  const index = new Map(variants.map((v, i) => [v, i]));
  const b = new DatasetBuilder('aircraft', opts, variants);
  for (const [split, file] of [
    ['train', 'data/images_variant_trainval.txt'],
    ['test', 'data/images_variant_test.txt'],
  ] as const) {
    for (const l of readLines(opts.root, file)) {
      const [id, variant] = twoFields(file, l, '<image id> <variant name>');
      const c = index.get(variant);
      if (c === undefined) throw new FghError(`${at(file, l.n)}: variant "${variant}" is not in data/variants.txt`);
      b.add(split, `data/images/${id}.jpg`, [c], id, at(file, l.n));
    }
  }
  return b.expect({ classes: 100, train: 6667, test: 3333 });
}
