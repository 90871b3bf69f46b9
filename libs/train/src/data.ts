import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import sharp from 'sharp';
import { CmError, invalidArgument, notFound } from '@cm/core';
import { makeWorldDataset, mulberry32, type Rng } from '@cm/probe';

/** A labelled image set held in memory: N x H x W x 3 uint8 RGB, labels 0..K-1. */
export interface ImageDataset {
  images: Uint8Array;
  labels: Int32Array;
  classNames: string[];
  /** [N, H, W, 3] */
  shape: [number, number, number, number];
  /** Where it came from, for run tags. */
  source: string;
}

export type DataSpec =
  | { kind: 'world'; task?: string; count: number; seed: number; size?: 32 | 64 }
  | { kind: 'cifar10'; dir: string; split: 'train' | 'test'; limit?: number }
  | { kind: 'folder'; dir: string; size: number; limit?: number };

export const CIFAR10_CLASSES = [
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
];
const CIFAR_RECORD = 1 + 32 * 32 * 3;

function checkDataset(ds: ImageDataset): ImageDataset {
  const [n, h, w, c] = ds.shape;
  if (c !== 3 || ds.images.length !== n * h * w * c || ds.labels.length !== n) {
    throw new CmError(
      'INTERNAL',
      `dataset ${ds.source}: ${ds.images.length} bytes / ${ds.labels.length} labels do not match shape ${ds.shape.join('x')}`,
    );
  }
  return ds;
}

/** The built-in synthetic world's classification task (default 'shape'). */
export function worldDataset(spec: {
  task?: string;
  count: number;
  seed: number;
  size?: 32 | 64;
}): ImageDataset {
  const ds = makeWorldDataset({
    task: spec.task ?? 'shape',
    count: spec.count,
    seed: spec.seed,
    size: spec.size ?? 32,
  });
  return checkDataset({ ...ds, source: `world:${spec.task ?? 'shape'}` });
}

/**
 * CIFAR-10 "binary version" (data_batch_1..5.bin, test_batch.bin): records of 1 label byte and
 * 3072 pixel bytes stored channel-planar (1024 R, 1024 G, 1024 B), converted here to NHWC.
 */
export function loadCifar10(dir: string, split: 'train' | 'test' = 'train', limit?: number): ImageDataset {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw notFound(
      `CIFAR-10 folder ${dir} does not exist`,
      { dir },
      'download the binary version (cifar-10-binary.tar.gz) and pass the extracted cifar-10-batches-bin folder',
    );
  }
  const files = readdirSync(dir)
    .filter((f) => (split === 'train' ? /^data_batch_\d+\.bin$/.test(f) : f === 'test_batch.bin'))
    .sort();
  if (files.length === 0) {
    throw notFound(
      `CIFAR-10 folder ${dir} holds no ${split === 'train' ? 'data_batch_*.bin' : 'test_batch.bin'} files`,
      { dir, split },
    );
  }
  const chunks: Buffer[] = [];
  let records = 0;
  for (const f of files) {
    const buf = readFileSync(join(dir, f));
    if (buf.length % CIFAR_RECORD !== 0) {
      throw new CmError(
        'CORRUPT',
        `${join(dir, f)} is ${buf.length} bytes, not a whole number of ${CIFAR_RECORD}-byte CIFAR-10 records`,
        {
          context: { file: join(dir, f) },
        },
      );
    }
    chunks.push(buf);
    records += buf.length / CIFAR_RECORD;
    if (limit !== undefined && records >= limit) break;
  }
  const n = limit !== undefined ? Math.min(limit, records) : records;
  const images = new Uint8Array(n * 3072);
  const labels = new Int32Array(n);
  let i = 0;
  for (const buf of chunks) {
    for (let off = 0; off < buf.length && i < n; off += CIFAR_RECORD, i++) {
      const label = buf[off];
      if (label > 9)
        throw new CmError('CORRUPT', `CIFAR-10 record ${i} has label ${label} (0..9 expected)`, {
          context: { dir, record: i },
        });
      labels[i] = label;
      const px = off + 1;
      const o = i * 3072;
      for (let p = 0; p < 1024; p++) {
        images[o + p * 3] = buf[px + p];
        images[o + p * 3 + 1] = buf[px + 1024 + p];
        images[o + p * 3 + 2] = buf[px + 2048 + p];
      }
    }
  }
  return checkDataset({
    images,
    labels,
    classNames: [...CIFAR10_CLASSES],
    shape: [n, 32, 32, 3],
    source: `cifar10:${split}`,
  });
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.gif', '.tif', '.tiff', '.bmp']);

/**
 * A folder with one subfolder per class (`dir/cat/*.png`, `dir/dog/*.jpg`); images are decoded
 * with sharp, resized to size x size (cover crop) and flattened to RGB.
 */
