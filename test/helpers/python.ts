import { spawnSync } from 'node:child_process';

/**
 * The Python interpreter that has Debian's reference packages (python3-torch, -torchvision,
 * -onnx, -faiss, -numpy, -pil). A pyenv or venv python3 earlier on PATH usually lacks them,
 * so /usr/bin/python3 is tried first. FGH_PYTHON overrides.
 */
const CANDIDATES = [process.env.FGH_PYTHON, '/usr/bin/python3', 'python3'].filter((p): p is string => Boolean(p));

const cache = new Map<string, string | null>();

/** The first interpreter that imports every module in `modules`, or null. */
export function pythonWith(...modules: string[]): string | null {
  const key = modules.join(',');
  if (cache.has(key)) return cache.get(key)!;
  let found: string | null = null;
  for (const py of CANDIDATES) {
    const r = spawnSync(py, ['-c', modules.map((m) => `import ${m}`).join('; ') || 'pass'], { encoding: 'utf8' });
    if (r.status === 0) {
      found = py;
      break;
    }
  }
  cache.set(key, found);
  return found;
}

/** Why a test is skipped, in one line that says what to install. */
export function missingPythonMessage(...modules: string[]): string {
  const debs = modules.map((m) => `python3-${m === 'PIL' ? 'pil' : m}`).join(' ');
  return `skipped: needs Python with ${modules.join(', ')} (Debian: apt-get install ${debs})`;
}

/** Runs a Python script; throws with its stderr if it fails. Returns stdout. */
export function runPython(python: string, script: string, args: string[] = [], input?: string): string {
  const r = spawnSync(python, ['-c', script, ...args], { encoding: 'utf8', input, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/**
 * CI=true (set by .ci/run, and by most CI services): a reference tool the suite compares against
 * must be there. A test file that declares one it cannot find then fails to load, with one line
 * naming what to install, instead of skipping (or passing) its comparisons.
 */
export const STRICT_REFERENCES = /^(1|true|yes)$/i.test(process.env.CI ?? '');

/** `present` as given; under CI, a missing reference is an error saying what to install. */
export function requireReference(present: boolean, what: string): boolean {
  if (!present && STRICT_REFERENCES) throw new Error(`CI=true and a reference tool is missing: ${what}`);
  return present;
}

/** pythonWith() for the suite's reference comparisons: under CI, missing modules are an error. */
export function referencePython(...modules: string[]): string | null {
  const py = pythonWith(...modules);
  requireReference(py !== null, missingPythonMessage(...modules).replace(/^skipped: /, ''));
  return py;
}
