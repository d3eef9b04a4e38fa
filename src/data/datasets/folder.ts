import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { at, FghError } from '../../util/errors.js';
import type { Dataset, LoadOptions, SplitName } from '../types.js';
import { DatasetBuilder, readLines, requireDir } from './metadata.js';

/** torchvision's IMG_EXTENSIONS. */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp'];

export function isImageFile(name: string): boolean {
  return IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase());
}

/** Every image under `dir`, relative paths, sorted (recursive, like ImageFolder). */
function imagesUnder(root: string, rel: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(root, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const r = path.join(rel, e.name);
    if (e.isDirectory()) out.push(...imagesUnder(root, r));
    else if (isImageFile(e.name)) out.push(r);
  }
  return out;
}

/** Samples at this index modulo TEST_EVERY go to test when no lists are given (a 20% split). */
const TEST_EVERY = 5;

/**
 * ImageFolder: one sub-folder per class (sorted names give ids 0..C-1). Optional train.txt and
 * test.txt list relative paths; without them every 5th image of each class (sorted) is a test image.
 */
export function loadFolder(opts: LoadOptions): Dataset {
  requireDir(opts.root);
  const classes = readdirSync(opts.root)
    .filter((d) => statSync(path.join(opts.root, d)).isDirectory())
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (classes.length === 0) throw new FghError(`${opts.root}: no class sub-folders (the folder layout is <root>/<class>/<image>)`);
  const index = new Map(classes.map((c, i) => [c, i]));
  const b = new DatasetBuilder('folder', opts, classes);
  const hasLists = existsSync(path.join(opts.root, 'train.txt')) || existsSync(path.join(opts.root, 'test.txt'));
  if (hasLists) {
    for (const split of ['train', 'test'] as SplitName[]) {
      const file = `${split}.txt`;
      if (!existsSync(path.join(opts.root, file))) throw new FghError(`${path.join(opts.root, file)}: missing (the folder layout needs both train.txt and test.txt, or neither)`);
      for (const l of readLines(opts.root, file)) {
        const rel = path.normalize(l.text);
        const cls = rel.split(path.sep)[0]!;
        const c = index.get(cls);
        if (c === undefined || rel.startsWith('..') || !rel.includes(path.sep)) throw new FghError(`${at(file, l.n)}: "${l.text}" is not <class folder>/<image>`);
        b.add(split, rel, [c], rel, at(file, l.n));
      }
    }
  } else {
    for (const cls of classes) {
      imagesUnder(opts.root, cls).forEach((rel, i) => b.add(i % TEST_EVERY === TEST_EVERY - 1 ? 'test' : 'train', rel, [index.get(cls)!], rel, rel));
    }
    b.dataset.warnings.push(`folder: no train.txt/test.txt, so every ${TEST_EVERY}th image of each class (sorted by name) is a test image`);
  }
  return b.dataset;
}
