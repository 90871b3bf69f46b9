import { CommanderError, type Command } from 'commander';
import { isCmError, errorMessage, setLogLevel } from '@cm/core';

/**
 * Run the program and turn every failure into one clear line on stderr and a non-zero exit.
 * `--verbose` (or CM_VERBOSE=1) also prints the stack and the error's context.
 */
export async function runCli(program: Command, argv: string[]): Promise<void> {
  const verbose = argv.includes('--verbose') || process.env.CM_VERBOSE === '1';
  if (verbose) setLogLevel('debug');
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander already printed help or its own message
      process.exitCode = e.exitCode;
      return;
    }
    const code = isCmError(e) ? e.code : 'INTERNAL';
    process.stderr.write(`cm: error: ${errorMessage(e)}\n`);
    if (verbose) {
      if (isCmError(e) && Object.keys(e.context).length)
        process.stderr.write(`context: ${JSON.stringify(e.context)}\n`);
      process.stderr.write(`${(e as Error)?.stack ?? ''}\n`);
    } else if (code === 'INTERNAL') {
      process.stderr.write('cm: run again with --verbose for the stack trace\n');
    }
    process.exitCode = 1;
  }
}
