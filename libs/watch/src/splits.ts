/**
 * Read the labelled splits `cm probe make --splits-out DIR` writes (train_images.npy uint8 NHWC,
 * train_labels.npy int64, test_images.npy, test_labels.npy, classes.json), for a tfjs program that
 * trains on the synthetic world (tools/examples/tfjs-watch.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CmError, notFound, readNpy, type NpyArray } from '@cm/core';

export interface LabelledImages {
  /** uint8 RGB, NHWC. */
  images: Uint8Array;
  labels: Int32Array;
  shape: [number, number, number, number];
}

export interface Splits {
  train: LabelledImages;
  test: LabelledImages;
  classes: string[];
}

function split(dir: string, name: 'train' | 'test'): LabelledImages {
  const imagesFile = join(dir, `${name}_images.npy`);
  const labelsFile = join(dir, `${name}_labels.npy`);
  for (const f of [imagesFile, labelsFile])
    if (!existsSync(f))
      throw notFound(
        `${f} is missing`,
        { file: f },
        'write the splits with `cm probe make --splits-out DIR`',
      );
  const images: NpyArray = readNpy(imagesFile);
  const labels: NpyArray = readNpy(labelsFile);
  if (images.dtype !== 'uint8' || images.shape.length !== 4 || images.shape[3] !== 3)
    throw new CmError(
      'CORRUPT',
      `${imagesFile}: expected uint8 [N, H, W, 3], got ${images.dtype} [${images.shape.join(', ')}]`,
    );
  if (labels.shape.length !== 1 || labels.shape[0] !== images.shape[0])
    throw new CmError(
      'CORRUPT',
      `${labelsFile}: expected ${images.shape[0]} labels, got [${labels.shape.join(', ')}]`,
    );
  const asInt = Int32Array.from(labels.data as ArrayLike<number | bigint>, (v) => Number(v));
  return { images: images.data as Uint8Array, labels: asInt, shape: images.shape as LabelledImages['shape'] };
}

export function loadSplits(dir: string): Splits {
  const classesFile = join(dir, 'classes.json');
  if (!existsSync(classesFile))
    throw notFound(
      `${classesFile} is missing`,
      { file: classesFile },
      'write the splits with `cm probe make --splits-out DIR`',
    );
  const classes = JSON.parse(readFileSync(classesFile, 'utf8')) as string[];
  return { train: split(dir, 'train'), test: split(dir, 'test'), classes };
}
