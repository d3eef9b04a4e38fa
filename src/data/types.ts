/** One image of a dataset split. Every adapter returns these, whatever the on-disk layout. */
export interface Sample {
  /** Absolute path of the image file. */
  path: string;
  /** 0-based class ids; single-label datasets have exactly one. */
  labels: number[];
  /** Stable item id: the dataset's own id where it has one, else the path relative to the root. */
  id: string;
  /** Where the sample was declared (`images.txt:12`), for one-line error messages. */
  source?: string;
}

export type SplitName = 'train' | 'test' | 'val';

/** The names every `--dataset` flag accepts. */
export const DATASET_NAMES = ['cub', 'aircraft', 'cars', 'dogs', 'food101', 'nabirds', 'vegfru', 'folder'] as const;
export type DatasetName = (typeof DATASET_NAMES)[number];

export interface LoadOptions {
  /** Dataset root directory. */
  root: string;
  /** Drop samples whose image file is missing (counted in `skipped`) instead of failing. */
  skipBadImages?: boolean;
  /** Check that every image file exists (default true). */
  checkFiles?: boolean;
}

/** A loaded dataset: class names and the splits it defines. Query = test, database = train. */
export interface Dataset {
  name: DatasetName;
  root: string;
  classes: string[];
  splits: Partial<Record<SplitName, Sample[]>>;
  /** Non-fatal findings, e.g. counts that differ from the canonical ones. */
  warnings: string[];
  /** Samples dropped under `skipBadImages`, with the reason. */
  skipped: Array<{ path: string; source?: string; reason: string }>;
}
