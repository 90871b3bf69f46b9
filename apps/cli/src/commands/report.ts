import type { Command } from 'commander';
import { invalidArgument } from '@cm/core';
import { loadConfig, resolvePath } from '@cm/config';
import { BundleDirectory } from '@cm/probe';
import { writeReport } from '@cm/report';
import { announceStore, resolveReadStore } from '../store-access';

export function registerReport(program: Command): void {
  program
    .command('report')
    .description(
      "write the paper's figures of a run (and a compared run, overlaid) as PNG files and one self-contained HTML page",
    )
    .requiredOption('--run <id>', 'the run (`cm runs` lists them)')
    .option('--compare <id>', 'a second run drawn over the first in every figure')
    .option(
      '--store <url|dir>',
      'http(s)://host:port for a server, or a chDB data folder (default: the running stack, else CM_CHDB_PATH)',
    )
    .requiredOption('--out <dir>', 'folder for the PNG files and index.html (created if missing)')
    .action(async (opts: { run: string; compare?: string; store?: string; out: string }) => {
      if (opts.run.trim() === '')
        throw invalidArgument('--run is empty', {}, 'name a run: `cm runs` lists them');
      const config = loadConfig();
      const read = await resolveReadStore({ store: opts.store, config });
      announceStore(read);
      try {
        const report = await writeReport({
          store: read.store,
          bundles: new BundleDirectory(resolvePath(config.bundles.dir)),
          run: opts.run,
          compare: opts.compare,
          out: opts.out,
        });
        for (const note of report.data.notes) process.stderr.write(`note: ${note}\n`);
        for (const f of report.figures)
          process.stdout.write(`${f.path} (${f.figure.width} x ${f.figure.height})\n`);
        process.stdout.write(`${report.html} (embeds the ${report.figures.length} figures)\n`);
      } finally {
        await read.store.close();
      }
    });
}
