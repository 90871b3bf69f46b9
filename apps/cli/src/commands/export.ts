import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { invalidArgument } from '@cm/core';
import { EXPORT_FORMATS, exportRun, parseExportFormat } from '@cm/store';
import { openReadStoreFromFlags, type StoreFlags } from './sql';

/**
 * `cm export --run ID --format csv|parquet --out DIR`: one file per table of the run. Every table is
 * read first, then each file is written beside its final name and renamed, so an unknown run, a
 * refused format or a failed query leaves DIR untouched.
 */
export function registerExport(program: Command): void {
  program
    .command('export')
    .description(
      "write every table of a run (runs, checkpoints, neuron_labels, layer_metrics, alerts, label_thinning: which steps' labels retention removed) as one CSV or Parquet file each",
    )
    .requiredOption('--run <id>', 'the run to export')
    .requiredOption(
      '--out <dir>',
      'folder for the files (created if missing): <table>.csv or <table>.parquet',
    )
    .option('--format <format>', `${EXPORT_FORMATS.join(' | ')}`, 'csv')
    .option('--store <url|dir>', 'http(s)://host:port[/?database=db] for a server, or a chDB data folder')
    .option('--server', 'read the server at CM_CLICKHOUSE_URL instead of the chDB folder')
    .action(async (opts: StoreFlags & { run: string; out: string; format: string }) => {
      const format = parseExportFormat(opts.format);
      if (opts.run.trim() === '') throw invalidArgument('--run is empty');
      const out = resolve(opts.out);
      const { store } = await openReadStoreFromFlags(opts);
      let tables;
      try {
        tables = await exportRun(store, opts.run, format);
      } finally {
        await store.close();
      }
      mkdirSync(out, { recursive: true });
      try {
        for (const t of tables) {
          const path = join(out, t.file);
          const partial = `${path}.partial`;
          writeFileSync(partial, t.content);
          renameSync(partial, path);
          process.stdout.write(`${t.table}: ${t.rows} row${t.rows === 1 ? '' : 's'} -> ${path}\n`);
        }
      } catch (e) {
        for (const t of tables) {
          const partial = join(out, `${t.file}.partial`);
          if (existsSync(partial)) rmSync(partial, { force: true });
        }
        throw e;
      }
    });
}
