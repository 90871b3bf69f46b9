import { CmError } from '@cm/core';
import type { CheckpointData, LayerActivations } from '@cm/contracts';
import type { ConceptSpace, DissectOptions, Matrix } from '@cm/dissect';
import {
  ConceptEngine,
  inlineDissector,
  Slots,
  type LayerDissector,
  type LayerResult,
  type ReceivingCheckpoint,
} from '../src';
import {
  makeTestBundles,
  rawConvActivations,
  testCheckpoint,
  testRunSpec,
  type TestBundles,
} from '../src/testing';
import { rejection as rejected } from '@cm/core/src/testing';

let tb: TestBundles;
beforeAll(async () => {
  tb = await makeTestBundles();
});
afterAll(() => tb.cleanup());

const fixedNow = (): Date => new Date('2025-01-02T03:04:05.000Z');

/** The real dissection (dissectLayer), watched: calls, how many at once, and an optional hold per layer width. */
function watchedDissector(hold?: (cols: number) => Promise<void> | undefined) {
  const inline = inlineDissector();
  const stats = { calls: 0, finished: 0, active: 0, maxActive: 0, started: [] as number[] };
  const dissector: LayerDissector = {
    async dissect(space: ConceptSpace, q: Matrix, opts: DissectOptions): Promise<LayerResult> {
      stats.calls++;
      stats.started.push(q.cols);
      stats.active++;
      stats.maxActive = Math.max(stats.maxActive, stats.active);
      try {
        await hold?.(q.cols);
        return await inline.dissect(space, q, opts);
      } finally {
        stats.active--;
        stats.finished++;
      }
    },
  };
  return { dissector, stats };
}

const engineWith = (dissector: LayerDissector): ConceptEngine =>
  new ConceptEngine({ bundles: tb.bundles, dissector, now: fixedNow });

/** Raw conv layers (pooled by the service) and a dense one, as the concept service receives them. */
const received = (step: number): CheckpointData => ({
  ...testCheckpoint(tb.space, step),
  layers: [
    rawConvActivations(tb.space, 'conv1', 8, step),
    rawConvActivations(tb.space, 'conv2', 12, step),
    testCheckpoint(tb.space, step).layers[2],
  ],
});

/** Feed a checkpoint's layers (in `order`) as the session does: pooled on arrival, then addLayer. */
function feed(
  engine: ConceptEngine,
  runId: string,
  cp: CheckpointData,
  order = [0, 1, 2],
  after?: Promise<unknown>,
): { progress: ReceivingCheckpoint; arrived: CheckpointData } {
  const progress = engine.beginCheckpoint(runId, cp.step, { after });
  const layers: LayerActivations[] = [];
  for (const i of order) {
    const layer = engine.poolReceivedLayer(runId, cp.step, cp.layers[i]);
    layers.push(layer);
    progress.addLayer(layer);
  }
  return { progress, arrived: { ...cp, layers } };
}

const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 2));
  expect(cond()).toBe(true);
};

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('Slots', () => {
  it('runs at most `limit` tasks at once, in the order asked', async () => {
    const slots = new Slots(2);
    let active = 0;
    let most = 0;
    const order: number[] = [];
    await Promise.all(
      [5, 1, 3, 1, 2].map((ms, i) =>
        slots.run(async () => {
          order.push(i);
          most = Math.max(most, ++active);
          await new Promise((r) => setTimeout(r, ms));
          active--;
        }),
      ),
    );
    expect(most).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4]);
    expect(() => new Slots(0)).toThrow(RangeError);
  });
});

