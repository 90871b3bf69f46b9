import { Command } from 'commander';
import { commands } from './commands';

/** The command named in `argv` (the first word after the global flags), if it is one of ours. */
export function commandNamed(argv: readonly string[]): string | undefined {
  const word = argv.slice(2).find((a) => !a.startsWith('-'));
  return commands.some((c) => c.name === word) ? word : undefined;
}

/**
 * The `cm` program for these arguments: with a known command, only that command's module is
 * loaded; otherwise (`cm --help`, a typo) all of them, so help and suggestions list every command.
 */
export function buildProgram(argv: readonly string[] = process.argv): Command {
  const program = new Command('cm')
    .description('Concept-Monitor: watch a network learn, neuron by neuron')
    .version('0.1.0')
    .option('--verbose', 'show debug logs and stack traces on error')
    .showHelpAfterError('(run cm --help for usage)');
  const named = commandNamed(argv);
  for (const c of commands) if (!named || c.name === named) c.load()(program);
  return program;
}
