import { existsSync } from 'node:fs';
import path from 'node:path';
import { FghError } from '../../util/errors.js';
import type { Dataset, LoadOptions, SplitName } from '../types.js';
import { datasetFromEntries, dogsSpec, loadDogsLists, type ListEntry } from './lists.js';
import { describeMatValue, quote, readMatFile, type MatValue } from './matlab.js';
import { requireDir } from './metadata.js';

/**
 * Stanford Dogs in any of its three list layouts, all with images under images/Images:
 * SEMICON's train.txt/test.txt; the feature files train_data.mat/test_data.mat (a struct
 * train_info/test_info with fields file_list, annotation_list, labels; what sRLH reads); the
 * original lists/train_list.mat/lists/test_list.mat (the same fields as top-level variables).
 * Classes and paths are resolved exactly as for the text lists (class = label - 1).
 */
export function loadDogs(opts: LoadOptions): Dataset {
  requireDir(opts.root);
  const has = (rel: string) => existsSync(path.join(opts.root, rel));
  if (has('train.txt')) return loadDogsLists(opts);
  if (has('train_data.mat')) return loadDogsMat(opts, ['train_data.mat', 'test_data.mat'], ['train_info', 'test_info']);
  if (has('lists/train_list.mat')) return loadDogsMat(opts, ['lists/train_list.mat', 'lists/test_list.mat'], null);
  throw new FghError(`${opts.root}: no train.txt/test.txt, train_data.mat/test_data.mat or lists/train_list.mat/lists/test_list.mat (Stanford Dogs layouts)`);
}

const MAX_LABEL = 100_000;

function loadDogsMat(opts: LoadOptions, files: [string, string], structs: [string, string] | null): Dataset {
  const splits: SplitName[] = ['train', 'test'];
  const entries = splits.flatMap((split, i) => matEntries(opts.root, files[i]!, split, structs?.[i] ?? null));
  return datasetFromEntries(dogsSpec(files), opts, entries);
}

/** The file_list/labels pairs of one .mat list, from struct `structName` or from top-level variables. */
function matEntries(root: string, rel: string, split: SplitName, structName: string | null): ListEntry[] {
  const file = path.join(root, rel);
  if (!existsSync(file)) throw new FghError(`${file}: missing metadata file`);
  let fields: Map<string, MatValue>;
  if (structName) {
    const v = readMatFile(file, [structName]).get(structName)!;
    if (v.kind !== 'struct' || v.items.length !== 1) throw new FghError(`${rel}: ${structName} is ${describeMatValue(v)}, expected a 1x1 struct`);
    fields = v.items[0]!;
    for (const f of ['file_list', 'labels']) if (!fields.has(f)) throw new FghError(`${rel}: ${structName} has no field ${f} (fields: ${v.fields.map(quote).join(', ')})`);
  } else {
    fields = readMatFile(file, ['file_list', 'labels']);
  }
  const prefix = structName ? `${structName}.` : '';
  const files = stringList(fields.get('file_list')!, `${rel}: ${prefix}file_list`);
  const labels = fields.get('labels')!;
  if (labels.kind !== 'numeric') throw new FghError(`${rel}: ${prefix}labels is ${describeMatValue(labels)}, expected a numeric array`);
  if (labels.data.length !== files.length) throw new FghError(`${rel}: ${labels.data.length} labels for ${files.length} file_list entries`);
  return files.map((f, i) => {
    const source = `${rel} entry ${i + 1}`;
    if (f instanceof Error) throw new FghError(`${source}: ${f.message}`);
    const label = labels.data[i]!;
    // The cap keeps a corrupt label from sizing the class table (the canonical labels are 1..120).
    if (!Number.isInteger(label) || label < 1 || label > MAX_LABEL) throw new FghError(`${source}: label ${label} out of range (labels are integers in 1..${MAX_LABEL})`);
    return { split, file: f, label: label - 1, source };
  });
}

/**
 * The strings of a file_list: a cell whose elements are strings or 1x1 cells holding a string
 * (how MATLAB's and scipy's writers store them), or a char matrix (one path per row). A bad
 * element is returned as an Error so that the caller can name its entry.
 */
function stringList(v: MatValue, what: string): Array<string | Error> {
  if (v.kind === 'char') return v.rows.map((r) => r.trimEnd()).map((r) => (r === '' || /[\u0000-\u001f\u007f]/.test(r) ? new Error(`file_list row ${quote(r)} is not a usable path`) : r));
  if (v.kind !== 'cell') throw new FghError(`${what} is ${describeMatValue(v)}, expected a cell array of strings`);
  return v.items.map((item) => {
    const s = item.kind === 'cell' && item.items.length === 1 ? item.items[0]! : item;
    if (s.kind !== 'char' || s.rows.length !== 1 || s.rows[0] === '') return new Error(`file_list element is ${describeMatValue(s)}, expected a non-empty string`);
    // A path with a newline would break one-line messages, and no dataset has one.
    if (/[\u0000-\u001f\u007f]/.test(s.rows[0]!)) return new Error(`file_list element ${quote(s.rows[0]!)} contains control characters`);
    return s.rows[0]!;
  });
}
