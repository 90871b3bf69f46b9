import type { Command } from 'commander';
import { runsOverviewSql } from '@cm/store';
import { openStoreFromFlags, renderJson, renderTable, type StoreFlags } from './sql';

export function registerRuns(program: Command): void {
  program
    .command('runs')
    .description('list runs with their status, last checkpoint step and health (alerts firing or ok)')
    .option('--store <url|dir>', 'http(s)://host:port for a server, or a chDB data folder')
    .option('--server', 'read the server at CM_CLICKHOUSE_URL instead of the chDB folder')
    .option('--json', 'print JSON instead of a table')
    .action(async (opts: StoreFlags & { json?: boolean }) => {
      const store = await openStoreFromFlags(opts);
      try {
        await store.migrate(); // idempotent: an empty store lists no runs instead of failing on missing tables
        const result = await store.queryColumns(
          `SELECT run_id, model, paradigm, status, started_at, checkpoints, last_step, health, firing_rules FROM (${runsOverviewSql(store.database)})`,
        );
        if (opts.json) process.stdout.write(renderJson(result));
        else if (result.rows.length === 0)
          process.stdout.write(
            `no runs in ${store.target.kind === 'chdb' ? store.target.path : store.target.url}\n`,
          );
        else process.stdout.write(renderTable(result));
      } finally {
        await store.close();
      }
    });
}
