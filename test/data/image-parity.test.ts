import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeRgb, evalTransform, normalizeInto, type EvalTransformName } from '../../src/data/image.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../../src/export/metadata.js';
import { readBundle } from '../helpers/bundle.js';
import { missingPythonMessage, referencePython } from '../helpers/python.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const pyDir = path.resolve(here, '../../../test/python');
const python = referencePython('torch', 'torchvision', 'PIL', 'scipy', 'numpy');
if (!python) console.warn(`image parity: ${missingPythonMessage('torch', 'torchvision', 'PIL', 'scipy', 'numpy')}`);

(python ? test : test.skip)('decode and eval transforms match torchvision on PIL, on real photographs', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-img-'));
  try {
    const r = spawnSync(python!, [path.join(pyDir, 'image_reference.py'), dir], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`reference script failed: ${r.stderr}`);
    const ref = readBundle(path.join(dir, 'ref'));
    for (const name of r.stdout.trim().split(' ')) {
      const img = await decodeRgb(path.join(dir, name));
      const rgb = ref.get(`${name}.rgb`)!;
      t.deepEqual([img.height, img.width, 3], rgb.shape, `${name}: decoded size`);
      let decodeSum = 0;
      let decodeMax = 0;
      for (let i = 0; i < img.data.length; i++) {
        const d = Math.abs(img.data[i]! - rgb.data[i]!);
        decodeSum += d;
        decodeMax = Math.max(decodeMax, d);
      }
      const parts = [`${name}: decode mean ${(decodeSum / img.data.length).toFixed(4)}/255 max ${decodeMax}`];
      for (const tr of ['resize-256-centercrop-224', 'resize-224'] as EvalTransformName[]) {
        const want = ref.get(`${name}.${tr}`)!;
        const out = new Float32Array(3 * 224 * 224);
        normalizeInto(evalTransform(img, tr), out, 0, 'nchw', IMAGENET_MEAN, IMAGENET_STD);
        // Differences in units of one uint8 level: |a - b| * std * 255.
        let sum = 0;
        let max = 0;
        const hw = 224 * 224;
        for (let i = 0; i < out.length; i++) {
          const d = Math.abs(out[i]! - want.data[i]!) * IMAGENET_STD[Math.floor(i / hw)]! * 255;
          sum += d;
          max = Math.max(max, d);
        }
        const mean = sum / out.length;
        parts.push(`${tr} mean ${mean.toExponential(1)}/255 max ${max.toExponential(1)}/255`);
        t.true(mean < 1, `${name} ${tr}: mean abs diff ${mean}/255`);
        // Identical decoded pixels must give identical resized pixels (PIL's integer arithmetic).
        if (decodeMax === 0) t.true(max < 1e-3, `${name} ${tr}: max abs diff ${max}/255 with identical decode`);
      }
      t.log(parts.join('; '));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an unreadable image is a one-line error naming the file', async (t) => {
  const e = await t.throwsAsync(decodeRgb(path.join(here, 'image-parity.test.js')));
  t.regex(e!.message, /image-parity\.test\.js: unreadable image \(/);
  t.false(e!.message.includes('\n'));
});