describe('ConceptEngine.beginCheckpoint', () => {
  it('dissects each layer as it arrives; finish gives the records processCheckpoint gives, dissecting nothing twice', async () => {
    const reference = engineWith(inlineDissector());
    const { dissector, stats } = watchedDissector();
    const engine = engineWith(dissector);
    await reference.startRun(testRunSpec('r', tb.bundleId));
    await engine.startRun(testRunSpec('r', tb.bundleId));
    for (let step = 0; step < 3; step++) {
      const expected = await reference.processCheckpoint('r', received(step), { release: true });
      const callsBefore = stats.calls;
      // layers arrive out of the declared order; records still come in the declared order
      const { progress, arrived } = feed(engine, 'r', received(step), [2, 0, 1]);
      expect(progress.startedLayers).toEqual(['fc', 'conv1', 'conv2']);
      // started before the checkpoint ended
      await until(() => stats.calls === callsBefore + 3);
      const got = await progress.finish(arrived, { release: true });
      expect(got.records).toEqual(expected.records);
      expect(got.result).toEqual(expected.result);
      expect(stats.calls).toBe(callsBefore + 3); // the early dissections were used, none redone
    }
    expect(stats.maxActive).toBeLessThanOrEqual(2);
  });

  it('layers finishing out of order, a next checkpoint begun before the previous one is processed: same records, at most 2 dissections at once', async () => {
    const reference = engineWith(inlineDissector());
    // the first layer to arrive (conv1, 8 neurons) is the last to finish
    const { dissector, stats } = watchedDissector((cols) =>
      cols === 8 ? new Promise((r) => setTimeout(r, 60)) : undefined,
    );
    const engine = engineWith(dissector);
    await reference.startRun(testRunSpec('o', tb.bundleId));
    await engine.startRun(testRunSpec('o', tb.bundleId));
    const expected = [
      await reference.processCheckpoint('o', received(0)),
      await reference.processCheckpoint('o', received(1)),
    ];
    // as in the concept service: step 1's layers arrive before step 0 is handed to the engine (its
    // stream's queue); `after` holds them until then, and they start from the state step 0 leaves
    const step0Done = deferred();
    const first = feed(engine, 'o', received(0));
    const second = feed(engine, 'o', received(1), [0, 1, 2], step0Done.promise);
    await new Promise((r) => setTimeout(r, 20));
    expect(stats.started).toEqual([8, 12, 6]); // step 0's layers; step 1's wait for step 0
    const p0 = first.progress.finish(first.arrived, {});
    void p0.finally(step0Done.resolve);
    const p1 = second.progress.finish(second.arrived, {});
    expect((await p0).records).toEqual(expected[0].records);
    expect((await p1).records).toEqual(expected[1].records);
    expect(stats.calls).toBe(6); // step 1's early dissections read step 0's top-1: none redone
    expect(stats.maxActive).toBe(2);
  });

  it('abort starts nothing more and resolves once the dissections under way are over; the run is untouched', async () => {
    const gate = deferred();
    const { dissector, stats } = watchedDissector(() => gate.promise);
    const engine = engineWith(dissector);
    await engine.startRun(testRunSpec('a', tb.bundleId));
    const { progress } = feed(engine, 'a', received(0));
    await until(() => stats.calls === 2); // two slots: the third layer waits
    let aborted = false;
    const abort = progress.abort().then(() => (aborted = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(aborted).toBe(false); // still waiting for the two under way
    gate.resolve();
    await abort;
    expect({ calls: stats.calls, finished: stats.finished, active: stats.active }).toEqual({
      calls: 2,
      finished: 2,
      active: 0,
    });
    // nothing was recorded for the aborted checkpoint: step 0 can still come, and is processed normally
    const reference = engineWith(inlineDissector());
    await reference.startRun(testRunSpec('a', tb.bundleId));
    const again = await engine.processCheckpoint('a', received(0));
    expect(again.replayed).toBe(false);
    expect(again.records).toEqual((await reference.processCheckpoint('a', received(0))).records);
  });

  it('a later bad layer (NaN) or a missing layer refuses the checkpoint as processCheckpoint does, after the early dissections are over', async () => {
    const reference = engineWith(inlineDissector());
    const { dissector, stats } = watchedDissector((cols) =>
      cols === 8 ? new Promise((r) => setTimeout(r, 30)) : undefined,
    );
    const engine = engineWith(dissector);
    await reference.startRun(testRunSpec('b', tb.bundleId));
    await engine.startRun(testRunSpec('b', tb.bundleId));
    const withNaN = (): CheckpointData => {
      const cp = received(0);
      cp.layers[1].data[5] = Number.NaN;
      return cp;
    };
    const expected = await rejected(reference.processCheckpoint('b', withNaN()));
    const { progress, arrived } = feed(engine, 'b', withNaN());
    expect(progress.startedLayers).toEqual(['conv1', 'fc']); // the NaN layer is left to the end
    const e = await rejected(progress.finish(arrived, {}));
    expect({ code: e.code, message: e.message }).toEqual({ code: expected.code, message: expected.message });
    expect(e.message).toBe('run b step 0 layer conv2: value NaN at index 5 ([0, 0, 0, 5]) is not finite');
    expect(stats.active).toBe(0); // nothing of it still runs once the refusal is out

    const missing = feed(engine, 'b', received(0), [0, 1]);
    const m = await rejected(missing.progress.finish(missing.arrived, {}));
    expect(m.message).toBe(
      (
        await rejected(
          reference.processCheckpoint('b', { ...received(0), layers: received(0).layers.slice(0, 2) }),
        )
      ).message,
    );
    expect(stats.active).toBe(0);
    // the run is where it was: the good step 0 gives the reference's records
    const good = feed(engine, 'b', received(0));
    expect((await good.progress.finish(good.arrived, {})).records).toEqual(
      (await reference.processCheckpoint('b', received(0))).records,
    );
  });

  it('a layer whose dissection fails fails the checkpoint with that error; the others are awaited, the run goes on', async () => {
    let failConv2 = true;
    const { dissector, stats } = watchedDissector((cols) =>
      cols === 12 && failConv2
        ? Promise.reject(new CmError('INTERNAL', 'worker died dissecting conv2'))
        : new Promise((r) => setTimeout(r, 10)),
    );
    const engine = engineWith(dissector);
    await engine.startRun(testRunSpec('f', tb.bundleId));
    const { progress, arrived } = feed(engine, 'f', received(0));
    const e = await rejected(progress.finish(arrived, {}));
    expect(e.message).toBe('worker died dissecting conv2');
    expect(stats.active).toBe(0);
    failConv2 = false;
    const again = feed(engine, 'f', received(0));
    const ok = await again.progress.finish(again.arrived, {});
    expect(ok.step).toBe(0);
    expect(ok.replayed).toBe(false);
  });

  it('a resend is answered from the cache, and other activations under a processed step are refused, as before', async () => {
    const { dissector } = watchedDissector();
    const engine = engineWith(dissector);
    await engine.startRun(testRunSpec('s', tb.bundleId));
    const first = feed(engine, 's', received(0));
    const answer = await first.progress.finish(first.arrived, {});
    const resend = feed(engine, 's', received(0));
    const again = await resend.progress.finish(resend.arrived, {});
    expect(again.replayed).toBe(true);
    expect(again.records).toEqual(answer.records);
    const other = received(0);
    other.layers[2].data[3] += 1;
    const changed = feed(engine, 's', other);
    const e = await rejected(changed.progress.finish(changed.arrived, {}));
    expect(e.message).toBe('run s: step 0 was already processed with other activations');
  });

  it('layers not pooled on arrival (given to addLayer as is) are dissected at the end, with the same records', async () => {
    const { dissector } = watchedDissector();
    const engine = engineWith(dissector);
    const reference = engineWith(inlineDissector());
    await engine.startRun(testRunSpec('n', tb.bundleId));
    await reference.startRun(testRunSpec('n', tb.bundleId));
    const cp = testCheckpoint(tb.space, 0);
    const progress = engine.beginCheckpoint('n', 0);
    for (const l of cp.layers) progress.addLayer(l);
    expect(progress.startedLayers).toEqual([]);
    expect((await progress.finish(cp, {})).records).toEqual(
      (await reference.processCheckpoint('n', testCheckpoint(tb.space, 0))).records,
    );
  });
});
