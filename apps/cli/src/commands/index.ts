import type { Command } from 'commander';
import { registerStack } from './stack';

/** Every subcommand registers itself here: one line per command module. */
export const commands: Array<(program: Command) => void> = [registerStack];
