import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { BundleDirectory } from '@cm/probe';
import type { Store } from '@cm/store';
import { loadReportData, type ReportData } from './data';
import { reportFigures, type Figure } from './figures';
import { reportHtml } from './html';
import { renderFigure } from './render';

export * from './data';
export * from './figures';
export * from './html';
export * from './render';

export interface WriteReportOptions {
  store: Store;
  bundles: BundleDirectory;
  run: string;
  compare?: string;
  out: string;
}

export interface WrittenReport {
  data: ReportData;
  figures: { figure: Figure; path: string }[];
  html: string;
}

/** Read the run(s), draw every figure to PNG under `out`, and write `out/index.html` embedding them. */
export async function writeReport(opts: WriteReportOptions): Promise<WrittenReport> {
  const data = await loadReportData(opts);
  const out = resolve(opts.out);
  mkdirSync(out, { recursive: true });
  const rendered: { figure: Figure; png: Buffer; path: string }[] = [];
  for (const figure of reportFigures(data)) {
    const { png } = await renderFigure(figure);
    const path = join(out, figure.file);
    writeFileSync(path, png);
    rendered.push({ figure, png, path });
  }
  const html = join(out, 'index.html');
  writeFileSync(html, reportHtml(data, rendered));
  return { data, figures: rendered.map(({ figure, path }) => ({ figure, path })), html };
}
