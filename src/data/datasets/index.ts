import { FghError } from '../../util/errors.js';
import { DATASET_NAMES, type Dataset, type DatasetName, type LoadOptions, type Sample } from '../types.js';
import { loadCub, loadNabirds } from './cub.js';
import { loadDogs } from './dogs.js';
import { loadFolder } from './folder.js';
import { loadFood101 } from './food101.js';
import { loadAircraft, loadCars, loadVegfru } from './lists.js';

const LOADERS: Record<DatasetName, (opts: LoadOptions) => Dataset> = {
  cub: loadCub,
  aircraft: loadAircraft,
  cars: loadCars,
  dogs: loadDogs,
  food101: loadFood101,
  nabirds: loadNabirds,
  vegfru: loadVegfru,
  folder: loadFolder,
};

export function parseDatasetName(s: string): DatasetName {
  if ((DATASET_NAMES as readonly string[]).includes(s)) return s as DatasetName;
  throw new FghError(`unknown dataset "${s}" (expected one of ${DATASET_NAMES.join(', ')})`);
}

export function loadDataset(name: DatasetName, opts: LoadOptions): Dataset {
  return LOADERS[name](opts);
}

export type SplitSelector = 'train' | 'test' | 'val' | 'all';

/** A split by name; `all` is train then test (then val). Query = test, database = train. */
export function split(d: Dataset, which: SplitSelector): Sample[] {
  if (which === 'all') return [...(d.splits.train ?? []), ...(d.splits.test ?? []), ...(d.splits.val ?? [])];
  const s = d.splits[which];
  if (!s) throw new FghError(`${d.name} has no ${which} split`);
  return s;
}
