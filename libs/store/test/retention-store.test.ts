import type { CmRecord } from '@cm/contracts';
import {
  deleteRun,
  describeThinning,
  openStore,
  scheduleLabelThinning,
  sqlString,
  thinLabels,
  thinningRecords,
  type RetentionPolicy,
  type Store,
} from '../src';
import {
  alertRecord,
  checkpointRecord,
  labelsRecord,
  NASTY_LAYER,
  NASTY_RUN_ID,
  runRecord,
  snapshotRecord,
} from './fixtures';
import { realBackends } from './backends';

/**
 * The retention job on real engines: clickhouse-server 18.16 (apt, ALTER ... DELETE mutations) and
 * chDB (ClickHouse 26). A run with old and young checkpoints is thinned; exactly the documented
 * label rows remain, every checkpoint's checkpoints and layer_metrics rows remain, the pass is
 * recorded, and a rerun is a no-op.
 */
const { backends, server: runningServer } = realBackends('cm-retention-', 'cm_retention');

const DAY = 24 * 60 * 60 * 1000;
const NOW = new Date('2026-06-01T00:00:00Z');
const OLD = new Date(NOW.getTime() - 60 * DAY).toISOString();
const YOUNG = new Date(NOW.getTime() - 3600_000).toISOString();
const STEPS = Array.from({ length: 10 }, (_, i) => i * 100); // 0..900
const YOUNG_FROM = 700;
const POLICY: RetentionPolicy = { fullDays: 30, fullCheckpoints: 0, keepEvery: 3 };
const RUN = NASTY_RUN_ID; // quotes, backslashes, a newline: the mutation's literal must hold
const OTHER = 'young-run';
const WIDTH = { [NASTY_LAYER]: 4, fc: 3 } as const;
const PER_STEP = 7;

/** Checkpoints 0..900 of two layers; labels of steps < 700 are 60 days old; alert fired at 300, resolved at 400. */
function longRun(runId: string, labelTime: (step: number) => string): CmRecord[] {
  const out: CmRecord[] = [runRecord(runId)];
  for (const step of STEPS) {
    out.push(checkpointRecord(runId, step));
    for (const [layer, width] of Object.entries(WIDTH))
      out.push(labelsRecord(runId, layer, step, width, labelTime(step)), snapshotRecord(runId, layer, step));
  }
  out.push(alertRecord(runId, 'firing', 300), alertRecord(runId, 'resolved', 400));
  return out;
}

