/**
 * Test hooks for kill-and-resume tests: with FGH_TEST_KILL_AFTER_SAVE=N (a training run's saves)
 * or FGH_TEST_KILL_AFTER_COMMIT=N (an encode's store commits), or FGH_TEST_KILL_AT_FINISH=1 (an
 * encode that has finished, before its work store replaces OUT), or FGH_TEST_KILL_AFTER_PUSH=N (a
 * `fgh codes push`'s inserts), or FGH_TEST_KILL_IN_SWAP=N (a checkpoint replacement, between moving
 * the old directory aside and moving the new one in), the process kills itself with
 * SIGKILL, no cleanup, right after the N-th such event. Tests then stop a run at a chosen point
 * instead of racing a timer; unset, the hooks do nothing.
 */
export type KillPoint = 'save' | 'commit' | 'finish' | 'push' | 'swap';

const VARIABLE: Record<KillPoint, string> = { save: 'FGH_TEST_KILL_AFTER_SAVE', commit: 'FGH_TEST_KILL_AFTER_COMMIT', finish: 'FGH_TEST_KILL_AT_FINISH', push: 'FGH_TEST_KILL_AFTER_PUSH', swap: 'FGH_TEST_KILL_IN_SWAP' };
const seen: Record<KillPoint, number> = { save: 0, commit: 0, finish: 0, push: 0, swap: 0 };

export function killPoint(point: KillPoint): void {
  const n = Number(process.env[VARIABLE[point]] ?? 0);
  if (Number.isInteger(n) && n > 0 && ++seen[point] === n) process.kill(process.pid, 'SIGKILL');
}
