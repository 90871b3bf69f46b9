import {
  MAX_MESSAGE_BYTES,
  type CmRecord,
  type LabelsRecord,
  type LayerSnapshotRecord,
  type NeuronLabelRow,
} from '@cm/contracts';
import { dissectLayer, poolLayer } from '@cm/dissect';
import { ConceptEngine, inlineDissector, labelsRecords, MemorySink, createLocalMonitor } from '../src';
import {
  makeTestBundles,
  plantedActivations,
  rawConvActivations,
  testCheckpoint,
  testRunSpec,
  TEST_LAYERS,
  type TestBundles,
} from '../src/testing';
import { rejection as rejected } from '@cm/core/src/testing';

let tb: TestBundles;
beforeAll(async () => {
  tb = await makeTestBundles();
});
afterAll(() => tb.cleanup());

const fixedNow = (): Date => new Date('2025-01-02T03:04:05.000Z');
const newEngine = (): ConceptEngine =>
  new ConceptEngine({ bundles: tb.bundles, dissector: inlineDissector(), now: fixedNow });

const labelsOf = (records: CmRecord[], layer: string): NeuronLabelRow[] =>
  records.filter((r): r is LabelsRecord => r.kind === 'labels' && r.layer === layer).flatMap((r) => r.labels);

describe('startRun', () => {
  it('unknown bundle -> NOT_FOUND naming run and bundle', async () => {
    const e = await rejected(newEngine().startRun(testRunSpec('r', 'abcdefabcdefabcd')));
    expect(e.code).toBe('NOT_FOUND');
    expect(e.message).toMatch(/^run r: probe bundle abcdefabcdefabcd is not on this concept service$/);
  });
  it('bad layer declarations -> INVALID_ARGUMENT', async () => {
    const engine = newEngine();
    const twice = testRunSpec('r', tb.bundleId, [TEST_LAYERS[0], TEST_LAYERS[0]]);
    expect((await rejected(engine.startRun(twice))).message).toMatch(/layer conv1 is declared twice/);
    const zero = testRunSpec('r', tb.bundleId, [{ name: 'x', width: 0, kind: 'dense' }]);
    expect((await rejected(engine.startRun(zero))).message).toMatch(/layer x has width 0/);
    expect((await rejected(engine.startRun(testRunSpec('r', tb.bundleId, [])))).message).toMatch(
      /declares no monitored layers/,
    );
  });
  it('a second start resumes only when it asks to (or repeats the first start); a different spec is refused', async () => {
    const engine = newEngine();
    const first = await engine.startRun(testRunSpec('r', tb.bundleId), { startToken: 'client-1' });
    expect(first).toMatchObject({ resumed: false, probeImages: 120 });
    expect(first.records.map((r) => r.kind)).toEqual(['run']);
    expect(await engine.startRun(testRunSpec('r', tb.bundleId), { resume: true })).toMatchObject({
      resumed: true,
      records: [],
    });
    // the same client repeating its RunStart (answer lost) continues; anyone else is refused
    expect(await engine.startRun(testRunSpec('r', tb.bundleId), { startToken: 'client-1' })).toMatchObject({
      resumed: true,
    });
    const taken = await rejected(engine.startRun(testRunSpec('r', tb.bundleId), { startToken: 'client-2' }));
    expect(taken.code).toBe('ALREADY_EXISTS');
    expect(taken.message).toBe('run r already exists (it is running)');
    expect(taken.hint).toMatch(/resume it .* or start the new run under a new run id/);
    const other = testRunSpec('r', tb.bundleId, [TEST_LAYERS[0]]);
    expect((await rejected(engine.startRun(other, { resume: true }))).message).toMatch(
      /already running with a different/,
    );
  });

  it('a run id used before (runExists) is refused without resume, continued with it', async () => {
    const used = new Set(['old']);
    const engine = new ConceptEngine({
      bundles: tb.bundles,
      dissector: inlineDissector(),
      now: fixedNow,
      runExists: async (id) => used.has(id),
    });
    const e = await rejected(engine.startRun(testRunSpec('old', tb.bundleId)));
    expect({ code: e.code, message: e.message }).toEqual({
      code: 'ALREADY_EXISTS',
      message: 'run old already exists (it ran before)',
    });
    expect(await engine.startRun(testRunSpec('old', tb.bundleId), { resume: true })).toMatchObject({
      resumed: false,
    });
    expect((await engine.startRun(testRunSpec('new', tb.bundleId))).resumed).toBe(false);
  });
});

