/** Worker thread entry: runs retrieval job tasks on the memory shared by the main thread. */
import { parentPort, workerData } from 'node:worker_threads';
import { instantiateKernels } from './kernels.js';
import { runTasks, type Job } from './jobs.js';
import type { WorkerInit, WorkerMessage } from './pool.js';

const init = workerData as WorkerInit;
const kernels = instantiateKernels(init.module, init.memory);

parentPort!.on('message', (job: Job) => {
  try {
    runTasks(init.memory, kernels, job, init.thread);
  } catch (e) {
    const msg: WorkerMessage = { error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
    parentPort!.postMessage(msg);
  }
});
