import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CheckpointRecord, LabelsRecord, RunRecord } from '@cm/contracts';
import { openStore, thinLabels, type Store } from '@cm/store';
import * as Q from '../src';

const HOSTILE = [
  "it's",
  'back\\slash',
  "x'; DROP TABLE runs; --",
  "\\'; DROP TABLE neuron_labels; --",
  'new\nline',
];

describe('literals', () => {
  it('escapes strings and refuses non-integers', () => {
    expect(Q.text("a'b\\c")).toBe("'a\\'b\\\\c'");
    expect(Q.text(Q.raw("'${run}'"))).toBe("'${run}'");
    expect(() => Q.int(1.5)).toThrow(/integer/);
    expect(() => Q.int(Number.NaN)).toThrow(/integer/);
    expect(() =>
      Q.compareLayerMetricSql({ runA: 'a', runB: 'b', layer: 'l', metric: 'x; DROP' as never }),
    ).toThrow(/not a layer metric/);
    expect(() => Q.heatStripSql({ run: 'a', layer: 'b', steps: [] })).toThrow(/at least one step/);
  });
});

describe('hostile values reach chDB as literals', () => {
  let dir: string;
  let store: Store;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cm-queries-'));
    store = await openStore({ kind: 'chdb', path: join(dir, 'store'), database: 'cm_queries_test' });
    await store.migrate();
    await store.insertRecords(
      HOSTILE.map((runId, i): RunRecord => ({
        kind: 'run',
        runId,
        model: 'm',
        paradigm: 'standard',
        bundleId: '0123456789abcdef',
        layers: [{ name: HOSTILE[(i + 1) % HOSTILE.length], width: 4 }],
        tags: {},
        status: 'running',
        startedAt: new Date(1_700_000_000_000 + i * 1000).toISOString(),
        time: new Date(1_700_000_000_000 + i * 1000).toISOString(),
      })),
    );
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it.each(HOSTILE)('%j: the overview finds exactly that run, tables survive', async (runId) => {
    const rows = await store.query<{ run_id: string }>(Q.runsOverviewSql({ run: runId }));
    expect(rows.map((r) => r.run_id)).toEqual([runId]);
    const layers = await store.query<{ name: string }>(Q.runLayersSql({ run: runId }));
    expect(layers).toHaveLength(1);
    for (const sql of [
      Q.layerCurvesSql({ run: runId, layer: runId }),
      Q.neuronHistorySql({ run: runId, layer: runId, neuron: 0, withTopImages: false }),
      Q.conceptMapSql({ run: runId, layer: runId, step: 0 }),
      Q.lastCategorySharesSql({ runs: [runId, runId], layer: runId }),
    ])
      expect(await store.query(sql)).toEqual([]);
    const [all] = await store.query<{ n: string }>(`SELECT count() AS n FROM runs FINAL`);
    expect(Number(all.n)).toBe(HOSTILE.length);
  });
});

/**
 * The layer-wide questions rewritten for long runs (one pass instead of two; switches read from the
 * recorded previous concept) against a reference computed here from the same labels: each neuron's
 * concept sequence and path by step, a re-sent checkpoint (duplicate rows) and a recomputed one
 * (newer rows replace older: FINAL) included. A recomputation gives the same labels (the engine
 * recomputes from the saved starting state, libs/engine/src/engine.ts) at a new time; its positions
 * are moved here so that the trajectories show which version FINAL kept.
 */