describe('processCheckpoint', () => {
  it('a resend of a processed step is answered as before; other activations under it are refused, not dropped', async () => {
    const engine = newEngine();
    await engine.startRun(testRunSpec('resend', tb.bundleId));
    const first = await engine.processCheckpoint('resend', testCheckpoint(tb.space, 0));
    const again = await engine.processCheckpoint('resend', testCheckpoint(tb.space, 0));
    expect(again.replayed).toBe(true);
    expect(again.result).toEqual(first.result);
    const other = testCheckpoint(tb.space, 0);
    other.layers[0].data[3] += 1;
    const e = await rejected(() => engine.processCheckpoint('resend', other));
    expect({ code: e.code, message: e.message }).toEqual({
      code: 'INVALID_ARGUMENT',
      message: 'run resend: step 0 was already processed with other activations',
    });
  });

  it('raw layers pooled on arrival (poolReceivedLayer) or released once pooled give the same records as the raw checkpoint', async () => {
    const rawCheckpoint = (step: number) => ({
      ...testCheckpoint(tb.space, step),
      layers: [
        rawConvActivations(tb.space, 'conv1', 8, step),
        rawConvActivations(tb.space, 'conv2', 12, step),
        testCheckpoint(tb.space, step).layers[2],
      ],
    });
    const [plain, released, onArrival] = [newEngine(), newEngine(), newEngine()];
    for (const e of [plain, released, onArrival]) await e.startRun(testRunSpec('pool', tb.bundleId));
    for (let step = 0; step < 2; step++) {
      const a = await plain.processCheckpoint('pool', rawCheckpoint(step));
      const cp = rawCheckpoint(step);
      const b = await released.processCheckpoint('pool', cp, { release: true });
      // the engine let go of the raw tensors: cp now holds the pooled [D, N] layers, on shared memory
      expect(cp.layers.map((l) => l.shape)).toEqual([
        [tb.space.probeScores.rows, 8],
        [tb.space.probeScores.rows, 12],
        [tb.space.probeScores.rows, 6],
      ]);
      expect(cp.layers.every((l) => l.data.buffer instanceof SharedArrayBuffer)).toBe(true);
      const arrived = rawCheckpoint(step);
      const pooled = {
        ...arrived,
        layers: arrived.layers.map((l) => onArrival.poolReceivedLayer('pool', step, l)),
      };
      expect(pooled.layers[0].data).toEqual(poolLayer(arrived.layers[0], 'avg').data);
      const c = await onArrival.processCheckpoint('pool', pooled, { release: true });
      expect(b.records).toEqual(a.records);
      expect(c.records).toEqual(a.records);
    }
    // NaN in a raw avg-pooled layer: found on its pooled values; the layer comes back raw, and the
    // checkpoint is refused by processCheckpoint naming the raw position, as without pooling on arrival
    const bad = rawCheckpoint(2);
    bad.layers[1].data[5] = Number.NaN;
    expect(onArrival.poolReceivedLayer('pool', 2, bad.layers[1])).toBe(bad.layers[1]);
    const e = await rejected(() =>
      onArrival.processCheckpoint(
        'pool',
        { ...bad, layers: bad.layers.map((l) => onArrival.poolReceivedLayer('pool', 2, l)) },
        { release: true },
      ),
    );
    expect(e.message).toBe('run pool step 2 layer conv2: value NaN at index 5 ([0, 0, 0, 5]) is not finite');
    const undeclared = { ...bad.layers[0], layer: 'nope' };
    expect(onArrival.poolReceivedLayer('pool', 2, undeclared)).toBe(undeclared);
  });

  it('unknown run -> NOT_FOUND', async () => {
    const e = await rejected(() => newEngine().processCheckpoint('ghost', testCheckpoint(tb.space, 0)));
    expect(e.code).toBe('NOT_FOUND');
    expect(e.message).toMatch(/run ghost is not started/);
  });

  it('records for 3 layers: checkpoint, labels, snapshots; labels are what libs/dissect computes directly', async () => {
    const engine = newEngine();
    await engine.startRun(testRunSpec('r1', tb.bundleId));
    let previous: Record<string, Int32Array | undefined> = {};
    for (let step = 0; step < 3; step++) {
      const cp = testCheckpoint(tb.space, step);
      cp.layers[0] = rawConvActivations(tb.space, 'conv1', 8, step);
      const out = await engine.processCheckpoint('r1', cp);
      expect(out.replayed).toBe(false);
      expect(out.records.map((r) => r.kind)).toEqual([
        'checkpoint',
        'labels',
        'labels',
        'labels',
        'snapshot',
        'snapshot',
        'snapshot',
      ]);
      expect(out.records[0]).toEqual({
        kind: 'checkpoint',
        runId: 'r1',
        step,
        metrics: cp.metrics,
        time: '2025-01-02T03:04:05.000Z',
      });
      const next: Record<string, Int32Array> = {};
      for (const layer of cp.layers) {
        const q =
          layer.shape.length === 4
            ? poolLayer(layer, 'avg')
            : { rows: layer.shape[0], cols: layer.shape[1], data: layer.data };
        const direct = await dissectLayer(tb.space, q, { previousTop1: previous[layer.layer] });
        next[layer.layer] = direct.top1;
        const rows = labelsOf(out.records, layer.layer);
        expect(rows.map((r) => r.neuron)).toEqual(direct.labels.map((l) => l.neuron));
        expect(rows.map((r) => r.concept)).toEqual(direct.labels.map((l) => l.concept));
        expect(rows.map((r) => r.score)).toEqual(direct.labels.map((l) => l.score));
        // the previous checkpoint's concept on each row ('' at the first): a switch is recorded
        const before = previous[layer.layer];
        expect(rows.map((r) => r.previousConcept)).toEqual(
          direct.labels.map((l) => (before ? tb.space.concepts[before[l.neuron]] : '')),
        );
        expect(rows.map((r) => r.previousConcept !== '' && r.previousConcept !== r.concept)).toEqual(
          direct.labels.map((l) => l.switched === true),
        );
        const snap = out.records.find(
          (r): r is LayerSnapshotRecord => r.kind === 'snapshot' && r.layer === layer.layer,
        )!;
        expect(snap.switches).toBe(direct.metrics.switches);
        expect(snap.interpretableFraction).toBe(direct.metrics.interpretableFraction);
      }
      previous = next;
      expect(out.result.step).toBe(step);
      expect(out.result.layers.map((l) => l.layer)).toEqual(['conv1', 'conv2', 'fc']);
    }
  });

  it('a resent checkpoint returns the same records; state does not advance twice', async () => {
    const engine = newEngine();
    await engine.startRun(testRunSpec('r2', tb.bundleId));
    const a = await engine.processCheckpoint('r2', testCheckpoint(tb.space, 0));
    const b = await engine.processCheckpoint('r2', testCheckpoint(tb.space, 0));
    expect(b.replayed).toBe(true);
    expect(b.records).toEqual(a.records);
    // an older step that is no longer a resend is refused
    await engine.processCheckpoint('r2', testCheckpoint(tb.space, 5));
    const e = await rejected(() => engine.processCheckpoint('r2', testCheckpoint(tb.space, 3)));
    expect(e.message).toMatch(/step 3 is not after the last processed step 5/);
  });

  it('validates shapes, widths, layers and values, naming the layer', async () => {
    const engine = newEngine();
    await engine.startRun(testRunSpec('r3', tb.bundleId));
    const msg = async (mutate: (cp: ReturnType<typeof testCheckpoint>) => void): Promise<string> => {
      const cp = testCheckpoint(tb.space, 0);
      mutate(cp);
      const e = await rejected(() => engine.processCheckpoint('r3', cp));
      expect(e.code).toBe('INVALID_ARGUMENT');
      return e.message;
    };
    expect(await msg((cp) => (cp.layers[1] = plantedActivations(tb.space, 'conv2', 11, 0)))).toMatch(
      /layer conv2: last dimension 11 does not match the declared width 12/,
    );
    expect(await msg((cp) => (cp.layers[2] = { ...cp.layers[2], shape: [60, 12] }))).toMatch(
      /layer fc: first dimension 60 must equal the probe bundle's 120 images/,
    );
    expect(await msg((cp) => (cp.layers[2] = { ...cp.layers[2], shape: [120, 2, 6] }))).toMatch(
      /must be \[D, N\] \(pooled\) or \[D, H, W, C\]/,
    );
    expect(await msg((cp) => cp.layers.pop())).toMatch(/missing activations of declared layer\(s\) fc/);
    expect(await msg((cp) => (cp.layers[1].data[7] = Infinity))).toMatch(
      /layer conv2: value Infinity at index 7 \(\[0, 7\]\) is not finite/,
    );
    expect(await msg((cp) => (cp.metrics.loss = NaN))).toMatch(/training metric loss is NaN/);
    // the run is unharmed: a good checkpoint goes through
    expect((await engine.processCheckpoint('r3', testCheckpoint(tb.space, 0))).step).toBe(0);
  });

  it('feeds the collapse detector: a layer taken over by one concept raises concept_dominance', async () => {
    const engine = newEngine();
    await engine.startRun(testRunSpec('r4', tb.bundleId, [{ name: 'fc', width: 10, kind: 'dense' }]));
    const collapsed = (step: number) => {
      const base = plantedActivations(tb.space, 'fc', 10, 0);
      // every neuron copies neuron 0 (plus a little noise): one concept everywhere
      for (let i = 0; i < base.shape[0]; i++)
        for (let k = 1; k < 10; k++) base.data[i * 10 + k] = base.data[i * 10] + 1e-3 * k;
      return { step, layers: [base], metrics: {} };
    };
    const alerts: CmRecord[] = [];
    for (let step = 0; step < 3; step++) {
      const out = await engine.processCheckpoint('r4', collapsed(step));
      alerts.push(...out.records.filter((r) => r.kind === 'alert'));
      if (out.result.alerts.length)
        expect(out.result.alerts[0]).toMatchObject({ layer: 'fc', state: 'firing' });
    }
    expect(alerts.map((a) => a.kind === 'alert' && a.rule)).toContain('concept_dominance');
  });

  it('endRun closes the run; the run is then unknown', async () => {
    const engine = newEngine();
    await engine.startRun(testRunSpec('r5', tb.bundleId));
    const rec = await engine.endRun('r5', 'completed');
    expect(rec).toMatchObject({
      kind: 'run',
      runId: 'r5',
      status: 'completed',
      endedAt: '2025-01-02T03:04:05.000Z',
    });
    expect((await rejected(() => engine.endRun('r5', 'completed'))).code).toBe('NOT_FOUND');
  });
});

