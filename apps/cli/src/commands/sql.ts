import type { Command } from 'commander';
import Table from 'cli-table3';
import { invalidArgument } from '@cm/core';
import { loadConfig } from '@cm/config';
import { notAReadStatement, type QueryColumns } from '@cm/store';
import { announceStore, resolveReadStore, type ReadStore } from '../store-access';

/** `--store URL|DIR` / `--server`, shared by the reading commands (sql, runs). */
export interface StoreFlags {
  store?: string;
  server?: boolean;
}

/**
 * The store a reading command reads (store-access.ts: `--store`, else the running stack, else the
 * embedded folder; `--server` is `--store $CM_CLICKHOUSE_URL`), announced on stderr.
 */
export async function openReadStoreFromFlags(flags: StoreFlags): Promise<ReadStore> {
  const config = loadConfig();
  const read = await resolveReadStore({
    store: flags.store ?? (flags.server ? config.clickhouse.url : undefined),
    config,
  });
  announceStore(read);
  return read;
}

type OutputFormat = 'table' | 'csv' | 'json';
const FORMATS: readonly OutputFormat[] = ['table', 'csv', 'json'];

function cell(v: unknown): string {
  if (v === null || v === undefined) return '';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

/** A result as a terminal table (cli-table3), columns in query order. */
export function renderTable(result: QueryColumns): string {
  const table = new Table({
    head: result.columns.map((c) => c.name),
    style: { head: [], border: [], compact: true },
  });
  for (const row of result.rows) table.push(row.map(cell));
  return `${table.toString()}\n${result.rows.length} row${result.rows.length === 1 ? '' : 's'}\n`;
}

/** A result as a JSON array of objects, keys in column order. */
export function renderJson(result: QueryColumns): string {
  const objects = result.rows.map((row) =>
    Object.fromEntries(result.columns.map((c, i) => [c.name, row[i]])),
  );
  return JSON.stringify(objects, null, 2) + '\n';
}

export function registerSql(program: Command): void {
  program
    .command('sql')
    .description(
      'run a SELECT on the store (the running stack, else the embedded chDB folder; or --store) and print the result',
    )
    .argument(
      '<query>',
      'the SQL query; tables: runs, checkpoints, neuron_labels, layer_metrics, alerts, concepts (read them with FINAL for exactly-once rows)',
    )
    .option('--store <url|dir>', 'http(s)://host:port[/?database=db] for a server, or a chDB data folder')
    .option('--server', 'query the server at CM_CLICKHOUSE_URL instead of the chDB folder')
    .option('--format <format>', `output: ${FORMATS.join(' | ')}`, 'table')
    .option(
      '--write',
      'allow statements that change the store (DROP, ALTER, INSERT, ...); without it only reads run',
    )
    .action(async (query: string, opts: StoreFlags & { format: string; write?: boolean }) => {
      if (!FORMATS.includes(opts.format as OutputFormat)) {
        throw invalidArgument(
          `unknown --format ${opts.format}`,
          { format: opts.format },
          `use one of ${FORMATS.join(', ')}`,
        );
      }
      if (query.trim().length === 0) throw invalidArgument('the query is empty');
      // refused before the store is opened: a typo'd DROP never reaches it
      const notRead = notAReadStatement(query);
      if (notRead && !opts.write) {
        throw invalidArgument(
          notRead,
          { query: query.slice(0, 200) },
          'cm sql is read-only; pass --write to change the store',
        );
      }
      const { store } = await openReadStoreFromFlags(opts);
      try {
        if (notRead) {
          await store.execute(query);
          process.stdout.write('ok: the statement ran\n');
          return;
        }
        const readOnly = { readOnly: !opts.write };
        if (opts.format === 'csv') {
          process.stdout.write(await store.queryText(query, 'CSVWithNames', readOnly));
          return;
        }
        const result = await store.queryColumns(query, readOnly);
        process.stdout.write(opts.format === 'json' ? renderJson(result) : renderTable(result));
      } finally {
        await store.close();
      }
    });
}
