import type { Command } from 'commander';
import { registerStack } from './stack';
import { registerProbe } from './probe';
import { registerSql } from './sql';
import { registerRuns } from './runs';
import { registerDissect } from './dissect';
import { registerTrain } from './train';
import { registerDemo } from './demo';
import { registerServe } from './serve';
import { registerUi } from './ui';
import { registerReport } from './report';

/** Every subcommand registers itself here: one line per command module. */
export const commands: Array<(program: Command) => void> = [
  registerStack,
  registerProbe,
  registerSql,
  registerRuns,
  registerDissect,
  registerTrain,
  registerDemo,
  registerServe,
  registerUi,
  registerReport,
];
