import test from 'ava';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../exporters/graph.js';
import { encodeModel } from '../../exporters/onnx-writer.js';
import { formatReport, type DoctorReport } from '../../src/cli/commands/doctor.js';
import { fgh, projectRoot } from '../helpers/cli.js';

/**
 * `fgh doctor` tries every accelerator for real. Its verdict for each onnxruntime execution
 * provider is checked against onnxruntime asked directly in this process (on a graph built here);
 * on this machine cpu works and cuda, tensorrt and webgpu fail, with onnxruntime's own words.
 */

/** A different tiny graph from doctor's: y = x + x. */
function graph(): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', 'float32', [1, 3]);
  g.rename(g.op('Add', [x, x]), 'y');
  g.output('y', 'float32', [1, 3]);
  return encodeModel(g, { graphName: 'doctor-test', producerName: 'test', producerVersion: '0' });
}

// onnxruntime's default logger would print the direct attempts' failures into the test output.
ort.env.logLevel = 'fatal';

async function direct(ep: string): Promise<string | null> {
  try {
    const s = await ort.InferenceSession.create(graph(), { executionProviders: [ep], logSeverityLevel: 4 });
    const out = await s.run({ x: new ort.Tensor('float32', Float32Array.from([1, 2, 3]), [1, 3]) });
    await s.release();
    return Array.from(out.y!.data as Float32Array).join() === '2,4,6' ? null : 'wrong result';
  } catch (e) {
    return (e as Error).message;
  }
}

test('doctor runs a session per execution provider and reports the exact error where one fails', async (t) => {
  const r = fgh('doctor', '--json');
  t.is(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout) as DoctorReport;
  t.deepEqual(report.onnxruntime.executionProviders.map((e) => e.name), ['cpu', 'cuda', 'tensorrt', 'webgpu']);
  const cpu = report.onnxruntime.executionProviders[0]!;
  t.true(cpu.available);
  t.is(cpu.error, null);
  t.true(typeof cpu.ms === 'number' && cpu.ms > 0);
  for (const ep of report.onnxruntime.executionProviders) {
    const here = await direct(ep.name);
    t.is(ep.available, here === null, `${ep.name}: doctor agrees with onnxruntime asked directly (${here})`);
    // The same words as onnxruntime's exception for the same provider (doctor's graph is another one).
    if (here !== null) t.is(ep.error?.trim(), here.trim(), ep.name);
  }
  const cuda = report.onnxruntime.executionProviders.find((e) => e.name === 'cuda')!;
  t.regex(cuda.needs, /CUDA 12 and cuDNN 9/);
  if (!cuda.available) t.true(cuda.detail.some((d) => /Failed to load library libonnxruntime_providers_shared\.so/.test(d)), cuda.detail.join('\n'));
  const webgpu = report.onnxruntime.executionProviders.find((e) => e.name === 'webgpu')!;
  if (!webgpu.available) t.regex(webgpu.error ?? '', /Failed to get a WebGPU adapter/);

  let gpuInstalled = true;
  try {
    createRequire(path.join(projectRoot, 'package.json')).resolve('@tensorflow/tfjs-node-gpu');
  } catch {
    gpuInstalled = false;
  }
  t.is(report.tensorflowGpu.status === 'absent', !gpuInstalled);
  t.regex(report.tensorflowGpu.needs, /CUDA 11\.2 and cuDNN 8\.1/);

  const text = { stdout: formatReport(report) }; // what `fgh doctor` prints without --json
  t.regex(text.stdout, /^ {2}\[x\] cpu +works \(\d+ ms\)$/m);
  if (!webgpu.available) t.regex(text.stdout, /^ {2}\[ \] webgpu +failed: .*Failed to get a WebGPU adapter/m);
  if (!cuda.available) t.regex(text.stdout, /^ {2}\[ \] cuda +failed: OrtSessionOptionsAppendExecutionProvider_Cuda/m);
  t.regex(text.stdout, /^GPU training, @tensorflow\/tfjs-node-gpu: /m);
  // Training kernels: onnxruntime's C API here (koffi and the library are both installed), and the binding on request.
  t.deepEqual(report.tfjs.ortCalls?.calls, 'c-api', report.tfjs.ortCalls?.note);
  t.regex(text.stdout, /^ {2}sessions called through onnxruntime's C API/m);
  const viaBinding = formatReport({ ...report, tfjs: { ...report.tfjs, ortCalls: { calls: 'binding', note: 'FGH_ORT_CALLS=binding' } } });
  t.regex(viaBinding, /^ {2}sessions called through onnxruntime-node's binding, which copies every result \(FGH_ORT_CALLS=binding\)$/m);
});
