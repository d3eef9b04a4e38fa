import { at, FghError } from '../../util/errors.js';
import type { Dataset, LoadOptions } from '../types.js';
import { DatasetBuilder, idMap, positiveInt, requireDir } from './metadata.js';

/**
 * CUB-200-2011 and NABirds share one layout: images.txt, image_class_labels.txt,
 * train_test_split.txt and classes.txt, ids joining them. NABirds' class ids are sparse (its
 * classes.txt also lists the hierarchy's inner nodes): the ids images use map to 0..C-1 in order.
 */
function loadCubLike(name: 'cub' | 'nabirds', opts: LoadOptions): DatasetBuilder {
  requireDir(opts.root);
  const images = idMap(opts.root, 'images.txt', '<image id> <relative path>');
  const labels = idMap(opts.root, 'image_class_labels.txt', '<image id> <class id>');
  const split = idMap(opts.root, 'train_test_split.txt', '<image id> <1 = train, 0 = test>');
  const classes = idMap(opts.root, 'classes.txt', '<class id> <class name>');
  const used = new Map<number, number>();
  for (const [id, l] of labels) {
    const c = positiveInt('image_class_labels.txt', { n: l.line, text: l.value }, l.value, 'class id');
    if (!classes.has(String(c))) throw new FghError(`${at('image_class_labels.txt', l.line)}: class ${c} of image ${id} is not in classes.txt`);
    used.set(c, 0);
  }
  const order = name === 'nabirds' ? [...used.keys()].sort((a, b) => a - b) : [...classes.keys()].map(Number).sort((a, b) => a - b);
  order.forEach((c, i) => used.set(c, i));
  const b = new DatasetBuilder(name, opts, order.map((c) => classes.get(String(c))!.value));
  for (const [id, img] of images) {
    const l = labels.get(id);
    if (!l) throw new FghError(`${at('images.txt', img.line)}: image ${id} has no line in image_class_labels.txt`);
    const s = split.get(id);
    if (!s) throw new FghError(`${at('images.txt', img.line)}: image ${id} has no line in train_test_split.txt`);
    if (s.value !== '0' && s.value !== '1') throw new FghError(`${at('train_test_split.txt', s.line)}: expected 1 (train) or 0 (test), got "${s.value}"`);
    b.add(s.value === '1' ? 'train' : 'test', `images/${img.value}`, [used.get(Number(l.value))!], id, at('images.txt', img.line));
  }
  for (const [id, l] of labels) if (!images.has(id)) throw new FghError(`${at('image_class_labels.txt', l.line)}: image ${id} is not in images.txt`);
  return b;
}

export function loadCub(opts: LoadOptions): Dataset {
  return loadCubLike('cub', opts).expect({ classes: 200, train: 5994, test: 5794 });
}

export function loadNabirds(opts: LoadOptions): Dataset {
  return loadCubLike('nabirds', opts).expect({ classes: 555, train: 23929, test: 24633 });
}
