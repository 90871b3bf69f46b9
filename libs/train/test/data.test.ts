import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { BatchSampler, loadCifar10, loadImageFolder, splitDataset, worldDataset } from '../src/data';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cm-train-data-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A CIFAR-10 binary record: label byte, then 1024 R, 1024 G, 1024 B (channel-planar). */
function cifarRecord(label: number, r: number, g: number, b: number): Buffer {
  const rec = Buffer.alloc(3073);
  rec[0] = label;
  rec.fill(r, 1, 1025);
  rec.fill(g, 1025, 2049);
  rec.fill(b, 2049, 3073);
  rec[1 + 5] = 200; // pixel 5 of the red plane differs
  return rec;
}

describe('CIFAR-10 binary loader', () => {
  it('reads records into NHWC with labels and class names', () => {
    writeFileSync(
      join(dir, 'data_batch_1.bin'),
      Buffer.concat([cifarRecord(3, 10, 20, 30), cifarRecord(9, 1, 2, 3)]),
    );
    writeFileSync(join(dir, 'data_batch_2.bin'), cifarRecord(0, 7, 8, 9));
    writeFileSync(join(dir, 'test_batch.bin'), cifarRecord(5, 0, 0, 0));
    const ds = loadCifar10(dir, 'train');
    expect(ds.shape).toEqual([3, 32, 32, 3]);
    expect(Array.from(ds.labels)).toEqual([3, 9, 0]);
    expect(ds.classNames[3]).toBe('cat');
    expect(Array.from(ds.images.subarray(0, 3))).toEqual([10, 20, 30]);
    expect(Array.from(ds.images.subarray(15, 18))).toEqual([200, 20, 30]); // pixel 5, NHWC
    expect(Array.from(ds.images.subarray(3072, 3075))).toEqual([1, 2, 3]);
    expect(loadCifar10(dir, 'test').labels[0]).toBe(5);
    expect(loadCifar10(dir, 'train', 2).shape[0]).toBe(2);
  });

  it('names truncated files and missing folders', () => {
    writeFileSync(join(dir, 'data_batch_1.bin'), Buffer.alloc(3000));
    expect(() => loadCifar10(dir)).toThrow(/not a whole number of 3073-byte/);
    expect(() => loadCifar10(join(dir, 'nope'))).toThrow(/does not exist/);
    rmSync(join(dir, 'data_batch_1.bin'));
    expect(() => loadCifar10(dir)).toThrow(/no data_batch_\*\.bin/);
  });
});

describe('image folder loader', () => {
  it('decodes class subfolders with sharp, resized, classes sorted', async () => {
    for (const [cls, rgb] of [
      ['red', [255, 0, 0]],
      ['blue', [0, 0, 255]],
    ] as const) {
      mkdirSync(join(dir, cls));
      for (let i = 0; i < 2; i++) {
        await sharp({
          create: { width: 12, height: 9, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } },
        })
          .png()
          .toFile(join(dir, cls, `${i}.png`));
      }
    }
    writeFileSync(join(dir, 'red', 'notes.txt'), 'ignored');
    const ds = await loadImageFolder(dir, 8);
    expect(ds.classNames).toEqual(['blue', 'red']);
    expect(ds.shape).toEqual([4, 8, 8, 3]);
    expect(Array.from(ds.labels)).toEqual([0, 0, 1, 1]);
    expect(Array.from(ds.images.subarray(0, 3))).toEqual([0, 0, 255]);
    expect(Array.from(ds.images.subarray(3 * 64 * 3, 3 * 64 * 3 + 3))).toEqual([255, 0, 0]);
  });

  it('rejects folders without classes and undecodable images', async () => {
    mkdirSync(join(dir, 'only'));
    await expect(loadImageFolder(dir, 8)).rejects.toThrow(/at least two class subfolders/);
    mkdirSync(join(dir, 'other'));
    writeFileSync(join(dir, 'only', 'bad.png'), 'not a png');
    await expect(loadImageFolder(dir, 8)).rejects.toThrow(/cannot decode image .*bad\.png/);
  });
});

describe('world data, splits and batches', () => {
  it('splits deterministically and samples every image once per epoch', () => {
    const ds = worldDataset({ task: 'shape', count: 40, seed: 3 });
    expect(ds.classNames).toContain('circle');
    const a = splitDataset(ds, 0.25, 1);
    const b = splitDataset(ds, 0.25, 1);
    expect(a.test.shape[0]).toBe(10);
    expect(Array.from(a.test.labels)).toEqual(Array.from(b.test.labels));
    const sampler = new BatchSampler(a.train, 10, 5);
    const counts = new Map<number, number>();
    for (let i = 0; i < 3; i++)
      for (const l of sampler.next().labels) counts.set(l, (counts.get(l) ?? 0) + 1);
    const total = [...counts.values()].reduce((x, y) => x + y, 0);
    expect(total).toBe(30);
    expect(sampler.epoch).toBe(0);
    sampler.next();
    expect(sampler.epoch).toBe(1);
  });
});
