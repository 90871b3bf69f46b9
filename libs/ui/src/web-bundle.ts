import { join } from 'node:path';
import { build } from 'esbuild';
import { CmError } from '@cm/core';

/** The page's script and style, bundled from libs/ui/web by esbuild when the server starts. */
export interface WebBundle {
  js: string;
  css: string;
}

export const WEB_DIR = join(__dirname, '..', 'web');

let built: Promise<WebBundle> | undefined;

/** Bundles once per process (about a second: ECharts is most of it); later servers reuse it. */
export function webBundle(): Promise<WebBundle> {
  built ??= (async () => {
    try {
      const result = await build({
        entryPoints: [join(WEB_DIR, 'main.ts')],
        bundle: true,
        write: false,
        minify: true,
        format: 'iife',
        target: 'es2020',
        platform: 'browser',
        outdir: 'out',
        legalComments: 'none',
        logLevel: 'silent',
        loader: { '.css': 'css' },
      });
      const js = result.outputFiles.find((f) => f.path.endsWith('.js'))?.text ?? '';
      const css = result.outputFiles.find((f) => f.path.endsWith('.css'))?.text ?? '';
      return { js, css };
    } catch (e) {
      built = undefined;
      throw new CmError('INTERNAL', `could not bundle the web view: ${(e as Error).message}`, {
        context: { dir: WEB_DIR },
        cause: e,
      });
    }
  })();
  return built;
}
