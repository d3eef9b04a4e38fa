/**
 * bench:encode: encoding throughput (JPEG files -> codes) of the sRLH ResNet-18 graph at 224 px,
 * `fgh encode` (sharp decoding + onnxruntime-node, in process) against PyTorch eager CPU inference
 * of the same network on the same files (PIL decoding + torchvision transforms + the model under
 * torch.no_grad, all cores; DataLoader with 0 and with 2 workers, the faster counts). Rounds
 * alternate; best and median images/s are printed with their ratio.
 * Options: --images N (default 384), --rounds N (default 3), --batch N (default 32).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { selectBackend } from '../../src/backend/select.js';
import { createHashingModel } from '../../src/models/factory.js';
import { exportHashingGraph } from '../../src/export/hashing.js';
import { encode } from '../../src/encode/encoder.js';
import { Rng } from '../../src/util/rng.js';
import { pythonWith, runPython } from '../helpers/python.js';
import { numberArg } from '../helpers/bench.js';

const N = numberArg('images', 384);
const ROUNDS = numberArg('rounds', 3);
const BATCH = numberArg('batch', 32);

/** Photograph-like JPEGs of CUB's typical sizes: smooth gradients, shapes and sensor noise. */
async function writeImages(dir: string): Promise<void> {
  const rng = new Rng(7);
  for (let i = 0; i < N; i++) {
    const w = 400 + rng.int(101);
    const h = 300 + rng.int(76);
    const px = Buffer.alloc(w * h * 3);
    const [r0, g0, b0] = [rng.int(256), rng.int(256), rng.int(256)];
    const cx = rng.uniform(0, w);
    const cy = rng.uniform(0, h);
    const rad = rng.uniform(30, 120);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const inside = (x - cx) ** 2 + (y - cy) ** 2 < rad * rad;
        const o = (y * w + x) * 3;
        const n = (rng.next() - 0.5) * 24;
        px[o] = Math.max(0, Math.min(255, (inside ? 255 - r0 : r0) * (x / w) + n));
        px[o + 1] = Math.max(0, Math.min(255, (inside ? g0 / 2 : g0) * (y / h) + 40 + n));
        px[o + 2] = Math.max(0, Math.min(255, b0 + n));
      }
    }
    await sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(path.join(dir, `${String(i).padStart(5, '0')}.jpg`));
  }
}

const REFERENCE = String.raw`
import os, sys, time, glob, torch, torchvision
from PIL import Image
import torchvision.transforms as T
d, batch, bits, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(os.cpu_count())
files = sorted(glob.glob(d + '/*.jpg'))
tf = T.Compose([T.Resize((224, 224)), T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
class Files(torch.utils.data.Dataset):
    def __len__(self): return len(files)
    def __getitem__(self, i): return tf(Image.open(files[i]).convert('RGB'))
net = torchvision.models.resnet18()
net.fc = torch.nn.Identity()
hash_layer = torch.nn.Linear(512, bits)
net.eval()
loader = torch.utils.data.DataLoader(Files(), batch_size=batch, num_workers=workers)
t0 = time.perf_counter()
codes = []
with torch.no_grad():
    for x in loader:
        codes.append(torch.tanh(hash_layer(net(x))) > 0)
n = sum(c.shape[0] for c in codes)
print(n, time.perf_counter() - t0)
`;

async function main(): Promise<void> {
  const python = pythonWith('torch', 'torchvision', 'PIL');
  if (!python) {
    console.log('bench:encode needs python3 with torch, torchvision and PIL (Debian: python3-torch python3-torchvision python3-pil)');
    return;
  }
  await selectBackend();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-bench-encode-'));
  try {
    const images = path.join(dir, 'images');
    (await import('node:fs')).mkdirSync(images);
    await writeImages(images);
    const model = createHashingModel({ method: 'srlh', bits: 48, classes: 200 });
    const onnx = path.join(dir, 'srlh.onnx');
    writeFileSync(onnx, exportHashingGraph(model, { inputSize: 224 }).bytes);
    model.dispose();
    console.log(`bench:encode: ${N} JPEGs (400-500 x 300-375), sRLH ResNet-18 48 bits at 224 px, batch ${BATCH}, ${os.cpus().length} cores`);
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const out = path.join(dir, `r${r}.codes`);
      const s = await encode({ model: onnx, source: { kind: 'images', dir: images }, out, batch: BATCH, quiet: true, log: () => undefined });
      ours.push(s.imagesPerSecond);
      let best = 0;
      for (const workers of [0, 2]) {
        const [n, secs] = runPython(python, REFERENCE, [images, String(BATCH), '48', String(workers)]).trim().split(' ').map(Number);
        best = Math.max(best, n! / secs!);
      }
      theirs.push(best);
      console.log(`  round ${r + 1}: fgh ${s.imagesPerSecond.toFixed(1)} images/s, PyTorch ${best.toFixed(1)} images/s`);
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const bestOurs = Math.max(...ours);
    const bestTheirs = Math.max(...theirs);
    console.log(`fgh encode: best ${bestOurs.toFixed(1)} images/s, median ${med(ours).toFixed(1)}`);
    console.log(`PyTorch eager: best ${bestTheirs.toFixed(1)} images/s, median ${med(theirs).toFixed(1)}`);
    console.log(`ratio (fgh / PyTorch): best ${(bestOurs / bestTheirs).toFixed(2)}x, median ${(med(ours) / med(theirs)).toFixed(2)}x (goal 1.5x)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
