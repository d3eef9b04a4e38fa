import { FghError } from '../../util/errors.js';

/** Row-major [rows, cols] continuous features: one row per image. */
export interface Features {
  rows: number;
  cols: number;
  data: Float32Array | Float64Array;
}

export function checkFeatures(f: Features, what: string): void {
  if (!Number.isInteger(f.rows) || !Number.isInteger(f.cols) || f.rows < 0 || f.cols < 1) throw new FghError(`${what}: bad shape [${f.rows}, ${f.cols}]`);
  if (f.data.length !== f.rows * f.cols) throw new FghError(`${what}: ${f.data.length} values for [${f.rows}, ${f.cols}]`);
}

export function checkSameWidth(query: Features, db: Features): void {
  checkFeatures(query, 'query features');
  checkFeatures(db, 'database features');
  if (query.cols !== db.cols) throw new FghError(`query features have ${query.cols} dimensions, database features ${db.cols}`);
}

/** ±1 values as the packed-code contract wants them: +1 where v >= 0, as ITQ's sign (MATLAB code) takes it. */
export function signs(values: Float64Array): Float64Array {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i]! >= 0 ? 1 : -1;
  return out;
}
