/** Planning and allocating the one shared WebAssembly memory a retrieval job runs in. */
import { FghError } from '../util/errors.js';
import { MAX_PAGES } from './kernels.js';
import { sharedMemory, type WasmMemory } from '../util/wasm-api.js';

const PAGE = 65536;

/** Hands out 64-byte aligned regions from `start`; then makes or grows a memory to hold them all. */
export class MemoryPlan {
  private end: number;

  constructor(start = 0) {
    this.end = start;
  }

  take(bytes: number): number {
    const at = Math.ceil(this.end / 64) * 64;
    this.end = at + bytes;
    return at;
  }

  get bytes(): number {
    return this.end;
  }

  private pages(what: string): number {
    const pages = Math.max(1, Math.ceil(this.end / PAGE));
    if (pages > MAX_PAGES) {
      throw new FghError(`${what} needs ${(this.end / 2 ** 30).toFixed(2)} GiB of working memory, more than the 4 GiB a search can address; split the database or the queries`);
    }
    return pages;
  }

  /** A new memory of exactly the planned size; `growable` reserves room to grow to 4 GiB. */
  allocate(what: string, growable = false): WasmMemory {
    const pages = this.pages(what);
    return sharedMemory(pages, growable ? MAX_PAGES : pages);
  }

  /** Grows `memory` (allocated growable) to hold the plan. */
  fit(memory: WasmMemory, what: string): void {
    const have = memory.buffer.byteLength / PAGE;
    const need = this.pages(what);
    if (need > have) memory.grow(need - have);
  }
}

export function bytesOf(memory: WasmMemory, at: number, n: number): Uint8Array {
  return new Uint8Array(memory.buffer, at, n);
}
