import { tf } from '../backend/tf.js';
import type { Tensor, Tensor2D, Tensor3D } from '../backend/tf.js';
import type { GraphBuilder } from '../../exporters/graph.js';
import type { Rng } from '../util/rng.js';
import { Module, Sequential, type ForwardContext } from './module.js';
import { Dropout, Linear } from './layers.js';
import { lastMapSide, ResNet } from './resnet.js';
import type { HashingModel } from './hashing.js';
import { detached } from './ops.js';

/**
 * sRLH's `MainNet` (Yajie-Zhang/sRLH networks/sRLH.py): a ResNet-18 whose pooled vector goes
 * through Dropout(0.5) into a classifier (`rawcls_net`) and a hash layer (`hash_layer.0` + tanh);
 * in training, the sub-region localisation module (sRLM) pools local features around the
 * strongest position of each 2x2 block of the last map, and the `numParts` closest to the global
 * vector (L1) are kept for the triplet loss. Names follow the reference state dict.
 */
export interface SrlhOptions {
  bits: number;
  numClasses: number;
  /** Local features kept by the selection (the reference's num_parts). */
  numParts?: number;
}

export interface SrlhTrainOutputs {
  /** Classifier logits [N, classes]. */
  logits: Tensor2D;
  /** tanh outputs [N, bits]. */
  features: Tensor2D;
  /** Selected local features [N, numParts, C], closest to the global vector first. */
  locals: Tensor3D;
}

/** sRLM's block size: blocks of STEP x STEP cells tile the map from its top-left corner. */
const STEP = 2;

/** sRLM's sub-regions for a square input: 2x2 blocks tiling the last map (9 at 224 px, 4 at 112). */
export function srlhSubRegions(inputSize: number): number {
  return Math.floor(lastMapSide(inputSize) / STEP) ** 2;
}

export class Srlh extends Module implements HashingModel {
  readonly method = 'srlh' as const;
  readonly arch = 'resnet18' as const;
  readonly bits: number;
  readonly numClasses: number;
  readonly numParts: number;
  readonly backbone: ResNet;
  readonly classifier: Linear;
  readonly hashLayer: Sequential;
  private readonly dropout = new Dropout(0.5);

  constructor(rng: Rng, opts: SrlhOptions) {
    super();
    this.bits = opts.bits;
    this.numClasses = opts.numClasses;
    this.numParts = opts.numParts ?? 3;
    this.backbone = this.child('pretrained_model', new ResNet(rng, 'resnet18'));
    const c = this.backbone.outChannels;
    this.classifier = this.child('rawcls_net', new Linear(rng, c, opts.numClasses));
    this.hashLayer = this.child('hash_layer', new Sequential([new Linear(rng, c, opts.bits)]));
    this.assignNames();
  }

  /** Eval: tanh features [N, bits]. */
  encode(x: Tensor): Tensor2D {
    return tf.tidy(() => tf.tanh(this.hashLayer.forward(this.backbone.features(x, { training: false }).pooled, { training: false })) as Tensor2D);
  }

  /** Training forward (BN in training mode, dropout unless ctx.noDropout). */
  forwardTrain(x: Tensor, ctx: ForwardContext): SrlhTrainOutputs {
    const { map, pooled } = this.backbone.features(x, ctx);
    const g = this.dropout.forward(pooled, ctx) as Tensor2D;
    const logits = this.classifier.forward(g) as Tensor2D;
    const features = tf.tanh(this.hashLayer.forward(g, ctx)) as Tensor2D;
    const local = this.dropout.forward(localFeatures(map), ctx) as Tensor3D;
    return { logits, features, locals: selectParts(g, local, this.numParts) };
  }

  emitFeatures(g: GraphBuilder, x: string): string {
    const { pooled } = g.scoped('pretrained_model', () => this.backbone.emitFeatures(g, x));
    return g.op('Tanh', [g.scoped('hash_layer', () => this.hashLayer.emit(g, pooled))]);
  }
}

/**
 * sRLM on a batch [N,H,W,C] -> [N,K,C], K = floor(H/2) * floor(W/2): per block, the anchor is the
 * first maximum of the channel sum; the weights R = softmax(relu(cosine(anchor, every cell)) /
 * (distance to the anchor + 1)) are constants (the reference detaches them), and the local
 * feature is the R-weighted sum of the cells. Batched: one gather, one matmul, one softmax.
 */
export function localFeatures(map: Tensor): Tensor3D {
  const [n, h, w, c] = map.shape as [number, number, number, number];
  const bh = Math.floor(h / STEP);
  const bw = Math.floor(w / STEP);
  const cells = h * w;
  const flat = tf.reshape(map, [n, cells, c]) as Tensor3D;
  const weights = blockWeights(map, bh, bw);
  return tf.matMul(weights, flat) as Tensor3D;
}

