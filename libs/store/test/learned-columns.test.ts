/**
 * Migration 4 (layer_metrics.learned_fraction, learned_chance: the learned-concept figure) on
 * clickhouse-server 18.16 and on chDB: a store migrated up to 3 with a layer_metrics row written
 * then gets the columns (guarded ALTER: 18.16 has no ADD COLUMN IF NOT EXISTS), the old row reads
 * NULL ("no baseline"), and new rows keep a figure, an explicit null and 0 apart.
 */
import { layerMetricsSql, LEARNED_COLUMNS, MIGRATIONS, openStore } from '../src';
import { snapshotRecord } from './fixtures';
import { realBackends } from './backends';

const { backends } = realBackends('cm-store-learned-', 'cm_learned');

describe.each(backends)('migration 4 on %s', (_name, makeTarget) => {
  it('adds the learned-concept columns; rows written before read NULL; a figure, null and 0 stay apart', async () => {
    const store = await openStore(await makeTarget());
    try {
      expect(await store.migrate(MIGRATIONS.filter((m) => m.version <= 3))).toEqual([1, 2, 3]);
      const db = store.database;
      // a layer_metrics row as a version-3 writer left it (no learned columns), as a test-only migration
      const oldRow = {
        version: 100,
        name: 'test: a layer_metrics row written before migration 4',
        statements: () => [
          `INSERT INTO ${db}.layer_metrics (run_id, layer, step, neurons, interpretable_fraction, time, time_ms) VALUES ('old-run', 'fc', 1, 4, 0.5, 1767225600, 1767225600000)`,
        ],
      };
      expect(await store.migrate([oldRow])).toEqual([100]);
      const columnsOf = () =>
        store.query<{ name: string; type: string }>(
          `SELECT name, type FROM system.columns WHERE database = '${db}' AND table = 'layer_metrics' AND name LIKE 'learned%' ORDER BY name`,
        );
      expect(await columnsOf()).toEqual([]);
      expect(await store.migrate()).toContain(4);
      expect(await columnsOf()).toEqual(
        [...LEARNED_COLUMNS].sort().map((name) => ({ name, type: 'Nullable(Float64)' })),
      );
      // applied again after an interruption (columns there, version not recorded): skipped, no error
      const four = MIGRATIONS.find((m) => m.version === 4)!;
      expect(await store.migrate([{ ...four, version: 104 }])).toEqual([104]);

      await store.insertRecords([
        { ...snapshotRecord('new-run', 'fc', 1), learnedFraction: 0.25, learnedChance: 0.0625 },
        { ...snapshotRecord('new-run', 'fc', 2), learnedFraction: null, learnedChance: null },
        { ...snapshotRecord('new-run', 'fc', 3), learnedFraction: 0, learnedChance: 0 },
      ]);
      const read = async (runId: string) =>
        (await store.query<Record<string, unknown>>(layerMetricsSql(db, runId))).map((r) => [
          Number(r.step),
          r.learned_fraction,
          r.learned_chance,
        ]);
      expect(await read('old-run')).toEqual([[1, null, null]]);
      expect(await read('new-run')).toEqual([
        [1, 0.25, 0.0625],
        [2, null, null],
        [3, 0, 0],
      ]);
    } finally {
      await store.close();
    }
  }, 120_000);
});
