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