export async function loadImageFolder(dir: string, size: number, limit?: number): Promise<ImageDataset> {
  if (!Number.isInteger(size) || size < 8 || size > 512)
    throw invalidArgument(`image size must be an integer from 8 to 512, got ${size}`, { size });
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw notFound(`image folder ${dir} does not exist`, { dir });
  const classNames = readdirSync(dir)
    .filter((d) => !d.startsWith('.') && statSync(join(dir, d)).isDirectory())
    .sort();
  if (classNames.length < 2) {
    throw invalidArgument(
      `image folder ${dir} needs at least two class subfolders, found ${classNames.length}`,
      { dir },
      'lay it out as <dir>/<class>/<image>',
    );
  }
  const files: { path: string; label: number }[] = [];
  classNames.forEach((c, label) => {
    for (const f of readdirSync(join(dir, c)).sort()) {
      if (IMAGE_EXTENSIONS.has(extname(f).toLowerCase())) files.push({ path: join(dir, c, f), label });
    }
  });
  if (files.length === 0)
    throw notFound(
      `image folder ${dir}: no images (${[...IMAGE_EXTENSIONS].join(', ')}) in its class subfolders`,
      { dir },
    );
  const chosen = limit !== undefined ? files.slice(0, limit) : files;
  const images = new Uint8Array(chosen.length * size * size * 3);
  const labels = new Int32Array(chosen.length);
  for (let i = 0; i < chosen.length; i++) {
    let data: Buffer;
    try {
      data = await sharp(chosen[i].path)
        .removeAlpha()
        .resize(size, size, { fit: 'cover' })
        .toColourspace('srgb')
        .raw()
        .toBuffer();
    } catch (e) {
      throw new CmError(
        'INVALID_ARGUMENT',
        `cannot decode image ${chosen[i].path}: ${(e as Error).message}`,
        { context: { file: chosen[i].path }, cause: e },
      );
    }
    if (data.length !== size * size * 3)
      throw new CmError(
        'INTERNAL',
        `decoded ${chosen[i].path} to ${data.length} bytes, expected ${size * size * 3}`,
      );
    images.set(data, i * size * size * 3);
    labels[i] = chosen[i].label;
  }
  return checkDataset({
    images,
    labels,
    classNames,
    shape: [chosen.length, size, size, 3],
    source: `folder:${dir}`,
  });
}

export async function loadDataset(spec: DataSpec): Promise<ImageDataset> {
  switch (spec.kind) {
    case 'world':
      return worldDataset(spec);
    case 'cifar10':
      return loadCifar10(spec.dir, spec.split, spec.limit);
    case 'folder':
      return loadImageFolder(spec.dir, spec.size, spec.limit);
  }
}

/** Split off the last `fraction` of a shuffled index as a held-out set (deterministic per seed). */
export function splitDataset(
  ds: ImageDataset,
  fraction: number,
  seed: number,
): { train: ImageDataset; test: ImageDataset } {
  if (!(fraction > 0 && fraction < 1))
    throw invalidArgument(`test fraction must be in (0, 1), got ${fraction}`);
  const n = ds.shape[0];
  const order = shuffledIndices(n, mulberry32(seed));
  const nTest = Math.max(1, Math.round(n * fraction));
  return { train: subset(ds, order.slice(nTest)), test: subset(ds, order.slice(0, nTest)) };
}

export function subset(ds: ImageDataset, indices: ArrayLike<number>): ImageDataset {
  const [, h, w] = ds.shape;
  const px = h * w * 3;
  const images = new Uint8Array(indices.length * px);
  const labels = new Int32Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const j = indices[i];
    images.set(ds.images.subarray(j * px, (j + 1) * px), i * px);
    labels[i] = ds.labels[j];
  }
  return { ...ds, images, labels, shape: [indices.length, h, w, 3] };
}

export function shuffledIndices(n: number, rng: Rng): Int32Array {
  const order = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

/**
 * Endless mini-batches in epochs of a fresh permutation. Returns uint8 pixels and labels;
 * the training loop turns them into tensors (so this stays free of tfjs and testable).
 */
export class BatchSampler {
  private order: Int32Array;
  private cursor = 0;
  epoch = 0;
  private readonly rng: Rng;
  constructor(
    private readonly ds: ImageDataset,
    readonly batchSize: number,
    seed: number,
  ) {
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw invalidArgument(`batch size must be a positive integer, got ${batchSize}`);
    if (ds.shape[0] < batchSize)
      throw invalidArgument(`dataset has ${ds.shape[0]} images, fewer than one batch of ${batchSize}`);
    this.rng = mulberry32(seed);
    this.order = shuffledIndices(ds.shape[0], this.rng);
  }
  next(): { images: Uint8Array; labels: Int32Array } {
    if (this.cursor + this.batchSize > this.order.length) {
      this.order = shuffledIndices(this.ds.shape[0], this.rng);
      this.cursor = 0;
      this.epoch++;
    }
    const idx = this.order.subarray(this.cursor, this.cursor + this.batchSize);
    this.cursor += this.batchSize;
    const b = subset(this.ds, idx);
    return { images: b.images, labels: b.labels };
  }
  /** Skip `batches` batches (resuming a run replays the sampler to where it stopped). */
  skip(batches: number): void {
    for (let i = 0; i < batches; i++) {
      if (this.cursor + this.batchSize > this.order.length) {
        this.order = shuffledIndices(this.ds.shape[0], this.rng);
        this.cursor = 0;
        this.epoch++;
      }
      this.cursor += this.batchSize;
    }
  }
}
