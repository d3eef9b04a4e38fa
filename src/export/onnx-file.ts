import { statSync } from 'node:fs';
import { selectBackend } from '../backend/select.js';
import { DEFAULT_OPSET } from '../../exporters/onnx-writer.js';
import { exportBackboneGraph } from './backbone.js';
import { exportHashingGraph, type ExportedGraph } from './hashing.js';
import { loadCheckpointModel } from '../weights/load-model.js';
import type { ResNetArch } from '../models/resnet.js';
import { writeFileAtomic } from '../util/atomic.js';
import { FghError } from '../util/errors.js';

/** `fgh export --onnx` as a function: used by the command and by `fgh demo`. */
export interface ExportSummary {
  out: string;
  method: string;
  arch: string;
  bits: number;
  inputSize: number;
  opset: number;
  nodes: number;
  initializers: number;
  bytes: number;
  batchNormFolded: boolean;
}

export interface ExportRequest {
  checkpoint?: string;
  backbone?: ResNetArch;
  weights?: string;
  out: string;
  opset?: number;
  size?: number;
  keepBatchNorm?: boolean;
}

/** Loads a checkpoint, emits its eval graph and writes it atomically (never a half-written file). */
export async function exportOnnx(req: ExportRequest): Promise<ExportSummary> {
  if (req.checkpoint && (req.backbone || req.weights)) throw new FghError('give either --checkpoint, or --backbone with --weights, not both');
  const dir = req.checkpoint ?? req.weights;
  if (!dir) throw new FghError(req.backbone ? '--backbone needs --weights CKPT' : 'give --checkpoint CKPT (hashing model) or --backbone ARCH --weights CKPT');
  if (req.weights && !req.backbone) throw new FghError('--weights goes with --backbone resnet18|resnet50');
  await selectBackend();
  const loaded = await loadCheckpointModel(dir);
  const { config } = loaded;
  try {
    const common = {
      inputSize: req.size ?? config.inputSize,
      opset: req.opset ?? DEFAULT_OPSET,
      keepBatchNorm: req.keepBatchNorm ?? false,
      transform: config.transform,
      mean: config.mean,
      std: config.std,
    };
    let graph: ExportedGraph;
    let bits = 0;
    if (req.backbone) {
      // A hashing checkpoint's backbone is not what --backbone means: ask for the right flag.
      if (loaded.kind !== 'backbone') throw new FghError(`${dir} is a ${config.method} checkpoint: export it with --checkpoint`);
      if (loaded.model.arch !== req.backbone) throw new FghError(`${dir} holds ${loaded.model.arch}, not ${req.backbone}`);
      graph = exportBackboneGraph(loaded.model, common);
    } else {
      if (loaded.kind !== 'hashing') throw new FghError(`${dir} is a plain ${config.arch} backbone: export it with --backbone ${config.arch} --weights ${dir}`);
      graph = exportHashingGraph(loaded.model, common);
      bits = loaded.model.bits;
    }
    await writeFileAtomic(req.out, graph.bytes);
    return {
      out: req.out,
      method: config.method,
      arch: config.arch,
      bits,
      inputSize: common.inputSize,
      opset: graph.opset,
      nodes: graph.nodes,
      initializers: graph.initializers,
      bytes: statSync(req.out).size,
      batchNormFolded: !common.keepBatchNorm,
    };
  } finally {
    loaded.model.dispose();
  }
}
