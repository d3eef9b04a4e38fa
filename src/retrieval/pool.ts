/**
 * Runs a job's tasks on the calling thread plus `workers` worker threads that share its
 * WebAssembly memory. The caller works from the first moment, so a job that finishes before the
 * workers have booted does not wait for them; workers are spawned only above a size threshold
 * (see `threadsFor`), since booting one costs tens of milliseconds.
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { instantiateKernels, type KernelExports } from './kernels.js';
import { runTasks, type Job } from './jobs.js';
import { waitChange, type WasmMemory, type WasmModule } from '../util/wasm-api.js';

export interface WorkerInit {
  module: WasmModule;
  memory: WasmMemory;
  thread: number;
}

export type WorkerMessage = { error: string };

export interface ThreadOptions {
  /** Upper bound on threads (default: available parallelism). */
  threads?: number;
  /**
   * Work units per extra thread (one unit = one 64-bit word compared, ~0.4 ns); default 1e8, so
   * that jobs under ~40 ms stay on one thread, where booting workers would cost more than it saves.
   * 0 uses `threads` whatever the size (tests).
   */
  workPerThread?: number;
}

export function threadsFor(work: number, opts: ThreadOptions = {}): number {
  const max = opts.threads ?? os.availableParallelism();
  if (!Number.isInteger(max) || max < 1) throw new Error(`threads must be a positive integer, got ${max}`);
  const per = opts.workPerThread ?? 1e8;
  return per <= 0 ? max : Math.max(1, Math.min(max, Math.floor(work / per)));
}

export class Pool {
  private readonly kernels: KernelExports;
  private readonly workers: Worker[] = [];
  private failure: Error | null = null;
  private readonly failed: Promise<never>;
  private rejectFailed!: (e: Error) => void;

  constructor(
    module: WasmModule,
    private readonly memory: WasmMemory,
    threads: number,
  ) {
    this.kernels = instantiateKernels(module, memory);
    this.failed = new Promise<never>((_, reject) => {
      this.rejectFailed = reject;
    });
    this.failed.catch(() => undefined);
    for (let t = 1; t < threads; t++) {
      const init: WorkerInit = { module, memory, thread: t };
      const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: init });
      w.on('message', (m: WorkerMessage) => this.fail(new Error(`retrieval worker ${t}: ${m.error}`)));
      w.on('error', (e) => this.fail(e));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`retrieval worker ${t} exited with code ${code}`));
      });
      w.unref();
      this.workers.push(w);
    }
  }

  get threads(): number {
    return this.workers.length + 1;
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    this.rejectFailed(e);
  }

  /**
   * Runs every task of `job` on `threads` threads (this one included); resolves when all have
   * finished, whoever ran them. `progress` hears the number of finished tasks from time to time.
   */
  async run(job: Job, progress?: (finished: number, total: number) => void, threads = this.threads): Promise<void> {
    if (this.failure) throw this.failure;
    const control = new Int32Array(this.memory.buffer, job.control, 2);
    Atomics.store(control, 0, 0);
    Atomics.store(control, 1, 0);
    // Idle workers must not keep the process alive, busy ones must (a pending waitAsync does not).
    const busy = this.workers.slice(0, threads - 1);
    for (const w of busy) {
      w.ref();
      w.postMessage(job);
    }
    try {
      const total = job.tasks.length;
      runTasks(this.memory, this.kernels, job, 0, progress && ((f) => progress(f, total)));
      for (;;) {
        const done = Atomics.load(control, 1);
        progress?.(done, total);
        if (done >= total) return;
        await Promise.race([waitChange(control, 1, done), this.failed]);
      }
    } finally {
      for (const w of busy) w.unref();
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
