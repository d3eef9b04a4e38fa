import type { Module } from '../models/module.js';
import { loadStateDict } from '../models/state-dict.js';
import { FghError } from '../util/errors.js';
import { readCheckpoint } from '../weights/checkpoint.js';

/**
 * Starting weights for a hashing run (`--init`): a backbone checkpoint (fgh convert-weights, or
 * fgh finetune, whose `fc` is the classifier) goes under the model's backbone prefix, as the
 * reference loads its finetuned `pretrained_model.*`/`rawcls_net.*` non-strictly; a checkpoint of
 * the same method loads as it is. Returns a one-line account of what was loaded.
 */
export async function loadInitWeights(model: Module & { method: string }, dir: string, backbonePrefix = model.method === 'srlh' ? 'pretrained_model' : 'backbone'): Promise<string> {
  const ckpt = await readCheckpoint(dir);
  const own = new Map(model.parameters().map((p) => [p.name, p]));
  let rename: (n: string) => string | null;
  if (ckpt.config.method === 'backbone') {
    rename = (n) => {
      if (n.startsWith('fc.')) {
        // The finetuned classifier becomes sRLH's rawcls_net when the class counts agree.
        const target = backbonePrefix ? `rawcls_net.${n.slice(3)}` : n;
        const p = own.get(target);
        const t = ckpt.tensors.get(n)!;
        return p && p.torchShape.join() === t.shape.join() ? target : null;
      }
      const target = backbonePrefix ? `${backbonePrefix}.${n}` : n;
      return own.has(target) ? target : null;
    };
  } else if (ckpt.config.method === model.method && backbonePrefix) {
    rename = (n) => n;
  } else {
    throw new FghError(`${dir}: a ${ckpt.config.method} checkpoint cannot initialise a ${model.method} model`);
  }
  let report;
  try {
    report = loadStateDict(model, ckpt.tensors, { rename });
  } catch (e) {
    if (e instanceof FghError) throw new FghError(`${dir}: ${e.message}`);
    throw e;
  }
  const backboneLoaded = report.loaded.filter((n) => (backbonePrefix ? n.startsWith(`${backbonePrefix}.`) : !n.startsWith('fc.'))).length;
  if (backboneLoaded === 0) throw new FghError(`${dir}: none of its tensors fit the ${model.method} backbone (is it the right architecture?)`);
  return `${report.loaded.length} tensors loaded (${backboneLoaded} backbone), ${report.missing.length} left at their initial values`;
}
