/**
 * The learned-concept figure in the engine: random-init baselines in (processBaseline), the figure
 * on every snapshot and checkpoint result once they are, null before; cached per (bundle,
 * architecture, method) in a BaselineStore, so a later run of the architecture has it at once.
 */
import { join } from 'node:path';
import { CmError } from '@cm/core';
import type { CmRecord, LayerSnapshotRecord } from '@cm/contracts';
import { baselineKey, FileBaselineStore, MemoryBaselineStore } from '../src';
import { randomInitActivations, testCheckpoint, testRunSpec, TEST_LAYERS } from '../src/testing';
import { useBaselineTests } from './baseline-engines';

const { tb, dir, engineWith } = useBaselineTests('cm-baselines-');

const snapshots = (records: CmRecord[]): LayerSnapshotRecord[] =>
  records.filter((r): r is LayerSnapshotRecord => r.kind === 'snapshot');

describe('learned-concept figure in the engine', () => {
  it('is null before the baseline, 0 for a copy of a random init and high for concept detectors after', async () => {
    const engine = engineWith(new MemoryBaselineStore());
    await engine.startRun(testRunSpec('r1', tb.bundleId));
    expect(await engine.baselineWanted('r1')).toBe(true);
    const before = await engine.processCheckpoint('r1', testCheckpoint(tb.space, 0));
    expect(snapshots(before.records).map((s) => s.learnedFraction)).toEqual([null, null, null]);
    expect(before.result.layers.map((l) => l.learnedFraction)).toEqual([null, null, null]);

    for (let k = 0; k < 3; k++) {
      expect(
        await engine.processBaseline('r1', {
          index: k,
          inits: 3,
          layers: randomInitActivations(tb.space, k),
        }),
      ).toEqual({
        complete: k === 2,
      });
    }
    expect(await engine.baselineWanted('r1')).toBe(false);

    const copy = await engine.processCheckpoint('r1', {
      step: 1,
      layers: randomInitActivations(tb.space, 1),
      metrics: {},
    });
    for (const s of snapshots(copy.records)) {
      expect(s.learnedFraction).toBe(0);
      expect(s.learnedChance).not.toBeNull();
    }
    // planted concept detectors (each neuron the indicator of one concept, noise 0.3)
    const trained = await engine.processCheckpoint('r1', testCheckpoint(tb.space, 2));
    const learned = snapshots(trained.records).map((s) => s.learnedFraction!);
    learned.forEach((f) => expect(f).toBeGreaterThanOrEqual(0.8));
    expect(trained.result.layers.map((l) => l.learnedFraction)).toEqual(learned);
    // the association figure is there beside it, unchanged in meaning
    snapshots(trained.records).forEach((s) =>
      expect(s.interpretableFraction).toBeGreaterThanOrEqual(s.learnedFraction!),
    );
    engine.close();
  });

  it('is computed once per bundle and architecture: a later run (another engine) has it from the store at once', async () => {
    const store = new FileBaselineStore(join(dir, 'baselines'));
    const first = engineWith(store);
    await first.startRun(testRunSpec('a1', tb.bundleId));
    for (let k = 0; k < 2; k++)
      await first.processBaseline('a1', { index: k, inits: 2, layers: randomInitActivations(tb.space, k) });
    first.close();

    const second = engineWith(new FileBaselineStore(join(dir, 'baselines')));
    await second.startRun(testRunSpec('a2', tb.bundleId));
    // without asking first (a run adopted after a restart): its first checkpoint finds the baseline
    const at0 = await second.processCheckpoint('a2', {
      step: 0,
      layers: randomInitActivations(tb.space, 0),
      metrics: {},
    });
    expect(snapshots(at0.records).map((s) => s.learnedFraction)).toEqual([0, 0, 0]);
    expect(await second.baselineWanted('a2')).toBe(false);
    // another baseline for it is ignored (not recomputed)
    expect(
      await second.processBaseline('a2', { index: 0, inits: 2, layers: randomInitActivations(tb.space, 9) }),
    ).toEqual({
      complete: true,
    });
    const cp = await second.processCheckpoint('a2', testCheckpoint(tb.space, 1));
    snapshots(cp.records).forEach((s) => expect(s.learnedFraction).toBeGreaterThan(0.5));
    const loaded = await store.load(baselineKey(testRunSpec('a2', tb.bundleId)));
    expect(loaded?.inits).toBe(2);
    expect(Object.keys(loaded!.layers)).toEqual(TEST_LAYERS.map((l) => l.name));

    // another architecture (other layers) has none
    await second.startRun(testRunSpec('b1', tb.bundleId, TEST_LAYERS.slice(0, 1)));
    expect(await second.baselineWanted('b1')).toBe(true);
    second.close();
  });

  it('refuses a baseline that does not fit the run, and keeps what it had', async () => {
    const engine = engineWith(new MemoryBaselineStore());
    await engine.startRun(testRunSpec('bad', tb.bundleId));
    const fail = async (p: Promise<unknown>): Promise<CmError> => {
      try {
        await p;
      } catch (e) {
        expect(e).toBeInstanceOf(CmError);
        return e as CmError;
      }
      throw new Error('expected an error');
    };
    expect(
      (
        await fail(
          engine.processBaseline('bad', { index: 3, inits: 3, layers: randomInitActivations(tb.space, 0) }),
        )
      ).message,
    ).toMatch(/random init index must be 0..2, got 3/);
    expect(
      (
        await fail(
          engine.processBaseline('bad', { index: 0, inits: 0, layers: randomInitActivations(tb.space, 0) }),
        )
      ).message,
    ).toMatch(/1 to 32 initialisations/);
    expect(
      (
        await fail(
          engine.processBaseline('bad', {
            index: 0,
            inits: 2,
            layers: randomInitActivations(tb.space, 0).slice(1),
          }),
        )
      ).message,
    ).toMatch(/random init 0 lacks layer\(s\) conv1/);
    await engine.processBaseline('bad', { index: 0, inits: 2, layers: randomInitActivations(tb.space, 0) });
    expect(
      (
        await fail(
          engine.processBaseline('bad', { index: 1, inits: 3, layers: randomInitActivations(tb.space, 1) }),
        )
      ).message,
    ).toMatch(/got 3 after 2/);
    const D = tb.space.probeScores.rows;
    const wrong = randomInitActivations(tb.space, 1).map((l) =>
      l.layer === 'fc' ? { ...l, shape: [D, 5], data: l.data.subarray(0, D * 5) } : l,
    );
    const e = await fail(engine.processBaseline('bad', { index: 1, inits: 2, layers: wrong }));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(
      /^run bad random init 1 layer fc: last dimension 5 does not match the declared width 6/,
    );
    expect(await engine.baselineWanted('bad')).toBe(true);
    expect(
      await engine.processBaseline('bad', { index: 1, inits: 2, layers: randomInitActivations(tb.space, 1) }),
    ).toEqual({
      complete: true,
    });
    engine.close();
  });
});
