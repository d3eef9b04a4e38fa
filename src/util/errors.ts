/**
 * An error meant for the user: the CLI prints its message on one line, without a stack trace
 * (unless --verbose). Anything else that escapes is a bug and is reported as such.
 */
export class FghError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FghError';
  }
}

/** Where in a file a problem is, for one-line messages such as `images.txt:12: ...`. */
export function at(file: string, line?: number): string {
  return line === undefined ? file : `${file}:${line}`;
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** What the engines say when memory runs out: V8 (a typed array), wasm's 4 GiB, onnxruntime, the C++ runtime. */
const OUT_OF_MEMORY = /Array buffer allocation failed|Invalid typed array length|Aborted\(\)|bad_alloc|bad allocation|Out of memory|Cannot allocate memory|memory access out of bounds|failed to allocate/i;

export function isOutOfMemory(e: unknown): boolean {
  return OUT_OF_MEMORY.test(errorMessage(e));
}

/**
 * Runs `work`; running out of memory becomes one line naming what to lower (`settings`, e.g.
 * "--batch 16 at --size 224"), not an engine's internal message.
 */
export async function explainOutOfMemory<T>(settings: string, remedy: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    if (e instanceof FghError || !isOutOfMemory(e)) throw e;
    const detail = errorMessage(e).split('\n')[0]!.replace(/^out of memory:\s*/i, '');
    throw new FghError(`out of memory training with ${settings} (${detail}): ${remedy}`, { cause: e });
  }
}
