import v8 from 'node:v8';
import vm from 'node:vm';

/**
 * Frees an ArrayBuffer's memory now instead of at V8's next garbage collection.
 *
 * A training step allocates and drops gigabytes of large arrays. Left to the collector, dead
 * ones pile up between collections, the C heap grows past them, and every page of the growth
 * faults on first touch: on this project's reference VM a fault costs about 13 us, so a fresh
 * 51 MB activation costs some 160 ms before any arithmetic, against 3 ms when its memory is
 * reused. Detaching a buffer (`transfer(0)`) releases its memory at once for the next array.
 *
 * `ArrayBuffer.prototype.transfer` is standard from Node 21; Node 20's V8 has it behind
 * --harmony-rab-gsab-transfer, which only takes effect in realms created while it is set, so
 * the function is taken from such a realm (it works on any realm's ArrayBuffer) and the flag
 * is turned off again. Where neither exists, release does nothing and the collector frees.
 */

type Transfer = (this: ArrayBuffer, newLength?: number) => ArrayBuffer;

let cached: Transfer | null | undefined;

function transferFunction(): Transfer | null {
  if (cached !== undefined) return cached;
  const native = (ArrayBuffer.prototype as { transfer?: Transfer }).transfer;
  if (typeof native === 'function') return (cached = native);
  cached = null;
  try {
    v8.setFlagsFromString('--harmony-rab-gsab-transfer');
    const f: unknown = vm.runInNewContext('ArrayBuffer.prototype.transfer');
    if (typeof f === 'function') cached = f as Transfer;
  } catch {
    cached = null;
  } finally {
    v8.setFlagsFromString('--no-harmony-rab-gsab-transfer');
  }
  // Only trust it if a probe really comes back detached.
  if (cached) {
    const probe = new ArrayBuffer(8);
    try {
      cached.call(probe, 0);
    } catch {
      cached = null;
    }
    if (probe.byteLength !== 0) cached = null;
  }
  return cached;
}

/** Whether releaseArrayBuffer frees memory on this Node (for `fgh doctor`). */
export function arrayReleaseAvailable(): boolean {
  return transferFunction() !== null;
}

/**
 * Detaches `buffer`, freeing its memory now: every view of it reads as empty afterwards, so the
 * caller must own it outright. Returns false where that is not possible (it is then left to
 * the garbage collector).
 */
export function releaseArrayBuffer(buffer: ArrayBuffer): boolean {
  const transfer = transferFunction();
  if (!transfer || buffer.byteLength === 0) return false;
  try {
    transfer.call(buffer, 0);
    return true;
  } catch {
    return false; // not detachable (e.g. wasm memory)
  }
}
