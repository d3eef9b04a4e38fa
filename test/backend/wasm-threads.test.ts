import test from 'ava';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { projectRoot } from '../helpers/cli.js';

/**
 * wasm on a pthread pool in Node: each case is a fresh process (the backend is chosen once per
 * process), which must also exit by itself (the pool's threads live as long as the backend).
 */

const bin = path.join(projectRoot, 'bin', 'fgh.js');
const dist = (p: string): string => pathToFileURL(path.join(projectRoot, 'dist', p)).href;

function run(args: string[], threads: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 120_000, env: { ...process.env, FGH_BACKEND: 'wasm', FGH_WASM_THREADS: threads } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('FGH_WASM_THREADS sets the pool, and the process exits by itself', (t) => {
  for (const n of [1, 2, 3]) {
    const r = run([bin, 'doctor', '--json'], String(n));
    t.is(r.status, 0, `${n} threads: ${r.stderr}`);
    const report = JSON.parse(r.stdout) as { tfjs: { backend: string; threads: number } };
    t.is(report.tfjs.backend, 'wasm');
    t.is(report.tfjs.threads, n);
  }
});

test('a bad FGH_WASM_THREADS is named in the error', (t) => {
  const r = run([bin, 'doctor', '--json'], 'two');
  const report = JSON.parse(r.stdout) as { tfjs: { backend: string | null; error?: string } };
  t.is(report.tfjs.backend, null);
  t.regex(report.tfjs.error ?? '', /FGH_WASM_THREADS must be a positive integer, got "two"/);
});

test('convolutions and their gradients on 2 wasm threads match the cpu backend', (t) => {
  // A ResNet-sized layer (large enough for XNNPACK to split it across threads), forward and backward.
  const script = `
    const { tf } = await import(${JSON.stringify(dist('src/backend/tf.js'))});
    const { selectBackend } = await import(${JSON.stringify(dist('src/backend/select.js'))});
    const choice = await selectBackend();
    const make = () => {
      const x = tf.tensor4d(Float32Array.from({ length: 4 * 28 * 28 * 32 }, (_, i) => Math.sin(i * 0.37)), [4, 28, 28, 32]);
      const w = tf.tensor4d(Float32Array.from({ length: 3 * 3 * 32 * 48 }, (_, i) => Math.cos(i * 0.11) * 0.1), [3, 3, 32, 48]);
      const f = (a, b) => tf.sum(tf.square(tf.conv2d(a, b, 2, 'same')));
      const [dx, dw] = tf.grads(f)([x, w]);
      return [tf.conv2d(x, w, 1, 'same'), dx, dw].map((v) => v.dataSync().slice());
    };
    const ours = make();
    await import('@tensorflow/tfjs-backend-cpu');
    await tf.setBackend('cpu');
    const ref = make();
    let worst = 0;
    // Per tensor: the largest difference relative to the largest value.
    ours.forEach((o, k) => {
      let d = 0, m = 0;
      o.forEach((v, i) => { d = Math.max(d, Math.abs(v - ref[k][i])); m = Math.max(m, Math.abs(ref[k][i])); });
      worst = Math.max(worst, d / m);
    });
    console.log(JSON.stringify({ threads: choice.threads, worst }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: projectRoot, encoding: 'utf8', timeout: 120_000, env: { ...process.env, FGH_BACKEND: 'wasm', FGH_WASM_THREADS: '2' } });
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { threads: number; worst: number };
  t.is(out.threads, 2);
  t.log(`worst difference relative to the largest value ${out.worst.toExponential(2)}`);
  t.true(out.worst < 1e-5, `worst relative difference ${out.worst}`);
});