/** The detached R of every block, [N, K, H*W]. */
function blockWeights(map: Tensor, bh: number, bw: number): Tensor3D {
  const [n, h, w, c] = map.shape as [number, number, number, number];
  const cells = h * w;
  return detached((v: Tensor) => {
    const a = tf.sum(v, 3); // [N,H,W]
    // Blocks as [N, K, STEP*STEP], row-major inside a block as the reference flattens it.
    const blocks = tf.reshape(tf.transpose(tf.reshape(tf.slice(a, [0, 0, 0], [n, bh * STEP, bw * STEP]), [n, bh, STEP, bw, STEP]), [0, 1, 3, 2, 4]), [n, bh * bw, STEP * STEP]);
    const m = tf.argMax(blocks, 2); // [N,K] int32, first maximum
    const origin = blockOrigins(bh, bw);
    const step = tf.scalar(STEP, 'int32');
    const row = tf.add(origin.rows, tf.floorDiv(m, step));
    const col = tf.add(origin.cols, tf.mod(m, step));
    const anchor = tf.add(tf.mul(row, tf.scalar(w, 'int32')), col); // cell index r * W + c
    const flat = tf.reshape(v, [n, cells, c]);
    // sqrt(sum(x^2)) as tf.norm computes it, without its Pow: the cpu kernel's broadcast loop took 10 ms a step.
    const unit = tf.div(flat, tf.maximum(tf.sqrt(tf.sum(tf.square(flat), 2, true)), 1e-12));
    // Rows picked by a one-hot matmul: the wasm GatherV2 kernel mishandles batchDims (tfjs 4.22).
  const anchors = tf.matMul(tf.cast(tf.oneHot(anchor, cells), 'float32'), unit); // [N,K,C]
    const t = tf.relu(tf.matMul(anchors, unit, false, true)); // [N,K,cells]
    const cellRow = tf.floorDiv(tf.range(0, cells, 1, 'int32'), tf.scalar(w, 'int32'));
    const cellCol = tf.mod(tf.range(0, cells, 1, 'int32'), tf.scalar(w, 'int32'));
    const dr = tf.cast(tf.sub(tf.expandDims(row, 2), cellRow), 'float32');
    const dc = tf.cast(tf.sub(tf.expandDims(col, 2), cellCol), 'float32');
    const e = tf.add(tf.sqrt(tf.add(tf.square(dr), tf.square(dc))), 1);
    return tf.softmax(tf.div(t, e), 2) as Tensor3D;
  }, map);
}

function blockOrigins(bh: number, bw: number): { rows: Tensor; cols: Tensor } {
  const rows = new Int32Array(bh * bw);
  const cols = new Int32Array(bh * bw);
  for (let i = 0; i < bh; i++) {
    for (let j = 0; j < bw; j++) {
      rows[i * bw + j] = i * STEP;
      cols[i * bw + j] = j * STEP;
    }
  }
  return { rows: tf.tensor1d(rows, 'int32'), cols: tf.tensor1d(cols, 'int32') };
}

/**
 * The `parts` local features closest to the global vector by L1 distance (the reference's
 * sum of sqrt((g - v)^2)), nearest first: [N,K,C] -> [N,parts,C].
 */
export function selectParts(global: Tensor2D, locals: Tensor3D, parts: number): Tensor3D {
  const k = locals.shape[1];
  if (parts > k) throw new Error(`num_parts ${parts} exceeds the ${k} sub-regions of the feature map`);
  // One sub-region (maps under 4 x 4): nothing to choose (and OneHot needs a depth of 2).
  if (k === 1) return tf.clone(locals) as Tensor3D;
  // A one-hot selection matrix [N, parts, K]: picking by matmul keeps the gradient a matmul too.
  const select = detached((gl: Tensor, lo: Tensor) => {
    const dist = tf.sum(tf.abs(tf.sub(tf.expandDims(gl, 1), lo)), 2); // [N,K]
    // int32 then cast: the wasm OneHot kernel writes integer bits into float32 outputs (tfjs 4.22).
    return tf.cast(tf.oneHot(tf.topk(tf.neg(dist), parts, true).indices, k), 'float32') as Tensor3D;
  }, global, locals);
  const picked = tf.matMul(select, locals) as Tensor3D;
  select.dispose();
  return picked;
}

/**
 * Maps a name of the authors' MainNet state dict to ours: their backbone's `fc` exists but is
 * never used (dropped); everything else keeps its name.
 */
export function srlhTorchName(name: string): string | null {
  return name.startsWith('pretrained_model.fc.') ? null : name;
}
