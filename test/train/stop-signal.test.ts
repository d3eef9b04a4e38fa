import test from 'ava';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { projectRoot } from '../helpers/cli.js';

/**
 * Ctrl-C during training stops at the next batch. Node runs signal handlers from its event loop,
 * and a batch whose data is already in memory only awaits settled promises, which never turn it:
 * checking `requested` there sees the signal only when the epoch's end writes a file. The child
 * process sends itself SIGINT with the handler installed (signals would reach the test runner too).
 */
test('a Ctrl-C is seen at the next batch even when no batch waits on I/O', (t) => {
  const run = pathToFileURL(path.join(projectRoot, 'dist', 'src', 'train', 'run.js')).href;
  const script = `
    const { StopSignal } = await import(${JSON.stringify(run)});
    const stop = new StopSignal();
    const uninstall = stop.install();
    process.kill(process.pid, 'SIGINT');
    let microtasksOnly = false;
    for (let batch = 0; batch < 1000; batch++) microtasksOnly ||= await Promise.resolve(stop.requested);
    const polled = await stop.poll();
    uninstall();
    console.log(JSON.stringify({ microtasksOnly, polled }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  const seen = JSON.parse(r.stdout.trim().split('\n').pop()!) as { microtasksOnly: boolean; polled: boolean };
  t.false(seen.microtasksOnly, 'awaiting settled promises never ran the handler (what the loops did before)');
  t.true(seen.polled, 'poll() lets the signal in');
  t.regex(r.stderr, /stopping after the current batch/);
});
