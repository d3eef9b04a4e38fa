/**
 * The slice of the WebAssembly and Atomics.waitAsync APIs fgh uses, typed here because the
 * project compiles without the DOM library (where TypeScript declares them) and @types/node 20
 * does not declare them either. Going through globalThis keeps these types local to this module,
 * so they cannot clash with global declarations a later lib or @types version may bring.
 */

/** A compiled module; opaque, but can be posted to worker threads. */
export interface WasmModule {
  readonly __wasmModule: unique symbol;
}

export interface WasmMemory {
  readonly buffer: SharedArrayBuffer;
  grow(deltaPages: number): number;
}

interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => { exports: Record<string, unknown> };
  Memory: new (desc: { initial: number; maximum: number; shared?: boolean }) => WasmMemory | LocalMemory;
  validate(bytes: Uint8Array): boolean;
}

/** A memory of one thread's (not shared): what the training backend's SIMD kernels use. */
export interface LocalMemory {
  readonly buffer: ArrayBuffer;
  grow(deltaPages: number): number;
}

const api = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;

export function compileModule(bytes: Uint8Array): WasmModule {
  return new api.Module(bytes);
}

export function instantiate(module: WasmModule, imports: Record<string, Record<string, unknown>>): Record<string, unknown> {
  return new api.Instance(module, imports).exports;
}

export function sharedMemory(pages: number, maximum: number): WasmMemory {
  return new api.Memory({ initial: pages, maximum, shared: true }) as WasmMemory;
}

export function localMemory(pages: number, maximum: number): LocalMemory {
  return new api.Memory({ initial: pages, maximum }) as LocalMemory;
}

export function validate(bytes: Uint8Array): boolean {
  return api.validate(bytes);
}

type WaitAsync = (ta: Int32Array, index: number, value: number) => { async: boolean; value: Promise<string> | string };

/** Resolves once `ta[index]` may no longer equal `value` (immediately if it already differs). */
export async function waitChange(ta: Int32Array, index: number, value: number): Promise<void> {
  const r = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync(ta, index, value);
  if (r.async) await r.value;
}
