import { Command } from 'commander';
import { commands } from './commands';

export function buildProgram(): Command {
  const program = new Command('cm')
    .description('Concept-Monitor: watch a network learn, neuron by neuron')
    .version('0.1.0')
    .option('--verbose', 'show debug logs and stack traces on error')
    .showHelpAfterError('(run cm --help for usage)');
  for (const register of commands) register(program);
  return program;
}
