import { Command, CommanderError } from 'commander';
import { FghError, errorMessage } from '../util/errors.js';
import { commands } from './commands/index.js';
import { packageVersion } from '../util/version.js';

/** Builds the `fgh` program; exported so tests can run commands in-process. */
export function buildProgram(): Command {
  const program = new Command('fgh')
    .description('Fine-grained image retrieval by learning to hash: train, export to ONNX, encode, search.')
    .version(packageVersion(), '-V, --version')
    .option('--verbose', 'print stack traces and extra diagnostics')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (str, write) => write(str) });
  for (const register of commands) register(program);
  return program;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
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
