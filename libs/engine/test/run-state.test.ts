/**
 * Run state across restarts, replicas and eviction: an engine that did not process the earlier
 * checkpoints of a run (a restarted service, another replica, an evicted idle run) carries the run
 * on through the state store exactly like an uninterrupted engine: same records (with a fixed
 * clock, byte for byte), same label switches, same alert episodes.
 */
import type {
  AlertRecord,
  CheckpointData,
  CmRecord,
  LayerSnapshotRecord,
  PersistedRunState,
} from '@cm/contracts';
import {
  ConceptEngine,
  inlineDissector,
  MemoryRunStateStore,
  type ConceptEngineOptions,
  type RunStateStore,
} from '../src';
import { plantedActivations, testCheckpoint, testRunSpec, useTestBundles } from '../src/testing';
import { rejection as rejected } from '@cm/core/src/testing';

const tb = useTestBundles();

const fixedNow = (): Date => new Date('2025-01-02T03:04:05.000Z');
const engines: ConceptEngine[] = [];
afterEach(() => engines.splice(0).forEach((e) => e.close()));

function newEngine(store: RunStateStore, more: Partial<ConceptEngineOptions> = {}): ConceptEngine {
  const engine = new ConceptEngine({
    bundles: tb.bundles,
    dissector: inlineDissector(),
    now: fixedNow,
    stateStore: store,
    ...more,
  });
  engines.push(engine);
  return engine;
}

const snapshots = (records: CmRecord[]): LayerSnapshotRecord[] =>
  records.filter((r): r is LayerSnapshotRecord => r.kind === 'snapshot');
const alertsOf = (records: CmRecord[]): AlertRecord[] =>
  records.filter((r): r is AlertRecord => r.kind === 'alert');

/** One dense layer of 10 neurons; `collapsed` steps copy neuron 0 into every neuron (one concept everywhere). */
const FC = [{ name: 'fc', width: 10, kind: 'dense' as const }];
function fcCheckpoint(step: number, collapsed: boolean): CheckpointData {
  const base = plantedActivations(tb.space, 'fc', 10, step);
  if (collapsed)
    for (let i = 0; i < base.shape[0]; i++)
      for (let k = 1; k < 10; k++) base.data[i * 10 + k] = base.data[i * 10] + 1e-3 * k;
  return { step, layers: [base], metrics: {} };
}

describe('MemoryRunStateStore', () => {
  it('saves, loads deep copies and deletes', async () => {
    const store = new MemoryRunStateStore();
    expect(await store.load('r')).toBeUndefined();
    const state: PersistedRunState = {
      spec: testRunSpec('r', 'b'),
      record: {
        kind: 'run',
        runId: 'r',
        model: 'm',
        paradigm: 'p',
        bundleId: 'b',
        layers: [],
        tags: {},
        status: 'running',
        startedAt: 't',
        time: 't',
      },
      lastStep: 3,
      current: { top1: { fc: Int32Array.from([1, 2, 3]) } },
      recent: [{ step: 3, before: { top1: { fc: Int32Array.from([0, 2, 3]) } } }],
    };
    await store.save('r', state);
    state.current.top1.fc[0] = 99; // the saved copy does not change
    const loaded = (await store.load('r'))!;
    expect(loaded.current.top1.fc).toEqual(Int32Array.from([1, 2, 3]));
    expect(loaded.recent[0].before.top1.fc).toBeInstanceOf(Int32Array);
    loaded.lastStep = 7;
    expect((await store.load('r'))!.lastStep).toBe(3);
    expect(store.runIds()).toEqual(['r']);
    await store.delete('r');
    await store.delete('r');
    expect(await store.load('r')).toBeUndefined();
  });
});

