/**
 * Test fixtures shared by the engine, client and service tests: a small synthetic probe bundle in a
 * temporary bundle folder, activations planted so that known neurons follow known concepts, and
 * a run spec. Not used in production code paths.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mulberry32 } from '@cm/core';
import { BundleDirectory, makeSyntheticBundle, writeBundleInto } from '@cm/probe';
import type { CheckpointData, LayerActivations, RunSpec } from '@cm/contracts';
import { nullActivations, type ConceptSpace } from '@cm/dissect';

export interface TestBundles {
  root: string;
  bundleId: string;
  bundles: BundleDirectory;
  space: ConceptSpace;
  cleanup(): void;
}

export async function makeTestBundles(images = 120, seed = 7): Promise<TestBundles> {
  const root = mkdtempSync(join(tmpdir(), 'cm-bundles-'));
  const data = makeSyntheticBundle({ images, seed });
  const { id: bundleId } = await writeBundleInto(root, data);
  const bundles = new BundleDirectory(root);
  return {
    root,
    bundleId,
    bundles,
    space: bundles.get(bundleId).space,
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}

/**
 * The test file's bundles, made before its tests (beforeAll) and removed after them (afterAll):
 * the object is filled in by then, so read its fields inside tests and hooks only.
 */
export function useTestBundles(images = 120): TestBundles {
  const tb = {} as TestBundles;
  beforeAll(async () => {
    Object.assign(tb, await makeTestBundles(images));
  });
  afterAll(() => tb.cleanup());
  return tb;
}

/** Deterministic pseudo-random numbers (mulberry32) so fixtures are reproducible. */
export const seeded = mulberry32;

/**
 * Pooled activations [D, N]: neuron k follows concept (k * 7 + step) % S of P (plus noise), so
 * labels are meaningful and change between steps.
 */
export function plantedActivations(
  space: ConceptSpace,
  layer: string,
  width: number,
  step: number,
  seed = 1,
): LayerActivations {
  const { rows: d, cols: s, data: p } = space.probeScores;
  const rnd = seeded(seed * 1000 + step * 31 + width);
  const data = new Float32Array(d * width);
  for (let k = 0; k < width; k++) {
    const c = (k * 7 + step) % s;
    for (let i = 0; i < d; i++) data[i * width + k] = p[i * s + c] + 0.3 * rnd();
  }
  return { layer, shape: [d, width], data };
}

/** Raw conv activations [D, H, W, C] whose spatial average equals `plantedActivations`. */
export function rawConvActivations(
  space: ConceptSpace,
  layer: string,
  width: number,
  step: number,
  hw = 2,
): LayerActivations {
  const pooled = plantedActivations(space, layer, width, step);
  const d = pooled.shape[0];
  const data = new Float32Array(d * hw * hw * width);
  for (let i = 0; i < d; i++)
    for (let y = 0; y < hw; y++)
      for (let x = 0; x < hw; x++)
        for (let k = 0; k < width; k++) {
          // alternate +-delta around the mean so the average is the pooled value
          const delta = ((x + y) % 2 === 0 ? 1 : -1) * 0.05;
          data[((i * hw + y) * hw + x) * width + k] = pooled.data[i * width + k] + delta;
        }
  return { layer, shape: [d, hw, hw, width], data, pooling: 'avg' };
}

export const TEST_LAYERS = [
  { name: 'conv1', width: 8, kind: 'conv' as const },
  { name: 'conv2', width: 12, kind: 'conv' as const },
  { name: 'fc', width: 6, kind: 'dense' as const },
];

export function testRunSpec(runId: string, bundleId: string, layers = TEST_LAYERS): RunSpec {
  return { runId, model: 'tiny-cnn', paradigm: 'standard', bundleId, layers, tags: { suite: 'engine' } };
}

export function testCheckpoint(space: ConceptSpace, step: number, layers = TEST_LAYERS): CheckpointData {
  return {
    step,
    layers: layers.map((l) => plantedActivations(space, l.name, l.width, step)),
    metrics: { loss: 1 / (step + 1), accuracy: 0.5 + step / 100 },
  };
}

/** An "untrained" network's layers: unrelated to the images (seeded normal activations). */
export function randomInitActivations(
  space: ConceptSpace,
  seed: number,
  layers: readonly { name: string; width: number }[] = TEST_LAYERS,
): LayerActivations[] {
  const D = space.probeScores.rows;
  return layers.map((l, i) => ({
    layer: l.name,
    shape: [D, l.width],
    data: nullActivations(D, l.width, seed * 100 + i).data,
  }));
}
