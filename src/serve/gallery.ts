import path from 'node:path';
import { loadDataset } from '../data/datasets/index.js';
import type { DatasetName } from '../data/types.js';
import { readCodeStore, type StoreContents } from '../retrieval/code-store.js';
import type { Labels } from '../retrieval/labels.js';
import { FghError } from '../util/errors.js';

/** What the page needs of a code store: packed codes, and per item its id, labels and image URL. */
export interface Gallery {
  store: StoreContents;
  /** Image path relative to the images folder (POSIX), or null when the item's file is unknown. */
  files: Array<string | null>;
  /** Class names when a dataset was named, else null (labels are shown as class ids). */
  classNames: string[] | null;
}

export interface GalleryItemsJson {
  ids: string[];
  files: Array<string | null>;
  /** Class ids per item (one for single-label stores); empty without labels. */
  labels: number[][];
  classNames: string[] | null;
}

/**
 * Opens the store and finds each item's image. Items from `fgh encode --images DIR` have their
 * path under DIR as id; items from `--dataset D --root DIR` have the dataset's ids, mapped back to
 * files through the same adapter.
 */
export function openGallery(dbFile: string, imagesDir: string, dataset?: DatasetName): Gallery {
  const store = readCodeStore(dbFile);
  if (store.header.count === 0) throw new FghError(`${dbFile}: the code store is empty`);
  if (!dataset) return { store, files: store.ids.map((id) => (id ? id : null)), classNames: null };
  const d = loadDataset(dataset, { root: imagesDir, skipBadImages: true });
  const byId = new Map<string, string>();
  for (const samples of Object.values(d.splits)) for (const s of samples ?? []) byId.set(s.id, path.relative(path.resolve(imagesDir), s.path).split(path.sep).join('/'));
  const files = store.ids.map((id) => byId.get(id) ?? null);
  const found = files.filter((f) => f !== null).length;
  if (found === 0) throw new FghError(`${dbFile}: none of its ${store.header.count} item ids is an image of the ${dataset} dataset at ${imagesDir}`);
  return { store, files, classNames: d.classes };
}

export function labelsOfItem(labels: Labels | null, i: number): number[] {
  if (!labels) return [];
  if (labels.kind === 'single') return [labels.ids[i]!];
  const out: number[] = [];
  for (let w = 0; w < labels.words; w++) {
    const word = labels.sets[i * labels.words + w]!;
    for (let b = 0; b < 32; b++) if ((word >>> b) & 1) out.push(w * 32 + b);
  }
  return out;
}

export function galleryItemsJson(g: Gallery): GalleryItemsJson {
  const n = g.store.header.count;
  const labels: number[][] = [];
  if (g.store.labels) for (let i = 0; i < n; i++) labels.push(labelsOfItem(g.store.labels, i));
  return { ids: g.store.ids, files: g.files, labels, classNames: g.classNames };
}
