/**
 * The engine's pooled-layer buffers (issue 15, dissect's buffer-pool.ts): reused once released,
 * never while out; the buffers process() pools for itself go back on their own; a release of
 * something that is not the engine's, or a second release, changes nothing.
 */
import type { LayerActivations } from '@cm/contracts';
import type { ConceptSpace, DissectOptions, Matrix } from '@cm/dissect';
import { ConceptEngine, inlineDissector, type LayerDissector } from '../src';
import { plantedActivations, testCheckpoint, testRunSpec, useTestBundles } from '../src/testing';

const bundles = useTestBundles();

/** The inline dissector, noting the buffer of every layer it reads. */
function notingDissector(seen: ArrayBufferLike[]): LayerDissector {
  const inline = inlineDissector();
  return {
    dissect: (space: ConceptSpace, q: Matrix, opts: DissectOptions) => {
      seen.push(q.data.buffer);
      return inline.dissect(space, q, opts);
    },
  };
}

const dense = (layer: string, width: number, step: number): LayerActivations =>
  plantedActivations(bundles.space, layer, width, step);

it('a released layer buffer serves the next layer of its size; one still out never does', async () => {
  const engine = new ConceptEngine({ bundles: bundles.bundles, dissector: inlineDissector() });
  await engine.startRun(testRunSpec('buffers', bundles.bundleId));
  const a = engine.poolReceivedLayer('buffers', 1, dense('fc', 6, 1));
  const b = engine.poolReceivedLayer('buffers', 2, dense('fc', 6, 2));
  expect(a.data.buffer).toBeInstanceOf(SharedArrayBuffer);
  expect(b.data.buffer).not.toBe(a.data.buffer); // two checkpoints in flight
  engine.releaseLayers([a]);
  const c = engine.poolReceivedLayer('buffers', 3, dense('fc', 6, 3));
  expect(c.data.buffer).toBe(a.data.buffer); // a's buffer, with step 3's values
  expect(Array.from(c.data)).toEqual(Array.from(dense('fc', 6, 3).data));
  expect(c.data).not.toBe(a.data); // a new view: the old one is not marked as checked any more
  // a second release of a, and a layer that is not the engine's, change nothing
  engine.releaseLayers([a, dense('fc', 6, 4)]);
  const d = engine.poolReceivedLayer('buffers', 4, dense('fc', 6, 4));
  expect([a.data.buffer, b.data.buffer]).not.toContain(d.data.buffer);
});

it('processCheckpoint gives back the buffers it pooled itself; with release they wait for releaseLayers', async () => {
  const seen: ArrayBufferLike[] = [];
  const engine = new ConceptEngine({ bundles: bundles.bundles, dissector: notingDissector(seen) });
  await engine.startRun(testRunSpec('own', bundles.bundleId));
  // not handed over: the caller keeps its layers, the pooled copies are the engine's own
  const cp1 = testCheckpoint(bundles.space, 1);
  const layersBefore = cp1.layers;
  await engine.processCheckpoint('own', cp1);
  expect(cp1.layers).toBe(layersBefore);
  const first = [...seen];
  expect(first).toHaveLength(3);
  // handed over: cp.layers become the pooled ones, made from the buffers step 1 gave back
  seen.length = 0;
  const cp2 = testCheckpoint(bundles.space, 2);
  await engine.processCheckpoint('own', cp2, { release: true });
  expect(new Set(seen)).toEqual(new Set(first));
  expect(new Set(cp2.layers.map((l) => l.data.buffer))).toEqual(new Set(first));
  // not released yet: step 3 gets other buffers
  seen.length = 0;
  await engine.processCheckpoint('own', testCheckpoint(bundles.space, 3));
  for (const buffer of seen) expect(first).not.toContain(buffer);
  engine.releaseLayers(cp2.layers);
  seen.length = 0;
  await engine.processCheckpoint('own', testCheckpoint(bundles.space, 4));
  expect(seen).toHaveLength(3);
  for (const buffer of seen) expect([...first]).toContain(buffer);
});
