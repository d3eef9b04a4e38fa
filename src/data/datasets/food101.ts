import { existsSync } from 'node:fs';
import path from 'node:path';
import { at, FghError } from '../../util/errors.js';
import type { Dataset, LoadOptions } from '../types.js';
import { DatasetBuilder, readLines, requireDir } from './metadata.js';

/** Food-101: meta/classes.txt (or meta/labels.txt), meta/{train,test}.txt of `<class>/<id>`. */
export function loadFood101(opts: LoadOptions): Dataset {
  requireDir(opts.root);
  // labels.txt holds display names ("Apple pie"); the folders use "apple_pie".
  const classFile = existsSync(path.join(opts.root, 'meta', 'classes.txt')) ? 'meta/classes.txt' : 'meta/labels.txt';
  const classes = readLines(opts.root, classFile).map((l) => (classFile.endsWith('labels.txt') ? l.text.toLowerCase().replace(/ /g, '_') : l.text));
  const index = new Map(classes.map((c, i) => [c, i]));
  const b = new DatasetBuilder('food101', opts, classes);
  for (const split of ['train', 'test'] as const) {
    const file = `meta/${split}.txt`;
    for (const l of readLines(opts.root, file)) {
      const m = /^([^/\s]+)\/(\S+)$/.exec(l.text);
      if (!m) throw new FghError(`${at(file, l.n)}: expected "<class>/<image id>", got "${l.text}"`);
      const c = index.get(m[1]!);
      if (c === undefined) throw new FghError(`${at(file, l.n)}: class "${m[1]}" is not in ${classFile}`);
      b.add(split, `images/${l.text}.jpg`, [c], l.text, at(file, l.n));
    }
  }
  return b.expect({ classes: 101, train: 75750, test: 25250 });
}