describe('switching concepts and trajectories: one pass, same answers', () => {
  const RUN = 'switch-run';
  const LAYER = 'conv1';
  const WIDTH = 6;
  const STEPS = [0, 10, 20, 30, 40, 50, 60, 70];
  const CONCEPTS = ['dog', 'cat', 'grid', 'red', 'sky'];
  /** Neuron k's concept at step index i: some never switch, some switch often, in both directions. */
  const conceptAt = (k: number, i: number): string =>
    CONCEPTS[(k % 3 === 0 ? 0 : Math.floor((i * (k + 1)) / 3)) % CONCEPTS.length];
  const xyAt = (k: number, i: number): [number, number] => [
    k * 0.1 + i * 0.01 * k,
    -k * 0.05 - i * 0.02 * (k % 2),
  ];
  const labels = (
    i: number,
    recomputed = false,
    runId = RUN,
    withPrevious = true,
    steps: readonly number[] = STEPS,
  ): LabelsRecord => ({
    kind: 'labels',
    runId,
    layer: LAYER,
    step: steps[i],
    part: 0,
    parts: 1,
    time: new Date(1_700_000_000_000 + i * 1000 + (recomputed ? 500 : 0)).toISOString(),
    labels: Array.from({ length: WIDTH }, (_, k) => {
      const [x, y] = xyAt(k, i);
      const concept = conceptAt(k, i);
      return {
        neuron: k,
        concept,
        category: 'c',
        score: 0.5,
        interpretable: true,
        dead: false,
        topConcepts: [concept],
        topScores: [0.5],
        topImages: [],
        x: recomputed ? x + 1 : x,
        y,
        ...(withPrevious ? { previousConcept: i === 0 ? '' : conceptAt(k, i - 1) } : {}),
      };
    }),
  });
  /** Step index 3 recomputed (newer rows win), step index 5 sent twice. */
  const RECOMPUTED = 3;
  const finalConcept = conceptAt;
  const finalXy = (k: number, i: number): [number, number] => {
    const [x, y] = xyAt(k, i);
    return i === RECOMPUTED ? [x + 1, y] : [x, y];
  };

  /** Recorded before migration 6 (no previous concept on its rows): the sequences answer it. */
  const LEGACY_RUN = 'switch-legacy';
  /** Thinned by the retention job after recording: every 2nd checkpoint outside the newest 2 kept. */
  const THIN_RUN = 'switch-thinned';
  let thinnedSteps: number[];

  let dir: string;
  let store: Store;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cm-queries-switch-'));
    store = await openStore({ kind: 'chdb', path: join(dir, 'store'), database: 'cm_queries_switch' });
    await store.migrate();
    await store.insertRecords(STEPS.map((_, i) => labels(i)));
    await store.insertRecords([labels(RECOMPUTED, true), labels(5)]);
    await store.insertRecords(STEPS.map((_, i) => labels(i, false, LEGACY_RUN, false)));
    await store.insertRecords([
      ...STEPS.map((_, i) => labels(i, false, THIN_RUN)),
      ...STEPS.map((step, i): CheckpointRecord => ({
        kind: 'checkpoint',
        runId: THIN_RUN,
        step,
        metrics: {},
        time: new Date(1_700_000_000_000 + i * 1000).toISOString(),
      })),
    ]);
    await thinLabels(store, { fullDays: 0, fullCheckpoints: 2, keepEvery: 2 }, { run: THIN_RUN });
    const kept = await store.query<{ step: number }>(Q.labelStepsSql({ run: THIN_RUN, layer: LAYER }));
    thinnedSteps = STEPS.filter((step) => !kept.some((r) => Number(r.step) === step));
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  interface Switch {
    k: number;
    step: number;
    from: string;
    to: string;
  }
  /** Switches of consecutive checkpoints among `indices` (step indices, ascending). */
  const switchesAlong = (
    indices: readonly number[],
    previousOf: (k: number, j: number) => string,
  ): Switch[] =>
    Array.from({ length: WIDTH }, (_, k) =>
      indices.slice(1).flatMap((i, j) => {
        const from = previousOf(k, j);
        const to = finalConcept(k, i);
        return from === to ? [] : [{ k, step: STEPS[i], from, to }];
      }),
    ).flat();
  const allIndices = STEPS.map((_, i) => i);
  const consecutive = (indices: readonly number[]) => (k: number, j: number) => finalConcept(k, indices[j]);
  const atRecordTime = (indices: readonly number[]) => (k: number, j: number) =>
    finalConcept(k, indices[j + 1] - 1);

  const expectedConcepts = (switches: Switch[]) => {
    const into = new Map<string, number>();
    const outOf = new Map<string, number>();
    for (const { from, to } of switches) {
      into.set(to, (into.get(to) ?? 0) + 1);
      outOf.set(from, (outOf.get(from) ?? 0) + 1);
    }
    return [...new Set([...into.keys(), ...outOf.keys()])]
      .map((concept) => ({
        concept,
        switches_into: into.get(concept) ?? 0,
        switches_out_of: outOf.get(concept) ?? 0,
      }))
      .sort(
        (a, b) =>
          b.switches_into + b.switches_out_of - (a.switches_into + a.switches_out_of) ||
          (a.concept < b.concept ? -1 : 1),
      );
  };
  /** Every neuron: its switches and its path (first concept, then each switch's, distinct). */
  const expectedNeurons = (switches: Switch[], first: number) =>
    Array.from({ length: WIDTH }, (_, k) => {
      const own = switches.filter((w) => w.k === k);
      const path = [...new Set([finalConcept(k, first), ...own.map((w) => w.to)])];
      return { neuron: k, switches: own.length, concepts: path.join(' > ') };
    }).sort((a, b) => b.switches - a.switches || a.neuron - b.neuron);

  const conceptsOf = async (sql: string) =>
    (await store.query<{ concept: string; switches_into: string; switches_out_of: string }>(sql)).map(
      (r) => ({
        concept: r.concept,
        switches_into: Number(r.switches_into),
        switches_out_of: Number(r.switches_out_of),
      }),
    );
  const neuronsOf = async (sql: string) =>
    (await store.query<{ neuron: string; switches: string; concepts: string }>(sql)).map((r) => ({
      neuron: Number(r.neuron),
      switches: Number(r.switches),
      concepts: r.concepts,
    }));

  it('switchingConcepts counts each switch into and out of a concept once (recorded and rebuilt alike)', async () => {
    const expected = expectedConcepts(switchesAlong(allIndices, consecutive(allIndices)));
    expect(expected.length).toBeGreaterThan(2);
    expect(await conceptsOf(Q.switchingConceptsSql({ run: RUN, layer: LAYER }))).toEqual(expected);
    expect(await conceptsOf(Q.switchingConceptsFromSequencesSql({ run: RUN, layer: LAYER }))).toEqual(
      expected,
    );
  });

  it('switchingNeurons: switches and concept path per neuron, re-sent and recomputed rows counted once', async () => {
    const expected = expectedNeurons(switchesAlong(allIndices, consecutive(allIndices)), 0);
    expect(new Set(expected.map((e) => e.switches)).size).toBeGreaterThan(2);
    expect(await neuronsOf(Q.switchingNeuronsSql({ run: RUN, layer: LAYER }))).toEqual(expected);
    expect(await neuronsOf(Q.switchingNeuronsFromSequencesSql({ run: RUN, layer: LAYER }))).toEqual(expected);
    expect(await neuronsOf(Q.switchingNeuronsSql({ run: RUN, layer: LAYER, limit: 2 }))).toEqual(
      expected.slice(0, 2),
    );
  });

  it('switchingLayerMode: recorded layers read the switches, layers recorded before migration 6 the sequences', async () => {
    const mode = async (run: string) =>
      Number(
        (await store.query<{ recorded: string }>(Q.switchingLayerModeSql({ run, layer: LAYER })))[0].recorded,
      );
    expect(await mode(RUN)).toBe(1);
    expect(await mode(THIN_RUN)).toBe(1);
    expect(await mode(LEGACY_RUN)).toBe(0);
    // what the legacy layer would wrongly say without the probe, and what its sequences say
    expect(await conceptsOf(Q.switchingConceptsSql({ run: LEGACY_RUN, layer: LAYER }))).toEqual([]);
    const expected = switchesAlong(allIndices, consecutive(allIndices));
    expect(await conceptsOf(Q.switchingConceptsFromSequencesSql({ run: LEGACY_RUN, layer: LAYER }))).toEqual(
      expectedConcepts(expected),
    );
    expect(await neuronsOf(Q.switchingNeuronsFromSequencesSql({ run: LEGACY_RUN, layer: LAYER }))).toEqual(
      expectedNeurons(expected, 0),
    );
  });

  it("the *Either forms answer each layer in its own form, as switchesRecorded says (Grafana's panels)", async () => {
    const recordedOf = async (run: string): Promise<number> =>
      Number(
        (await store.query<{ recorded: string }>(Q.switchesRecordedSql({ run, layer: LAYER })))[0].recorded,
      );
    expect(await recordedOf(RUN)).toBe(1);
    expect(await recordedOf(LEGACY_RUN)).toBe(0);
    const expected = switchesAlong(allIndices, consecutive(allIndices));
    for (const run of [RUN, LEGACY_RUN]) {
      const a = { run, layer: LAYER, recorded: await recordedOf(run) };
      expect(await conceptsOf(Q.switchingConceptsEitherSql(a))).toEqual(expectedConcepts(expected));
      expect(await neuronsOf(Q.switchingNeuronsEitherSql(a))).toEqual(expectedNeurons(expected, 0));
    }
    // the branch not chosen answers nothing: a wrong `recorded` reads the other form
    expect(
      await conceptsOf(Q.switchingConceptsEitherSql({ run: LEGACY_RUN, layer: LAYER, recorded: 1 })),
    ).toEqual([]);
    expect(() => Q.switchingConceptsEitherSql({ run: RUN, layer: LAYER, recorded: 0.5 })).toThrow(/integer/);
  });

  it('label thinning in words and as time regions (the Grafana retention panel and annotation)', async () => {
    const [pass] = await store.query<{
      from_step: string;
      through_step: string;
      keep_every: string;
      note: string;
    }>(Q.labelThinningSql({ run: THIN_RUN }));
    expect(pass).toMatchObject({ from_step: 0, through_step: STEPS[STEPS.length - 3], keep_every: 2 });
    expect(pass.note).toBe(
      `steps 0-${STEPS[STEPS.length - 3]}: labels of every 2nd checkpoint kept, and of alert steps (${thinnedSteps.length} steps' labels removed, ${thinnedSteps.length * WIDTH} rows); layer metrics of every step kept`,
    );
    const [region] = await store.query<{ time: string; timeEnd: string; text: string; tags: string[] }>(
      Q.labelThinningAnnotationsSql({ run: THIN_RUN }),
    );
    const second = (i: number): string =>
      new Date(1_700_000_000_000 + i * 1000).toISOString().replace('T', ' ').slice(0, 19);
    expect(region).toMatchObject({ time: second(0), timeEnd: second(STEPS.length - 3) });
    expect(region.text).toBe(`Labels thinned by retention, ${pass.note}`);
    expect(region.tags).toEqual(['label retention', 'every 2']);
    expect(await store.query(Q.labelThinningSql({ run: RUN }))).toEqual([]);
  });

  it('after retention thinning the switches recorded at the kept checkpoints still count', async () => {
    expect(thinnedSteps.length).toBeGreaterThan(0);
    const kept = allIndices.filter((i) => !thinnedSteps.includes(STEPS[i]));
    const recorded = switchesAlong(kept, atRecordTime(kept));
    const rebuilt = switchesAlong(kept, consecutive(kept));
    // the data has a switch the kept sequence cannot see (A > B > A thinned to A > A) or the like
    expect(recorded).not.toEqual(rebuilt);
    expect(await conceptsOf(Q.switchingConceptsSql({ run: THIN_RUN, layer: LAYER }))).toEqual(
      expectedConcepts(recorded),
    );
    expect(await neuronsOf(Q.switchingNeuronsSql({ run: THIN_RUN, layer: LAYER }))).toEqual(
      expectedNeurons(recorded, kept[0]),
    );
    expect(await neuronsOf(Q.switchingNeuronsFromSequencesSql({ run: THIN_RUN, layer: LAYER }))).toEqual(
      expectedNeurons(rebuilt, kept[0]),
    );
  });

  it('trajectories: the paths up to the step of the neurons that moved most, by neuron then step', async () => {
    const upTo = 4; // step index: steps 0..40
    const trail = 3;
    const moved = Array.from({ length: WIDTH }, (_, k) => {
      const pts = Array.from({ length: upTo + 1 }, (_, i) => finalXy(k, i));
      const xs = pts.map((p) => Math.fround(p[0]));
      const ys = pts.map((p) => Math.fround(p[1]));
      return { k, moved: Math.max(...xs) - Math.min(...xs) + (Math.max(...ys) - Math.min(...ys)) };
    });
    const chosen = moved
      .sort((a, b) => b.moved - a.moved || a.k - b.k)
      .slice(0, trail)
      .map((m) => m.k)
      .sort((a, b) => a - b);
    const expected = chosen.flatMap((k) =>
      Array.from({ length: upTo + 1 }, (_, i) => {
        const [x, y] = finalXy(k, i);
        return { neuron_id: `n${k}`, x: Math.fround(x), y: Math.fround(y) };
      }),
    );
    const rows = await store.query<{ neuron_id: string; x: number; y: number }>(
      Q.trajectoriesSql({ run: RUN, layer: LAYER, step: STEPS[upTo], trail }),
    );
    expect(
      rows.map((r) => ({ neuron_id: r.neuron_id, x: Math.fround(Number(r.x)), y: Math.fround(Number(r.y)) })),
    ).toEqual(expected);
  });
});
