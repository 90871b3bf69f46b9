import type { Command } from 'commander';

/**
 * Every subcommand, one line each: its name and how to load its module. A module is loaded only
 * when its command runs (or for `cm --help`), so `cm dissect` does not pay for loading tfjs, chDB,
 * fastify and gRPC (1.3 s and 250 MiB of start-up when every command loaded at once).
 *
 * `require`, not `import()`: the CLI runs its TypeScript through tsx's CommonJS hook
 * (apps/cli/bin/cm.js), which serves require; a dynamic import would go to Node's ESM loader,
 * which cannot load .ts files without another hook.
 */
export interface CommandModule {
  name: string;
  load(): (program: Command) => void;
}

type Registrations = Record<string, (program: Command) => void>;
function lazy(path: string, fn: string): () => (program: Command) => void {
  return () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const module = require(path) as Registrations;
    return module[fn];
  };
}

export const commands: CommandModule[] = [
  { name: 'stack', load: lazy('./stack', 'registerStack') },
  { name: 'probe', load: lazy('./probe', 'registerProbe') },
  { name: 'sql', load: lazy('./sql', 'registerSql') },
  { name: 'runs', load: lazy('./runs', 'registerRuns') },
  { name: 'dissect', load: lazy('./dissect', 'registerDissect') },
  { name: 'train', load: lazy('./train', 'registerTrain') },
  { name: 'demo', load: lazy('./demo', 'registerDemo') },
  { name: 'serve', load: lazy('./serve', 'registerServe') },
  { name: 'ui', load: lazy('./ui', 'registerUi') },
  { name: 'report', load: lazy('./report', 'registerReport') },
  { name: 'export', load: lazy('./export', 'registerExport') },
];
