import { buildProgram } from './program';
import { runCli } from './run';

void runCli(buildProgram(process.argv), process.argv);
