import type { Command } from 'commander';
import { TABLES } from '@cm/contracts';
import { createInterface } from 'node:readline/promises';
import { CmError, invalidArgument } from '@cm/core';
import { loadConfig } from '@cm/config';
import {
  closeRun,
  deleteRun,
  describePolicy,
  describeThinning,
  retentionEnabled,
  runsOverviewSql,
  sqlString,
  thinLabels,
  thinningRecords,
} from '@cm/store';
import { openReadStoreFromFlags, renderJson, renderTable, type StoreFlags } from './sql';

const CLOSE_STATUSES = ['failed', 'completed', 'abandoned'] as const;
type CloseStatus = (typeof CLOSE_STATUSES)[number];

/** Ask on the terminal; a script (no TTY) must pass --yes instead. */
async function confirmed(question: string, expected: string): Promise<boolean> {
  if (!process.stdin.isTTY) {
    throw invalidArgument(
      'refusing to delete without confirmation',
      {},
      'pass --yes (no terminal to ask on)',
    );
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return (await rl.question(question)).trim() === expected;
  } finally {
    rl.close();
  }
}

/** Tables runsOverviewSql reads: a store without them (nothing recorded yet) has no runs. */
const OVERVIEW_TABLES = [TABLES.runs, TABLES.checkpoints, TABLES.alerts];

