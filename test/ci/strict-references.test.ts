import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Under CI=true a reference tool the suite compares against must be present: its absence fails the
 * test file that needs it, with one line naming what to install, instead of a skip. Outside CI the
 * same absence is a skip. Checked in child processes, with Fashion-MNIST pointed at an empty folder.
 */
const helper = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'helpers', 'fashion-mnist.js');

function check(ci: string | undefined): { status: number | null; out: string } {
  const empty = mkdtempSync(path.join(os.tmpdir(), 'fgh-no-fm-'));
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, FGH_FASHION_MNIST: empty };
    delete env.CI;
    if (ci !== undefined) env.CI = ci;
    const script = `import(${JSON.stringify(helper)}).then((m) => console.log('present:', m.referenceFashionMnist()))`;
    const r = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8' });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
}

test('CI=true: a missing reference is an error naming what to install; otherwise the tests skip', (t) => {
  const strict = check('true');
  t.not(strict.status, 0);
  t.regex(strict.out, /CI=true and a reference tool is missing: Fashion-MNIST in .*fgh-no-fm-.* \(Debian: apt-get install dataset-fashion-mnist/);
  const relaxed = check(undefined);
  t.is(relaxed.status, 0, relaxed.out);
  t.regex(relaxed.out, /present: false/);
  t.is(check('false').status, 0);
});
