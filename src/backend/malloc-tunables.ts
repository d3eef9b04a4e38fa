/**
 * glibc malloc settings for training, set by bin/fgh and the npm scripts (GLIBC_TUNABLES is read
 * when a process starts). By default every block of 32 MiB or more is a fresh mmap, and each page
 * of it faults on first touch: a 51 MB activation then costs 20 ms before any arithmetic, more
 * than the arithmetic. With the mmap threshold fixed, freed memory at the top of the heap is still
 * trimmed back to the kernel above 128 KiB (the trim threshold no longer follows the mmap
 * threshold), so both are raised. And without fastbins and the per-thread cache: onnxruntime
 * allocates its intermediates aligned, which leaves a small chunk before and after each; parked in
 * those caches, which never merge, the small chunks kept the large freed blocks from merging, so
 * the next request of the same size did not fit in them and the heap grew by fresh memory (one
 * batch-norm kernel called in a loop grew it by 12.8 MB every one to three calls; a sRLH step's
 * peak RSS went from 1.58-1.63 GiB to 1.06 GiB, SEMICON's from 4.36 to 3.46 GiB).
 */
export const MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736:glibc.malloc.mxfast=0:glibc.malloc.tcache_count=0';

/** Whether GLIBC_TUNABLES sets every one of MALLOC_TUNABLES's settings to its value (always true off Linux). */
export function mallocTuned(env: NodeJS.ProcessEnv = process.env): boolean {
  const set = new Set((env.GLIBC_TUNABLES ?? '').split(':'));
  return MALLOC_TUNABLES.split(':').every((s) => set.has(s)) || process.platform !== 'linux';
}
