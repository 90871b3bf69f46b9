/**
 * One random-init baseline per architecture across engines sharing a BaselineStore (the concept
 * service's replicas share the JetStream bucket; here a MemoryBaselineStore or a folder): each
 * initialisation is kept as it is dissected, so an engine that gets only some of a run's inits
 * completes the baseline from the ones another engine kept; the first complete baseline saved
 * stays; an engine that had looked before finds a baseline completed elsewhere since.
 */
import { join } from 'node:path';
import type { RunSpec } from '@cm/contracts';
import {
  baselineKey,
  ConceptEngine,
  FileBaselineStore,
  MemoryBaselineStore,
  type StoredBaseline,
} from '../src';
import { randomInitActivations, testCheckpoint, testRunSpec } from '../src/testing';
import { useBaselineTests } from './baseline-engines';

const { tb, dir, engineWith } = useBaselineTests('cm-baseline-store-');

/** A run state the other engine adopts as a replica would (resume with the start token). */
async function startOn(engine: ConceptEngine, spec: RunSpec, resume = false): Promise<void> {
  await engine.startRun(spec, { resume, startToken: 'token-1' });
}

it.each([
  ['memory', () => new MemoryBaselineStore()],
  ['files', () => new FileBaselineStore(join(dir, `files-${Math.random().toString(36).slice(2)}`))],
])(
  '%s: engine B completes the baseline from the inits engine A kept; both then give the same figure',
  async (_name, makeStore) => {
    const shared = makeStore();
    const a = engineWith(shared);
    const b = engineWith(shared);
    const spec = testRunSpec('shared-run', tb.bundleId);
    await startOn(a, spec);
    // A takes inits 0 and 1 of 4, then "dies"
    for (const index of [0, 1])
      expect(
        await a.processBaseline('shared-run', {
          index,
          inits: 4,
          layers: randomInitActivations(tb.space, index),
        }),
      ).toEqual({
        complete: false,
      });
    expect(await a.baselineWanted('shared-run')).toBe(true); // A looked: none yet
    // B takes 2 and 3 only: 0 and 1 come from the store
    await startOn(b, spec, true);
    expect(
      await b.processBaseline('shared-run', {
        index: 2,
        inits: 4,
        layers: randomInitActivations(tb.space, 2),
      }),
    ).toEqual({
      complete: false,
    });
    expect(
      await b.processBaseline('shared-run', {
        index: 3,
        inits: 4,
        layers: randomInitActivations(tb.space, 3),
      }),
    ).toEqual({
      complete: true,
    });
    const onB = await b.processCheckpoint('shared-run', testCheckpoint(tb.space, 0));
    const learnedB = onB.result.layers.map((l) => l.learnedFraction);
    learnedB.forEach((f) => expect(f).toBeGreaterThan(0.5));
    // A had looked before B completed it: it looks again, and computes the run's figure the same
    expect(await a.baselineWanted('shared-run')).toBe(false);
    const onA = await a.processCheckpoint('shared-run', testCheckpoint(tb.space, 0));
    expect(onA.result.layers.map((l) => l.learnedFraction)).toEqual(learnedB);
    a.close();
    b.close();
  },
);

it.each([
  ['memory', () => new MemoryBaselineStore()],
  ['files', () => new FileBaselineStore(join(dir, `first-${Math.random().toString(36).slice(2)}`))],
])(
  '%s: the first complete baseline saved and the first value of each init stay',
  async (_name, makeStore) => {
    const store = makeStore();
    const key = baselineKey(testRunSpec('k', tb.bundleId));
    const layer = (tag: number) => ({
      conceptIndex: Int32Array.of(tag, tag),
      evidence: Float32Array.of(tag, -Infinity),
      interpretable: [true, false],
      conceptCeiling: Float32Array.of(tag, tag, tag),
    });
    await store.saveInit(key, 0, { fc: layer(1) });
    await store.saveInit(key, 0, { fc: layer(2) });
    expect([...(await store.loadInits(key, [0, 1], ['fc'])).keys()]).toEqual([0]);
    expect(Array.from((await store.loadInits(key, [0], ['fc'])).get(0)!.fc.conceptIndex)).toEqual([1, 1]);
    const first: StoredBaseline = { key, bundleId: 'b', model: 'm', inits: 1, layers: { fc: [layer(1)] } };
    const later: StoredBaseline = { key, bundleId: 'b', model: 'm', inits: 1, layers: { fc: [layer(5)] } };
    expect(Array.from((await store.save(first)).layers.fc[0].conceptIndex)).toEqual([1, 1]);
    expect(Array.from((await store.save(later)).layers.fc[0].conceptIndex)).toEqual([1, 1]);
    const loaded = await store.load(key);
    expect(Array.from(loaded!.layers.fc[0].evidence)).toEqual([1, -Infinity]);
  },
);
