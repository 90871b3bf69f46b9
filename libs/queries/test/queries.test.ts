import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunRecord } from '@cm/contracts';
import { openStore, type Store } from '@cm/store';
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