it('labelsRecords splits a wide layer into parts under MAX_MESSAGE_BYTES, deterministically', () => {
  const rows: NeuronLabelRow[] = Array.from({ length: 6000 }, (_, k) => ({
    neuron: k,
    concept: `concept-with-a-long-name-${k % 97}`,
    category: 'object',
    score: 0.123456789,
    interpretable: true,
    dead: false,
    topConcepts: [
      'a-long-concept-name-1',
      'a-long-concept-name-2',
      'a-long-concept-name-3',
      'a-long-concept-name-4',
      'a-long-concept-name-5',
    ],
    topScores: [0.1234567, 0.1234567, 0.1234567, 0.1234567, 0.1234567],
    topImages: [4999, 4998, 4997, 4996, 4995, 4994, 4993, 4992],
    x: 0.123456789,
    y: -0.98765432,
  }));
  const parts = labelsRecords('r', 'wide', 1, rows, '2025-01-01T00:00:00.000Z');
  expect(parts.length).toBeGreaterThan(1);
  for (const p of parts) {
    expect(Buffer.byteLength(JSON.stringify(p))).toBeLessThan(MAX_MESSAGE_BYTES);
    expect(p.parts).toBe(parts.length);
  }
  expect(parts.flatMap((p) => p.labels.map((l) => l.neuron))).toEqual(rows.map((r) => r.neuron));
  expect(labelsRecords('r', 'wide', 1, rows, '2025-01-01T00:00:00.000Z')).toEqual(parts);
});

it('createLocalMonitor: the Monitor seam in one process, records into the sink', async () => {
  const sink = new MemorySink();
  const monitor = createLocalMonitor({
    bundles: tb.bundles,
    store: { insertRecords: async () => undefined },
    dissector: inlineDissector(),
    sink,
  });
  try {
    await expect(monitor.sendCheckpoint(testCheckpoint(tb.space, 0))).rejects.toThrow(/no run started/);
    await monitor.startRun(testRunSpec('local', tb.bundleId));
    const r = await monitor.sendCheckpoint(testCheckpoint(tb.space, 0));
    expect(r?.layers.length).toBe(3);
    await monitor.endRun('completed');
    expect(sink.records.map((x) => x.kind)).toEqual([
      'run',
      'checkpoint',
      'labels',
      'labels',
      'labels',
      'snapshot',
      'snapshot',
      'snapshot',
      'run',
    ]);
  } finally {
    await monitor.close();
  }
});
