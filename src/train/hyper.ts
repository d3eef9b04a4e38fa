import { FghError } from '../util/errors.js';

/**
 * The hyper-parameters of a training method as data: each field's type, command-line flag, help
 * and the reference's name for it. `fgh train` builds its flags from these tables, and a
 * configuration file is checked against them, so a field added here is reachable everywhere.
 */

export type HyperValue = number | boolean | number[] | string;
export type HyperKind = 'int' | 'number' | 'bool' | 'ints' | 'choice';

export interface HyperField<K extends string = string> {
  key: K;
  /** Flag name without the dashes. Booleans get --flag and --no-flag. */
  flag: string;
  kind: HyperKind;
  help: string;
  /** The option's name in the authors' code, for users coming from it. */
  reference?: string;
  /** Allowed values of a 'choice'. */
  choices?: readonly string[];
  /** Smallest allowed value of a number (inclusive); default: strictly positive for int/number. */
  min?: number;
  /** Largest allowed value of a number (inclusive). */
  max?: number;
}

export function parseHyperValue(field: HyperField, raw: unknown, where: string): HyperValue {
  const bad = (what: string): never => {
    throw new FghError(`${where}: ${field.key} must be ${what}, got ${JSON.stringify(raw)}`);
  };
  const number = (v: unknown, integer: boolean): number => {
    const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isFinite(n)) return bad(integer ? 'an integer' : 'a number');
    if (integer && !Number.isInteger(n)) bad('an integer');
    if (field.min !== undefined ? n < field.min : n <= 0) bad(field.min !== undefined ? `>= ${field.min}` : 'positive');
    if (field.max !== undefined && n > field.max) bad(`<= ${field.max}`);
    return n;
  };
  switch (field.kind) {
    case 'int':
      return number(raw, true);
    case 'number':
      return number(raw, false);
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === 'false') return raw === 'true';
      return bad('true or false');
    case 'ints': {
      const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? (raw.trim() === '' ? [] : raw.split(',')) : bad('a list of integers');
      return items.map((v) => number(v, true));
    }
    case 'choice':
      if (typeof raw === 'string' && field.choices!.includes(raw)) return raw;
      return bad(`one of ${field.choices!.join(', ')}`);
  }
}

/** Checks every key of `raw` against the fields (unknown keys are errors: a typo must not be ignored). */
export function parseHyper<T extends object>(fields: readonly HyperField[], raw: Record<string, unknown>, where: string): Partial<T> {
  const byKey = new Map(fields.map((f) => [f.key, f]));
  const out: Record<string, HyperValue> = {};
  for (const [k, v] of Object.entries(raw)) {
    const f = byKey.get(k);
    if (!f) throw new FghError(`${where}: unknown hyper-parameter "${k}" (known: ${[...byKey.keys()].join(', ')})`);
    out[k] = parseHyperValue(f, v, where);
  }
  return out as Partial<T>;
}

/** Keys whose values differ between two complete hyper-parameter sets. */
export function differingKeys(a: object, b: object): string[] {
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  return Object.keys(ra).filter((k) => JSON.stringify(ra[k]) !== JSON.stringify(rb[k]));
}
