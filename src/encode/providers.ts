import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

/**
 * onnxruntime-node lists CUDA/TensorRT among its providers even when their libraries were not
 * installed (the default install skips the CUDA download): look for the library itself.
 */
export function cudaProviderPath(name: string): string | null {
  const lib = name === 'cuda' ? 'libonnxruntime_providers_cuda.so' : name === 'tensorrt' ? 'libonnxruntime_providers_tensorrt.so' : null;
  if (!lib) return null;
  return findInOrtBin(lib);
}

function findInOrtBin(file: string): string | null {
  try {
    const require = createRequire(import.meta.url);
    const pkgDir = require.resolve('onnxruntime-node/package.json').replace(/package\.json$/, '');
    const p = `${pkgDir}bin/napi-v6/${process.platform}/${process.arch}/${file}`;
    return existsSync(p) ? p : null;
  } catch {
    return null;
  }
}