describe('ConceptEngine with a state store', () => {
  it('a restarted engine resumes the run: the next checkpoint equals the uninterrupted run (switches included)', async () => {
    const uninterrupted = newEngine(new MemoryRunStateStore());
    await uninterrupted.startRun(testRunSpec('r', tb.bundleId));
    const expected: CmRecord[][] = [];
    for (let step = 0; step < 4; step++)
      expected.push((await uninterrupted.processCheckpoint('r', testCheckpoint(tb.space, step))).records);

    const store = new MemoryRunStateStore();
    const first = newEngine(store);
    expect((await first.startRun(testRunSpec('r', tb.bundleId))).resumed).toBe(false);
    for (let step = 0; step < 2; step++) await first.processCheckpoint('r', testCheckpoint(tb.space, step));
    first.close();

    const second = newEngine(store); // the restarted service
    const resumed = await second.startRun(testRunSpec('r', tb.bundleId), { resume: true });
    expect(resumed).toMatchObject({ resumed: true, records: [], probeImages: 120 });
    for (let step = 2; step < 4; step++) {
      const out = await second.processCheckpoint('r', testCheckpoint(tb.space, step));
      expect(out.records).toEqual(expected[step]);
    }
    // the comparison is not vacuous: the planted concepts move, so labels switch between steps
    expect(snapshots(expected[2]).some((s) => s.switches > 0)).toBe(true);
    // a different spec for the stored run is refused, as for a run held in memory
    const third = newEngine(store);
    const e = await rejected(() =>
      third.startRun({ ...testRunSpec('r', tb.bundleId), model: 'other' }, { resume: true }),
    );
    expect(e.message).toMatch(/already running with a different/);
  });

  it('another replica gets a checkpoint without RunStart: it loads the run from the store', async () => {
    const store = new MemoryRunStateStore();
    const a = newEngine(store);
    await a.startRun(testRunSpec('r', tb.bundleId));
    await a.processCheckpoint('r', testCheckpoint(tb.space, 0));
    const b = newEngine(store);
    const out = await b.processCheckpoint('r', testCheckpoint(tb.space, 1));
    const reference = newEngine(new MemoryRunStateStore());
    await reference.startRun(testRunSpec('r', tb.bundleId));
    await reference.processCheckpoint('r', testCheckpoint(tb.space, 0));
    expect(out.records).toEqual(
      (await reference.processCheckpoint('r', testCheckpoint(tb.space, 1))).records,
    );
    expect(
      (await rejected(() => newEngine(store).processCheckpoint('ghost', testCheckpoint(tb.space, 0)))).code,
    ).toBe('NOT_FOUND');
  });

  it('checkpoints processed but not acknowledged before a restart are recomputed identically when resent', async () => {
    const store = new MemoryRunStateStore();
    const a = newEngine(store);
    await a.startRun(testRunSpec('r', tb.bundleId));
    const firstTime: CmRecord[][] = [];
    for (let step = 0; step < 6; step++)
      firstTime.push((await a.processCheckpoint('r', testCheckpoint(tb.space, step))).records);
    const b = newEngine(store);
    await b.startRun(testRunSpec('r', tb.bundleId), { resume: true });
    for (const step of [4, 5]) {
      const again = await b.processCheckpoint('r', testCheckpoint(tb.space, step));
      expect(again.replayed).toBe(true);
      expect(again.records).toEqual(firstTime[step]);
    }
    // resendDepth (4) steps are kept: step 1 is too old to be a resend
    expect((await rejected(() => b.processCheckpoint('r', testCheckpoint(tb.space, 1)))).message).toMatch(
      /step 1 is not after the last processed step 5/,
    );
    // the run's state did not move back: step 6 follows step 5
    const reference = newEngine(new MemoryRunStateStore());
    await reference.startRun(testRunSpec('r', tb.bundleId));
    for (let step = 0; step < 6; step++)
      await reference.processCheckpoint('r', testCheckpoint(tb.space, step));
    expect((await b.processCheckpoint('r', testCheckpoint(tb.space, 6))).records).toEqual(
      (await reference.processCheckpoint('r', testCheckpoint(tb.space, 6))).records,
    );
  });

  it('an open collapse episode continues across a restart: fired once, resolved once, same alertId', async () => {
    const plan = [false, false, true, true, true, true, false, false, false];
    const reference = newEngine(new MemoryRunStateStore());
    await reference.startRun(testRunSpec('c', tb.bundleId, FC));
    const expected: AlertRecord[] = [];
    for (const [step, collapsed] of plan.entries())
      expected.push(
        ...alertsOf((await reference.processCheckpoint('c', fcCheckpoint(step, collapsed))).records),
      );
    expect(expected.map((a) => [a.rule, a.state, a.step])).toEqual([
      ['diversity_floor', 'firing', 3],
      ['concept_dominance', 'firing', 3],
      ['diversity_floor', 'resolved', 7],
      ['concept_dominance', 'resolved', 7],
    ]);

    const store = new MemoryRunStateStore();
    let engine = newEngine(store);
    await engine.startRun(testRunSpec('c', tb.bundleId, FC));
    const seen: AlertRecord[] = [];
    for (const [step, collapsed] of plan.entries()) {
      if (step === 2 || step === 4 || step === 6) {
        engine.close();
        engine = newEngine(store); // restart before the episode, while it is open, before it resolves
        await engine.startRun(testRunSpec('c', tb.bundleId, FC), { resume: true });
      }
      seen.push(...alertsOf((await engine.processCheckpoint('c', fcCheckpoint(step, collapsed))).records));
    }
    expect(seen).toEqual(expected);
  });

  it('evicts runs idle longer than runIdleMs, not while a stream is attached; the state comes back from the store', async () => {
    const store = new MemoryRunStateStore();
    let clock = 1_000_000;
    const engine = newEngine(store, { runIdleMs: 60_000, clockMs: () => clock });
    await engine.startRun(testRunSpec('idle', tb.bundleId));
    await engine.startRun(testRunSpec('streaming', tb.bundleId));
    const release = engine.attach('streaming');
    await engine.processCheckpoint('idle', testCheckpoint(tb.space, 0));
    clock += 30_000;
    expect(engine.evictIdleRuns()).toEqual([]);
    clock += 31_000;
    expect(engine.evictIdleRuns()).toEqual(['idle']);
    expect(engine.heldRuns()).toEqual(['streaming']);
    release();
    release(); // idempotent
    clock += 61_000;
    expect(engine.evictIdleRuns()).toEqual(['streaming']);
    expect(engine.heldRuns()).toEqual([]);
    // the evicted run goes on from the store with its switches
    const loadsBefore = store.loads;
    const out = await engine.processCheckpoint('idle', testCheckpoint(tb.space, 1));
    expect(store.loads).toBe(loadsBefore + 1);
    const reference = newEngine(new MemoryRunStateStore());
    await reference.startRun(testRunSpec('idle', tb.bundleId));
    await reference.processCheckpoint('idle', testCheckpoint(tb.space, 0));
    expect(out.records).toEqual(
      (await reference.processCheckpoint('idle', testCheckpoint(tb.space, 1))).records,
    );
    // runIdleMs 0 never evicts
    const keeper = newEngine(store, { runIdleMs: 0, clockMs: () => clock });
    await keeper.startRun(testRunSpec('kept', tb.bundleId));
    clock += 1e9;
    expect(keeper.evictIdleRuns()).toEqual([]);
  });

  it('a replica holding a stale copy reloads it when the trainer comes back after another replica served it', async () => {
    const store = new MemoryRunStateStore();
    const a = newEngine(store);
    const b = newEngine(store);
    await a.startRun(testRunSpec('r', tb.bundleId));
    await a.processCheckpoint('r', testCheckpoint(tb.space, 0));
    await b.startRun(testRunSpec('r', tb.bundleId), { resume: true }); // trainer reconnected to b
    await b.processCheckpoint('r', testCheckpoint(tb.space, 1));
    await a.startRun(testRunSpec('r', tb.bundleId), { resume: true }); // and back to a
    const out = await a.processCheckpoint('r', testCheckpoint(tb.space, 2));
    const reference = newEngine(new MemoryRunStateStore());
    await reference.startRun(testRunSpec('r', tb.bundleId));
    for (let step = 0; step < 2; step++)
      await reference.processCheckpoint('r', testCheckpoint(tb.space, step));
    expect(out.records).toEqual(
      (await reference.processCheckpoint('r', testCheckpoint(tb.space, 2))).records,
    );
  });

  it('a failed save fails the checkpoint (UNAVAILABLE) and commits nothing: the resend gives the uninterrupted result', async () => {
    const inner = new MemoryRunStateStore();
    let failSaves = 0;
    const store: RunStateStore = {
      load: (id) => inner.load(id),
      delete: (id) => inner.delete(id),
      save: async (id, s) => {
        if (failSaves > 0) {
          failSaves--;
          throw new Error('nats: timeout');
        }
        return inner.save(id, s);
      },
    };
    const plan = [false, false, true, true, true];
    const reference = newEngine(new MemoryRunStateStore());
    await reference.startRun(testRunSpec('c', tb.bundleId, FC));
    const expected: CmRecord[][] = [];
    for (const [step, collapsed] of plan.entries())
      expected.push((await reference.processCheckpoint('c', fcCheckpoint(step, collapsed))).records);

    const engine = newEngine(store);
    await engine.startRun(testRunSpec('c', tb.bundleId, FC));
    for (const [step, collapsed] of plan.entries()) {
      if (step === 3) {
        failSaves = 1; // the checkpoint that fires the alert
        const e = await rejected(() => engine.processCheckpoint('c', fcCheckpoint(step, collapsed)));
        expect(e.code).toBe('UNAVAILABLE');
        expect(e.message).toMatch(/run c: could not save the run state: nats: timeout/);
      }
      expect((await engine.processCheckpoint('c', fcCheckpoint(step, collapsed))).records).toEqual(
        expected[step],
      );
    }
    expect(alertsOf(expected[3]).map((a) => `${a.rule} ${a.state}`)).toEqual([
      'diversity_floor firing',
      'concept_dominance firing',
    ]);
  });

  it('endRun deletes the saved state, also for a run only the store holds (ended on another replica)', async () => {
    const store = new MemoryRunStateStore();
    const clockA = new Date('2025-01-01T00:00:00.000Z');
    const a = new ConceptEngine({
      bundles: tb.bundles,
      dissector: inlineDissector(),
      now: () => clockA,
      stateStore: store,
    });
    engines.push(a);
    await a.startRun(testRunSpec('r', tb.bundleId));
    expect(store.runIds()).toEqual(['r']);
    const b = newEngine(store);
    const rec = await b.endRun('r', 'failed');
    expect(rec).toMatchObject({
      runId: 'r',
      status: 'failed',
      startedAt: '2025-01-01T00:00:00.000Z',
      endedAt: '2025-01-02T03:04:05.000Z',
    });
    expect(store.runIds()).toEqual([]);
    expect((await rejected(() => b.endRun('r', 'completed'))).code).toBe('NOT_FOUND');
  });

  it('damaged saved state is refused as CORRUPT naming the problem', async () => {
    const store = new MemoryRunStateStore();
    const a = newEngine(store);
    await a.startRun(testRunSpec('r', tb.bundleId));
    await a.processCheckpoint('r', testCheckpoint(tb.space, 0));
    const saved = (await store.load('r'))!;
    saved.current.top1.fc = new Int32Array(3);
    await store.save('r', saved);
    const e = await rejected(() =>
      newEngine(store).startRun(testRunSpec('r', tb.bundleId), { resume: true }),
    );
    expect(e.code).toBe('CORRUPT');
    expect(e.message).toMatch(
      /saved state of run r: previous top-1 of layer fc has 3 neurons, the run declares 6/,
    );
  });
});