export function registerRuns(program: Command): void {
  const runs = program
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
        // the similarity method of each run (runs.setup_method, migration 3), where the store has it
        const hasSetup = await store.query(
          `SELECT name FROM system.columns WHERE database = ${sqlString(store.database)} AND table = ${sqlString(TABLES.runs)} AND name = 'setup_method'`,
        );
        if (hasSetup.length > 0 && result.rows.length > 0) {
          const methods = new Map(
            (
              await store.query<{ run_id: string; setup_method: string }>(
                `SELECT run_id, setup_method FROM ${TABLES.runs} FINAL`,
              )
            ).map((r) => [r.run_id, r.setup_method]),
          );
          const runIdAt = result.columns.findIndex((c) => c.name === 'run_id');
          result.columns.push({ name: 'method', type: 'String' });
          for (const row of result.rows) row.push(methods.get(String(row[runIdAt])) || '');
        }
        // what the retention job thinned of each run (label_thinning, migration 5), where the store has it
        if (result.rows.length > 0) {
          const thinned = await thinningRecords(store);
          if (thinned.size > 0) {
            const runIdAt = result.columns.findIndex((c) => c.name === 'run_id');
            result.columns.push({ name: 'thinned', type: 'String' });
            for (const row of result.rows)
              row.push(describeThinning(thinned.get(String(row[runIdAt])) ?? []));
          }
        }
        if (opts.json) process.stdout.write(renderJson(result));
        else if (result.rows.length === 0) process.stdout.write(`no runs in ${description}\n`);
        else process.stdout.write(renderTable(result));
      } finally {
        await store.close();
      }
    });

  const storeOption = (cmd: Command): Command =>
    cmd.option('--store <url|dir>', 'http(s)://host:port for a server, or a chDB data folder');

  storeOption(
    runs
      .command('close <id>')
      .description(
        'record a run as ended now (its trainer died without ending it); --status failed|completed|abandoned',
      )
      .option('--status <status>', `one of ${CLOSE_STATUSES.join(', ')}`, 'failed'),
  ).action(async (id: string, opts: StoreFlags & { status: string }) => {
    if (!CLOSE_STATUSES.includes(opts.status as CloseStatus))
      throw invalidArgument(`unknown --status ${opts.status}`, {}, `use one of ${CLOSE_STATUSES.join(', ')}`);
    const { store } = await openReadStoreFromFlags(opts);
    try {
      const closed = await closeRun(store, id, opts.status as CloseStatus);
      process.stdout.write(`run ${id}: ${closed.status} at ${closed.endedAt}\n`);
    } finally {
      await store.close();
    }
  });

  storeOption(
    runs
      .command('thin')
      .description(
        'thin old neuron labels to every k-th checkpoint (CM_LABELS_FULL_DAYS, CM_LABELS_FULL_CHECKPOINTS, CM_LABELS_KEEP_EVERY); runs, checkpoints, layer metrics and alerts stay whole',
      )
      .option('--dry-run', 'print what a pass would remove; change nothing')
      .option('--run <id>', 'only this run')
      .option('--keep-every <k>', 'keep the labels of every k-th checkpoint (default CM_LABELS_KEEP_EVERY)')
      .option(
        '--full-days <days>',
        'labels younger than this keep every checkpoint (default CM_LABELS_FULL_DAYS)',
      )
      .option(
        '--full-checkpoints <n>',
        "each run's newest n checkpoints keep every label (default CM_LABELS_FULL_CHECKPOINTS)",
      ),
  ).action(
    async (
      opts: StoreFlags & {
        dryRun?: boolean;
        run?: string;
        keepEvery?: string;
        fullDays?: string;
        fullCheckpoints?: string;
      },
    ) => {
      const policy = loadConfig(process.env, {
        'retention.keepEvery': opts.keepEvery,
        'retention.fullDays': opts.fullDays,
        'retention.fullCheckpoints': opts.fullCheckpoints,
      }).retention;
      if (!retentionEnabled(policy))
        throw invalidArgument(
          'label thinning is off',
          { ...policy },
          'set CM_LABELS_KEEP_EVERY (2 or more) and CM_LABELS_FULL_DAYS or CM_LABELS_FULL_CHECKPOINTS, or pass --keep-every with --full-days or --full-checkpoints',
        );
      const { store } = await openReadStoreFromFlags(opts);
      try {
        if (!opts.dryRun) await store.migrate(); // label_thinning (migration 5) records the pass
        const { plan, records } = await thinLabels(store, policy, { dryRun: opts.dryRun, run: opts.run });
        const verb = opts.dryRun ? 'would remove' : 'removed';
        process.stdout.write(`policy: ${describePolicy(policy)}\n`);
        const rowsOf = new Map(records.map((r) => [r.runId, r.rowsRemoved]));
        for (const t of plan) {
          const rows = rowsOf.get(t.runId) ?? t.rows;
          process.stdout.write(
            `${t.runId}: steps ${Math.max(0, t.afterStep + 1)}..${t.throughStep} decided, ${t.keptSteps.length} kept: ${verb} the labels of ${t.removeSteps.length} steps (${opts.dryRun ? 'about ' : ''}${rows} rows)\n`,
          );
        }
        if (plan.length === 0)
          process.stdout.write('nothing to thin: no run has label rows older than the policy keeps whole\n');
        else
          process.stdout.write(
            `${opts.dryRun ? 'dry run: nothing changed' : `thinned ${records.length} run${records.length === 1 ? '' : 's'}`}\n`,
          );
      } finally {
        await store.close();
      }
    },
  );

  storeOption(
    runs
      .command('delete <id>')
      .description('delete a run and all its rows (checkpoints, labels, metrics, alerts), after confirmation')
      .option('--yes', 'do not ask (scripts)'),
  ).action(async (id: string, opts: StoreFlags & { yes?: boolean }) => {
    const { store } = await openReadStoreFromFlags(opts);
    try {
      if (
        !opts.yes &&
        !(await confirmed(`delete run ${id} and all its rows? type the run id to confirm: `, id))
      ) {
        throw new CmError('INVALID_ARGUMENT', `not deleted: the confirmation did not match ${id}`);
      }
      const cluster = store.target.kind === 'server' ? store.target.cluster : undefined;
      const rows = await deleteRun(store, id, { cluster });
      const summary = Object.entries(rows)
        .map(([t, n]) => `${n} ${t}`)
        .join(', ');
      process.stdout.write(`run ${id} deleted (${summary})\n`);
    } finally {
      await store.close();
    }
  });
}
