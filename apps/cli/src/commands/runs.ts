import type { Command } from 'commander';
import { TABLES } from '@cm/contracts';
import { runsOverviewSql, sqlString } from '@cm/store';
import { openReadStoreFromFlags, renderJson, renderTable, type StoreFlags } from './sql';

/** Tables runsOverviewSql reads: a store without them (nothing recorded yet) has no runs. */
const OVERVIEW_TABLES = [TABLES.runs, TABLES.checkpoints, TABLES.alerts];

export function registerRuns(program: Command): void {
  program
    .command('runs')
    .description('list runs with their status, last checkpoint step and health (alerts firing or ok)')
    .option(
      '--store <url|dir>',
      'http(s)://host:port for a server, or a chDB data folder (default: the running stack, else CM_CHDB_PATH)',
    )
    .option('--server', 'read the server at CM_CLICKHOUSE_URL instead of the chDB folder')
    .option('--json', 'print JSON instead of a table')
    .action(async (opts: StoreFlags & { json?: boolean }) => {
      const { store, description } = await openReadStoreFromFlags(opts);
      try {
        // a reader does not migrate (that is a write): a store without the tables has no runs yet
        const present = await store.query<{ name: string }>(
          `SELECT name FROM system.tables WHERE database = ${sqlString(store.database)} AND name IN (${OVERVIEW_TABLES.map(sqlString).join(', ')})`,
        );
        const result =
          present.length < OVERVIEW_TABLES.length
            ? { columns: [], rows: [] }
            : await store.queryColumns(
                `SELECT run_id, model, paradigm, status, started_at, checkpoints, last_step, health, firing_rules FROM (${runsOverviewSql(store.database)})`,
              );
        if (opts.json) process.stdout.write(renderJson(result));
        else if (result.rows.length === 0) process.stdout.write(`no runs in ${description}\n`);
        else process.stdout.write(renderTable(result));
      } finally {
        await store.close();
      }
    });
}
