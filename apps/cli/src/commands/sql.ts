import type { Command } from 'commander';
import Table from 'cli-table3';
import { invalidArgument } from '@cm/core';
import { loadConfig, resolvePath } from '@cm/config';
import { openStore, storeTargetFromString, type QueryColumns, type Store } from '@cm/store';

/** `--store URL|DIR` / `--server`, shared by the store commands (sql, runs). */
export interface StoreFlags {
  store?: string;
  server?: boolean;
}

/**
 * Which store a command reads: `--store` if given (http(s):// -> server, else a chDB folder), else
 * CM_CLICKHOUSE_URL with `--server`, else the embedded chDB folder from CM_CHDB_PATH.
 */
export async function openStoreFromFlags(flags: StoreFlags): Promise<Store> {
  const config = loadConfig();
  const chosen = flags.store ?? (flags.server ? config.clickhouse.url : resolvePath(config.chdbPath));
  return openStore(storeTargetFromString(chosen, config.clickhouse));
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
      'run a SELECT on the store (embedded chDB folder by default, or a ClickHouse server) and print the result',
    )
    .argument(
      '<query>',
      'the SQL query; tables: runs, checkpoints, neuron_labels, layer_metrics, alerts, concepts (read them with FINAL for exactly-once rows)',
    )
    .option('--store <url|dir>', 'http(s)://host:port[/?database=db] for a server, or a chDB data folder')
    .option('--server', 'query the server at CM_CLICKHOUSE_URL instead of the chDB folder')
    .option('--format <format>', `output: ${FORMATS.join(' | ')}`, 'table')
    .action(async (query: string, opts: StoreFlags & { format: string }) => {
      if (!FORMATS.includes(opts.format as OutputFormat)) {
        throw invalidArgument(
          `unknown --format ${opts.format}`,
          { format: opts.format },
          `use one of ${FORMATS.join(', ')}`,
        );
      }
      if (query.trim().length === 0) throw invalidArgument('the query is empty');
      const store = await openStoreFromFlags(opts);
      try {
        if (opts.format === 'csv') {
          process.stdout.write(await store.queryText(query, 'CSVWithNames'));
          return;
        }
        const result = await store.queryColumns(query);
        process.stdout.write(opts.format === 'json' ? renderJson(result) : renderTable(result));
      } finally {
        await store.close();
      }
    });
}
