import { packSigns, type Codes } from '../codes.js';
import { checkBits } from '../codes.js';
import { Rng } from '../../util/rng.js';
import { checkSameWidth, type Features } from './features.js';

/**
 * Random-projection LSH (Charikar 2002): sign(W (x - mean)), W Gaussian [bits, d] drawn from
 * Rng(seed) row by row, mean over the database. What hashing without learning gets. The
 * arithmetic (float64 sums, float32 projections) is the one `fgh demo` has always used, so its
 * baseline figures do not move when it calls this module.
 */
export function randomProjectionCodes(query: Features, db: Features, bits: number, seed: number): { query: Codes; db: Codes } {
  checkSameWidth(query, db);
  checkBits(bits);
  const d = db.cols;
  const mean = new Float64Array(d);
  for (let i = 0; i < db.rows; i++) for (let k = 0; k < d; k++) mean[k]! += db.data[i * d + k]! / db.rows;
  const rng = new Rng(seed);
  const w = new Float32Array(bits * d);
  for (let i = 0; i < w.length; i++) w[i] = rng.normal();
  const project = (f: Features): Codes => {
    const y = new Float32Array(f.rows * bits);
    for (let i = 0; i < f.rows; i++) {
      for (let b = 0; b < bits; b++) {
        let s = 0;
        for (let k = 0; k < d; k++) s += w[b * d + k]! * (f.data[i * d + k]! - mean[k]!);
        y[i * bits + b] = s;
      }
    }
    return packSigns(y, f.rows, bits);
  };
  return { query: project(query), db: project(db) };
}
