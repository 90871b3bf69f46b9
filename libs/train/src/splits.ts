/**
 * Labelled training and test splits as .npy, so that any framework (PyTorch, JAX, ...) trains on
 * the same data `cm train` does and a monitored run there is comparable with one here. The file
 * names are a contract (the Python SDK's example reads them): train_images.npy (uint8 NHWC),
 * train_labels.npy (int64), test_images.npy, test_labels.npy, classes.json (class i is label i).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { encodeNpy } from '@cm/core';
import type { ImageDataset } from './data';

export const SPLIT_FILES = {
  trainImages: 'train_images.npy',
  trainLabels: 'train_labels.npy',
  testImages: 'test_images.npy',
  testLabels: 'test_labels.npy',
  classes: 'classes.json',
} as const;

function labels64(labels: Int32Array): BigInt64Array {
  const out = new BigInt64Array(labels.length);
  for (let i = 0; i < labels.length; i++) out[i] = BigInt(labels[i]);
  return out;
}

/** Write both splits into `dir` (created if missing); returns the folder. */
export function writeDatasetSplits(dir: string, train: ImageDataset, test: ImageDataset): string {
  const out = resolve(dir);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, SPLIT_FILES.trainImages), encodeNpy(train.images, train.shape, 'uint8'));
  writeFileSync(
    join(out, SPLIT_FILES.trainLabels),
    encodeNpy(labels64(train.labels), [train.labels.length], 'int64'),
  );
  writeFileSync(join(out, SPLIT_FILES.testImages), encodeNpy(test.images, test.shape, 'uint8'));
  writeFileSync(
    join(out, SPLIT_FILES.testLabels),
    encodeNpy(labels64(test.labels), [test.labels.length], 'int64'),
  );
  writeFileSync(join(out, SPLIT_FILES.classes), JSON.stringify(train.classNames, null, 2) + '\n');
  return out;
}
