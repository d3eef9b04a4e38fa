import { Command, CommanderError } from 'commander';
import { statSync } from 'node:fs';
import { FghError, errorMessage } from '../util/errors.js';
import { fsError, isErrnoError, type ErrnoError } from '../util/fs-errors.js';
import { commands } from './commands/index.js';
import { packageVersion } from '../util/version.js';

/** Builds the `fgh` program; exported so tests can run commands in-process. */
export function buildProgram(): Command {
  const program = new Command('fgh')
    .description('Fine-grained image retrieval by learning to hash: train, export to ONNX, encode, search.')
    .version(packageVersion(), '-V, --version')
    .option('--verbose', 'print stack traces and extra diagnostics')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (str, write) => write(str) })
    // Before the commands, which inherit it: `fgh CMD --help` and usage errors end in main's
    // catch with their exit code instead of process.exit, also when run in-process.
    .exitOverride();
  for (const register of commands) register(program);
  return program;
}

/** Errors of writing, which are about the output when the system call names no path. */
const WRITE_CODES = new Set(['ENOSPC', 'EDQUOT', 'EFBIG', 'EROFS']);

/**
 * The path an errno error without one (read(2) on a directory, write(2) on a full disk) must be
 * about, from the command's arguments, when only one fits; the code that failed should have said.
 */
function guessPath(e: ErrnoError, cmd: Command | null): string | undefined {
  if (e.path || !cmd) return undefined;
  const opts = cmd.opts() as Record<string, unknown>;
  if (WRITE_CODES.has(e.code)) return typeof opts.out === 'string' ? opts.out : undefined;
  if (e.code !== 'EISDIR') return undefined;
  const values = new Set([...cmd.processedArgs, ...Object.values(opts)].flat().filter((v): v is string => typeof v === 'string'));
  const dirs = [...values].filter((v) => {
    try {
      return statSync(v).isDirectory();
    } catch {
      return false;
    }
  });
  return dirs.length === 1 ? dirs[0] : undefined;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  let action: Command | null = null;
  program.hook('preAction', (_program, actionCommand) => {
    action = actionCommand;
  });
  try {
    await program.parseAsync(argv);
    // A command may set a non-zero status without failing (an interrupted, resumable run).
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here too, with exit code 0.
      return e.exitCode;
    }
    const verbose = argv.includes('--verbose');
    // The last resort for file-system errors no command explained: one line naming the path.
    if (isErrnoError(e)) e = fsError(e, guessPath(e, action));
    if (e instanceof FghError) {
      process.stderr.write(`fgh: ${e.message}\n`);
      if (verbose && e.stack) process.stderr.write(`${e.stack}\n`);
      return 1;
    }
    process.stderr.write(`fgh: internal error: ${errorMessage(e)}\n`);
    if (verbose && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    else process.stderr.write('(run again with --verbose for the stack trace)\n');
    return 1;
  }
}
