import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { invalidArgument } from '@cm/core';
import {
  buildClipBundle,
  formatSummary,
  loadBundle,
  makeSyntheticBundle,
  renderContactSheet,
  summarizeBundle,
  writeBundle,
  writeBundleInto,
} from '@cm/probe';

function positiveInt(name: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0)
      throw invalidArgument(`--${name} must be a non-negative integer, got '${value}'`);
    return n;
  };
}

/** `cm probe ...`: make, build, inspect and preview probe bundles. */
export function registerProbe(program: Command): void {
  const probe = program
    .command('probe')
    .description('probe bundles: the built-in synthetic world, user images scored by CLIP');

  probe
    .command('make')
    .description('write a bundle of the built-in synthetic concept world')
    .option('--world <name>', "synthetic world ('shapes')", 'shapes')
    .option('--images <n>', 'number of probe images', positiveInt('images'), 2000)
    .option('--seed <n>', 'random seed (same seed, byte-identical bundle)', positiveInt('seed'), 7)
    .option('--size <px>', 'image side: 32 or 64', positiveInt('size'), 32)
    .option('--out <dir>', 'bundle folder to write')
    .option('--root <dir>', 'or: a bundle directory; the bundle goes to <root>/<id>/')
    .action(
      async (opts: {
        world: string;
        images: number;
        seed: number;
        size: number;
        out?: string;
        root?: string;
      }) => {
        if (opts.world !== 'shapes')
          throw invalidArgument(
            `unknown world '${opts.world}'`,
            { world: opts.world },
            "the built-in world is 'shapes'",
          );
        if (opts.size !== 32 && opts.size !== 64)
          throw invalidArgument(`--size must be 32 or 64, got ${opts.size}`);
        if (!opts.out === !opts.root) throw invalidArgument('give exactly one of --out DIR or --root DIR');
        const data = makeSyntheticBundle({
          world: 'shapes',
          images: opts.images,
          seed: opts.seed,
          size: opts.size,
        });
        const { id, dir } = opts.out
          ? { id: await writeBundle(opts.out, data), dir: resolve(opts.out) }
          : await writeBundleInto(opts.root!, data);
        process.stdout.write(`${id}\t${dir}\n`);
      },
    );

  probe
    .command('build')
    .description(
      'build a bundle from a folder of PNG/JPEG images and a concept list, scored by a local CLIP model',
    )
    .requiredOption('--images <dir>', 'folder of .png/.jpg images')
    .requiredOption('--concepts <file>', "concept list: one per line, optionally 'name<TAB>category'")
    .requiredOption(
      '--clip-model <dir>',
      'local ONNX CLIP export (config.json, tokenizer, preprocessor_config.json, onnx/*.onnx)',
    )
    .requiredOption('--out <dir>', 'bundle folder to write')
    .option('--size <px>', 'side of the stored probe images', positiveInt('size'), 64)
    .action(
      async (opts: { images: string; concepts: string; clipModel: string; out: string; size: number }) => {
        const { id, dir } = await buildClipBundle({
          imagesDir: opts.images,
          conceptsFile: opts.concepts,
          clipModelDir: opts.clipModel,
          out: opts.out,
          size: opts.size,
          onProgress: (done, total) => process.stderr.write(`\rscored ${done}/${total} images`),
        });
        process.stderr.write('\n');
        process.stdout.write(`${id}\t${dir}\n`);
      },
    );

  probe
    .command('inspect')
    .description('print a summary of a bundle (verifies it first)')
    .argument('<dir>', 'bundle folder')
    .option('--json', 'print the summary as JSON')
    .action((dir: string, opts: { json?: boolean }) => {
      const summary = summarizeBundle(loadBundle(dir));
      process.stdout.write(
        opts.json ? `${JSON.stringify(summary, null, 2)}\n` : `${formatSummary(summary)}\n`,
      );
    });

  probe
    .command('preview')
    .description('draw a contact sheet of probe images with their concepts')
    .argument('<dir>', 'bundle folder')
    .requiredOption('--out <png>', 'PNG file to write')
    .option('--count <n>', 'number of images (from the first)', positiveInt('count'), 48)
    .option('--columns <n>', 'images per row', positiveInt('columns'), 8)
    .action(async (dir: string, opts: { out: string; count: number; columns: number }) => {
      const png = await renderContactSheet(loadBundle(dir), { count: opts.count, columns: opts.columns });
      writeFileSync(opts.out, png);
      process.stdout.write(`${resolve(opts.out)}\n`);
    });
}
