import { releaseArrayBuffer } from '../array-release.js';

export type ResultArray = Float32Array | Uint8Array;

/**
 * Arrays of disposed kernel results, by type and length, for the next outputs of that size. A
 * training step repeats the same shapes, so the arrays cycle without touching the C heap: its
 * allocator split and merged blocks of nearly equal sizes (onnxruntime's aligned ones, V8's
 * exact ones) until the heap grew by fresh, page-faulting memory every few calls. Above `capBytes`
 * an array is freed instead of kept.
 */
export class ArrayPool {
  private readonly free = new Map<string, ResultArray[]>();
  private held = 0;

  constructor(readonly capBytes: number) {}

  /** Whether take() would return a pooled array. */
  has(bool: boolean, length: number): boolean {
    return (this.free.get(`${bool ? 'b' : 'f'}${length}`)?.length ?? 0) > 0;
  }

  /** A pooled array of this type and length (contents undefined), or a new one. */
  take(bool: boolean, length: number): ResultArray {
    const a = this.free.get(`${bool ? 'b' : 'f'}${length}`)?.pop();
    if (a) {
      this.held -= a.byteLength;
      return a;
    }
    return bool ? new Uint8Array(length) : new Float32Array(length);
  }

  /** Takes back an array that nothing else references. */
  give(a: ResultArray): void {
    if (a.byteLength === 0) return;
    if (this.held + a.byteLength > this.capBytes) {
      releaseArrayBuffer(a.buffer as ArrayBuffer);
      return;
    }
    const key = `${a instanceof Uint8Array ? 'b' : 'f'}${a.length}`;
    let list = this.free.get(key);
    if (!list) this.free.set(key, (list = []));
    list.push(a);
    this.held += a.byteLength;
  }

  clear(): void {
    for (const list of this.free.values()) for (const a of list) releaseArrayBuffer(a.buffer as ArrayBuffer);
    this.free.clear();
    this.held = 0;
  }
}
