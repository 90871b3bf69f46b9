import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { invalidArgument } from '@cm/core';
import { loadTrainTest, writeDatasetSplits } from '@cm/train';
import {
  formatSummary,
  makeClipBundleData,
  loadBundle,
  makeSyntheticBundle,
  renderContactSheet,
  summarizeBundle,
  writeBundle,
  writeBundleInto,
  type SkippedImage,
} from '@cm/probe';

function positiveInt(name: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0)
      throw invalidArgument(`--${name} must be a non-negative integer, got '${value}'`);
    return n;
  };
}

function fraction(value: string): number {
  const n = Number(value);
  if (!(n > 0 && n < 1)) throw invalidArgument(`--test-fraction must be in (0, 1), got '${value}'`);
  return n;
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
    .option(
      '--splits-out <dir>',
      'also write the labelled training/test splits as .npy (train_images, train_labels, test_images, test_labels, classes.json)',
    )
    .option(
      '--task <factor>',
      "splits: the world task, as cm train --task ('shape', 'colour', 'shape+colour', ...)",
      'shape',
    )
    .option(
      '--count <n>',
      'splits: images to generate (train + test), as cm train --count',
      positiveInt('count'),
      6000,
    )
    .option(
      '--test-fraction <f>',
      'splits: share held out for test, as cm train --test-fraction',
      fraction,
      0.1,
    )
    .option(
      '--data-seed <n>',
      'splits: the seed of cm train --seed (same seed, same splits)',
      positiveInt('data-seed'),
      1,
    )
    .action(
      async (opts: {
        world: string;
        images: number;
        seed: number;
        size: number;
        out?: string;
        root?: string;
        splitsOut?: string;
        task: string;
        count: number;
        testFraction: number;
        dataSeed: number;
      }) => {
        if (opts.world !== 'shapes')
          throw invalidArgument(
            `unknown world '${opts.world}'`,
            { world: opts.world },
            "the built-in world is 'shapes'",
          );
        if (opts.size !== 32 && opts.size !== 64)
          throw invalidArgument(`--size must be 32 or 64, got ${opts.size}`);
        if (opts.out && opts.root) throw invalidArgument('give one of --out DIR or --root DIR, not both');
        if (!opts.out && !opts.root && !opts.splitsOut)
          throw invalidArgument('give one of --out DIR or --root DIR (and/or --splits-out DIR)');
        if (opts.splitsOut) {
          // The same data `cm train --task T --count N --test-fraction F --seed S --size P` trains on.
          const { train, test } = await loadTrainTest(
            { kind: 'world', task: opts.task, count: opts.count, seed: opts.dataSeed, size: opts.size },
            opts.testFraction,
            opts.dataSeed,
          );
          const dir = writeDatasetSplits(opts.splitsOut, train, test);
          process.stderr.write(
            `splits: ${train.shape[0]} train / ${test.shape[0]} test images of ${train.shape[1]}x${train.shape[2]}, ${train.classNames.length} classes (${train.source}) in ${dir}\n`,
          );
        }
        if (!opts.out && !opts.root) return;
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
    .requiredOption(
      '--concepts <file>',
      "concept list: one per line, optionally 'name<TAB>category' (format: docs/probe.md)",
    )
    .requiredOption(
      '--clip-model <dir>',
      'local ONNX CLIP export (config.json, tokenizer, preprocessor_config.json, onnx/*.onnx)',
    )
    .option('--out <dir>', 'bundle folder to write')
    .option('--root <dir>', 'or: a bundle directory; the bundle goes to <root>/<id>/')
    .option('--size <px>', 'side of the stored probe images', positiveInt('size'), 64)
    .option('--skip-bad', 'leave out images that cannot be decoded (listed at the end) instead of failing')
    .action(
      async (opts: {
        images: string;
        concepts: string;
        clipModel: string;
        out?: string;
        root?: string;
        size: number;
        skipBad?: boolean;
      }) => {
        if (!opts.out === !opts.root) throw invalidArgument('give exactly one of --out DIR or --root DIR');
        const skipped: SkippedImage[] = [];
        let progressOpen = false;
        const endProgress = () => {
          if (progressOpen) process.stderr.write('\n');
          progressOpen = false;
        };
        let data;
        try {
          data = await makeClipBundleData({
            imagesDir: opts.images,
            conceptsFile: opts.concepts,
            clipModelDir: opts.clipModel,
            size: opts.size,
            skipBad: opts.skipBad,
            onSkip: (file, reason) => skipped.push({ file, reason }),
            onProgress: (done, total) => {
              progressOpen = true;
              process.stderr.write(`\rscored ${done}/${total} images`);
            },
          });
        } finally {
          // An error is printed on a line of its own, not after the progress counter.
          endProgress();
        }
        if (skipped.length > 0) {
          process.stderr.write(`skipped ${skipped.length} unreadable image(s):\n`);
          for (const s of skipped) process.stderr.write(`  ${s.file}: ${s.reason}\n`);
        }
        const { id, dir } = opts.out
          ? { id: await writeBundle(opts.out, data), dir: resolve(opts.out) }
          : await writeBundleInto(opts.root!, data);
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
