import { CmError, invalidArgument } from '@cm/core';
import { TABLES, type TableName } from '@cm/contracts';
import { qualified } from './schema';
import { sqlString } from './sql';
import type { Store } from './store';
import { binaryFormatsFor, parseServerVersion } from './version';

/**
 * `cm export`: every table of one run as one file per table, rendered by ClickHouse itself
 * (CSVWithNames, or Parquet where the server has it). FINAL gives each record once, as the
 * dashboards read it; rows come in the table's key order so two exports of a run are identical.
 */
export const EXPORT_FORMATS = ['csv', 'parquet'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/**
 * The tables a run has rows in (the concept dictionary belongs to a probe bundle, not a run).
 * label_thinning says which steps' labels retention removed (migration 5): without it an analyst
 * would read a thinned run's gaps in neuron_labels as checkpoints that were never labelled.
 */
export const RUN_TABLES: readonly TableName[] = [
  TABLES.runs,
  TABLES.checkpoints,
  TABLES.neuronLabels,
  TABLES.layerMetrics,
  TABLES.alerts,
  TABLES.labelThinning,
];

/** Tables a store may lack (made by a migration a reader does not run): exported when present. */
const OPTIONAL_TABLES: readonly TableName[] = [TABLES.labelThinning];

const ORDER: Record<string, string> = {
  [TABLES.runs]: 'run_id',
  [TABLES.checkpoints]: 'run_id, step',
  [TABLES.neuronLabels]: 'run_id, layer, step, neuron',
  [TABLES.layerMetrics]: 'run_id, layer, step',
  [TABLES.alerts]: 'run_id, alert_id, state',
  [TABLES.labelThinning]: 'run_id, through_step',
};

export interface ExportedTable {
  table: TableName;
  /** file name inside the output folder: <table>.csv / <table>.parquet */
  file: string;
  rows: number;
  content: Buffer;
}

export function parseExportFormat(value: string): ExportFormat {
  if (!EXPORT_FORMATS.includes(value as ExportFormat))
    throw invalidArgument(
      `unknown --format ${value}`,
      { format: value },
      `use one of ${EXPORT_FORMATS.join(', ')}`,
    );
  return value as ExportFormat;
}

export function runTableSql(database: string, table: TableName, runId: string): string {
  return `SELECT * FROM ${qualified(database, table)} FINAL WHERE run_id = ${sqlString(runId)} ORDER BY ${ORDER[table]}`;
}

/** Refuses Parquet on a server without Parquet output (18.16), naming the version. */
export function assertExportFormatSupported(store: Pick<Store, 'serverVersion'>, format: ExportFormat): void {
  if (format === 'parquet' && !binaryFormatsFor(parseServerVersion(store.serverVersion)).includes('Parquet'))
    throw new CmError('INVALID_ARGUMENT', `ClickHouse ${store.serverVersion} cannot write Parquet`, {
      context: { serverVersion: store.serverVersion },
      hint: 'export with --format csv, or from a store on ClickHouse 20.3 or later (chDB has Parquet)',
    });
}

/**
 * Reads every table of the run; nothing is written here, so an unknown run or a refused format
 * leaves the output folder as it was. All tables are read before the caller writes any file.
 */
export async function exportRun(store: Store, runId: string, format: ExportFormat): Promise<ExportedTable[]> {
  assertExportFormatSupported(store, format);
  const runs = await store.query<{ n: string | number }>(
    `SELECT count() AS n FROM ${qualified(store.database, TABLES.runs)} FINAL WHERE run_id = ${sqlString(runId)}`,
  );
  if (Number(runs[0]?.n ?? 0) === 0)
    throw new CmError('NOT_FOUND', `no run ${runId} in the store`, {
      context: { runId, database: store.database },
      hint: 'list the runs with `cm runs`',
    });
  const present = new Set(
    (
      await store.query<{ name: string }>(
        `SELECT name FROM system.tables WHERE database = ${sqlString(store.database)}`,
      )
    ).map((t) => t.name),
  );
  const out: ExportedTable[] = [];
  for (const table of RUN_TABLES) {
    // a store never migrated to label_thinning was never thinned: there is nothing to export
    if (OPTIONAL_TABLES.includes(table) && !present.has(table)) continue;
    const sql = runTableSql(store.database, table, runId);
    const count = await store.query<{ n: string | number }>(`SELECT count() AS n FROM (${sql})`);
    const content =
      format === 'csv'
        ? Buffer.from(await store.queryText(sql, 'CSVWithNames', { readOnly: true }), 'utf8')
        : await store.queryBinary(sql, 'Parquet', { readOnly: true });
    out.push({ table, file: `${table}.${format}`, rows: Number(count[0]?.n ?? 0), content });
  }
  return out;
}