describe.each(backends)('label retention on %s', (_name, makeTarget) => {
  let store: Store;
  const count = async (sql: string): Promise<number> => Number((await store.query<{ n: string }>(sql))[0].n);
  const labelSteps = async (runId: string): Promise<number[]> =>
    (
      await store.query<{ step: number | string }>(
        `SELECT DISTINCT step FROM neuron_labels FINAL WHERE run_id = ${sqlString(runId)} ORDER BY step`,
      )
    ).map((r) => Number(r.step));
  const rowsOf = (table: string, runId: string): Promise<number> =>
    count(`SELECT count() AS n FROM ${table} FINAL WHERE run_id = ${sqlString(runId)}`);

  beforeAll(async () => {
    store = await openStore(await makeTarget());
    await store.migrate();
    const young = (): string => YOUNG;
    const records = [...longRun(RUN, (s) => (s < YOUNG_FROM ? OLD : YOUNG)), ...longRun(OTHER, young)];
    await store.insertRecords(records);
    await store.insertRecords(records); // a redelivery: two versions of every row, FINAL reads one
  }, 120_000);
  afterAll(async () => {
    await store?.close();
  });

  it('a dry run plans without deleting or recording', async () => {
    const { plan, records } = await thinLabels(store, POLICY, { now: NOW, dryRun: true });
    expect(records).toEqual([]);
    expect(plan).toHaveLength(1);
    expect(plan[0]).toMatchObject({
      runId: RUN,
      afterStep: -1,
      throughStep: 600,
      keepEvery: 3,
      // ordinals 0, 3, 6 (steps 0, 300, 600) and the alert steps 300 and 400 stay
      keptSteps: [0, 300, 400, 600],
      removeSteps: [100, 200, 500],
    });
    expect(await labelSteps(RUN)).toEqual(STEPS);
    expect(await count(`SELECT count() AS n FROM label_thinning`)).toBe(0);
  });

  it('thins old label rows to every k-th checkpoint; every checkpoint keeps its metrics; the pass is recorded', async () => {
    const { records } = await thinLabels(store, POLICY, { now: NOW });
    expect(await labelSteps(RUN)).toEqual([0, 300, 400, 600, 700, 800, 900]);
    expect(await rowsOf('neuron_labels', RUN)).toBe(7 * PER_STEP);
    // the physical rows are gone too (not only hidden by FINAL)
    expect(
      await count(
        `SELECT count() AS n FROM neuron_labels WHERE run_id = ${sqlString(RUN)} AND step IN (100, 200, 500)`,
      ),
    ).toBe(0);
    expect(await rowsOf('layer_metrics', RUN)).toBe(STEPS.length * 2);
    expect(await rowsOf('checkpoints', RUN)).toBe(STEPS.length);
    expect(await rowsOf('alerts', RUN)).toBe(2);
    expect(await rowsOf('runs', RUN)).toBe(1);
    // the young run is untouched
    expect(await labelSteps(OTHER)).toEqual(STEPS);
    expect(await rowsOf('neuron_labels', OTHER)).toBe(STEPS.length * PER_STEP);
    expect(records).toEqual([
      expect.objectContaining({
        runId: RUN,
        afterStep: -1,
        throughStep: 600,
        keepEvery: 3,
        stepsRemoved: 3,
        rowsRemoved: 3 * PER_STEP,
      }),
    ]);
    const stored = await thinningRecords(store);
    expect([...stored.keys()]).toEqual([RUN]);
    expect(stored.get(RUN)).toEqual([
      expect.objectContaining({
        afterStep: -1,
        throughStep: 600,
        keepEvery: 3,
        stepsRemoved: 3,
        rowsRemoved: 21,
      }),
    ]);
    expect(describeThinning(stored.get(RUN)!)).toBe('labels: every 3rd checkpoint up to step 600');
  }, 120_000);

  it('a rerun is a no-op', async () => {
    const again = await thinLabels(store, POLICY, { now: NOW });
    expect(again).toEqual({ plan: [], records: [] });
    expect(await rowsOf('neuron_labels', RUN)).toBe(7 * PER_STEP);
    expect(await count(`SELECT count() AS n FROM label_thinning FINAL`)).toBe(1);
  });

  it('a later pass decides only the steps after the last one; the newest step always stays', async () => {
    const later = new Date(NOW.getTime() + 60 * DAY); // every row is old now
    const { records } = await thinLabels(store, POLICY, { now: later, run: RUN });
    // ordinals 7 and 8 go; 900 is the run's last step
    expect(await labelSteps(RUN)).toEqual([0, 300, 400, 600, 900]);
    expect(records).toEqual([
      expect.objectContaining({
        runId: RUN,
        afterStep: 600,
        throughStep: 800,
        stepsRemoved: 2,
        rowsRemoved: 14,
      }),
    ]);
    expect(await rowsOf('layer_metrics', RUN)).toBe(STEPS.length * 2);
    expect(await rowsOf('checkpoints', RUN)).toBe(STEPS.length);
    // `run` limited the pass: the other run, old by now as well, was not touched
    expect(await labelSteps(OTHER)).toEqual(STEPS);
    expect(describeThinning((await thinningRecords(store, RUN)).get(RUN)!)).toBe(
      'labels: every 3rd checkpoint up to step 800',
    );
    expect(await thinLabels(store, POLICY, { now: later, run: RUN })).toEqual({ plan: [], records: [] });
  }, 120_000);

  it('deleting a run (cm runs delete) deletes its thinning records too', async () => {
    expect((await thinningRecords(store, RUN)).size).toBe(1);
    await deleteRun(store, RUN);
    for (let i = 0; i < 100 && (await thinningRecords(store, RUN)).size > 0; i++)
      await new Promise((r) => setTimeout(r, 100));
    expect((await thinningRecords(store, RUN)).size).toBe(0);
    expect(await rowsOf('neuron_labels', RUN)).toBe(0);
  }, 60_000);

  it('with thinning off nothing is planned', async () => {
    expect(
      await thinLabels(store, { ...POLICY, keepEvery: 0 }, { now: new Date(NOW.getTime() + 999 * DAY) }),
    ).toEqual({
      plan: [],
      records: [],
    });
    expect(await labelSteps(OTHER)).toEqual(STEPS);
  });
});

describe('scheduled thinning (what the recorder and cm serve run)', () => {
  it('passes run on the interval until stopped; a pass finds nothing new after the first', async () => {
    const server = runningServer();
    if (!server) throw new Error('the clickhouse-server of the first suite is not running');
    const store = await openStore({
      kind: 'server',
      url: server.url,
      user: 'default',
      password: '',
      database: 'cm_retention_schedule',
    });
    try {
      await store.migrate();
      const now = Date.now();
      const old = new Date(now - 60 * DAY).toISOString();
      const young = new Date(now - 3600_000).toISOString();
      await store.insertRecords(longRun('scheduled', (s) => (s < YOUNG_FROM ? old : young)));
      const schedule = scheduleLabelThinning(store, POLICY, { intervalMs: 100, firstDelayMs: 0 });
      let records = new Map<string, unknown[]>();
      for (let i = 0; i < 100 && records.size === 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
        records = await thinningRecords(store);
      }
      await new Promise((r) => setTimeout(r, 500)); // a few more passes: each a no-op
      await schedule.stop();
      expect([...records.keys()]).toEqual(['scheduled']);
      expect(await count(store, `SELECT count() AS n FROM label_thinning FINAL`)).toBe(1);
      expect(
        (
          await store.query<{ step: number | string }>(
            `SELECT DISTINCT step FROM neuron_labels FINAL WHERE run_id = 'scheduled' ORDER BY step`,
          )
        ).map((r) => Number(r.step)),
      ).toEqual([0, 300, 400, 600, 700, 800, 900]);
      expect(await schedule.runNow()).toEqual({ plan: [], records: [] });
    } finally {
      await store.close();
    }
  }, 60_000);
});

async function count(store: Store, sql: string): Promise<number> {
  return Number((await store.query<{ n: string }>(sql))[0].n);
}
