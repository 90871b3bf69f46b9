/**
 * Probe bundle benchmark: rendering the synthetic world, making, writing and loading (verifying)
 * a bundle, and making a training set. Run: npm run bench:probe
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadBundle, makeSyntheticBundle, makeWorldDataset, renderProbeWorld, writeBundle } from '@cm/probe';

async function time<T>(label: string, fn: () => T | Promise<T>, repeats = 3): Promise<T> {
  let best = Infinity;
  let result!: T;
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    result = await fn();
    best = Math.min(best, performance.now() - t);
  }
  process.stdout.write(`${label.padEnd(44)} ${best.toFixed(0).padStart(6)} ms (best of ${repeats})\n`);
  return result;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-probe-'));
  try {
    await time('render 2000 images 32x32', () => renderProbeWorld({ images: 2000, seed: 7 }));
    await time('render 2000 images 64x64', () => renderProbeWorld({ images: 2000, seed: 7, size: 64 }));
    const data = await time('makeSyntheticBundle 2000 x 32x32 (P, emb, map)', () =>
      makeSyntheticBundle({ images: 2000, seed: 7 }),
    );
    await time('writeBundle 2000 x 32x32', () => writeBundle(join(dir, 'b'), data));
    await time('loadBundle 2000 x 32x32 (sha256 + checks)', () => loadBundle(join(dir, 'b')));
    await time('makeWorldDataset shape, 10000 x 32x32', () =>
      makeWorldDataset({ task: 'shape', count: 10000, seed: 1 }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
