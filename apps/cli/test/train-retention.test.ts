/**
 * Label retention in all-in-one (`cm train`, `cm demo`): the same CM_LABELS_* that the recorder and
 * `cm serve` apply thin the embedded chDB store the command writes, and a pass at the end thins a
 * run shorter than the interval. Subprocesses on a fresh CM_HOME; the store is read back directly.
 */
import { join } from 'node:path';
import { openStore, type Store } from '@cm/store';
import { cmWith, testFolder, tinyTrainFlags } from './run-cm';

const home = testFolder('cm-train-retention-');
const cm = cmWith({ CM_HOME: home, CM_LOG_LEVEL: 'warn', CM_DISSECT_WORKERS: '1' }, 240_000);

/** 8 steps, a checkpoint every step: checkpoints 0..8 of conv1[4], conv2[8], logits[8]. */
const tiny = tinyTrainFlags(8, 1);
const RETENTION = { CM_LABELS_FULL_CHECKPOINTS: '3', CM_LABELS_KEEP_EVERY: '2' };

async function withStore<T>(fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore({ kind: 'chdb', path: join(home, 'store'), database: 'concept_monitor' });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

const stepsOf = async (store: Store, table: string, run: string): Promise<number[]> =>
  (
    await store.query<{ step: number | string }>(
      `SELECT DISTINCT step FROM ${table} FINAL WHERE run_id = '${run}' ORDER BY step`,
    )
  ).map((r) => Number(r.step));

/** The documented rule (docs/store.md, Retention): newest 3 whole, older: every 2nd ordinal and alert steps. */
function expectedLabelSteps(checkpoints: number[], alertSteps: Set<number>): number[] {
  return checkpoints.filter((step, i) => i >= checkpoints.length - 3 || i % 2 === 0 || alertSteps.has(step));
}

describe('cm train all-in-one applies label retention', () => {
  it('without CM_LABELS_* nothing is thinned; with them every run of the store is, at the end of the command', async () => {
    const plain = await cm(['train', ...tiny, '--run-id', 'kept-whole']);
    expect(plain.stderr).not.toMatch(/error/i);
    expect(plain.code).toBe(0);
    await withStore(async (store) => {
      expect(await stepsOf(store, 'neuron_labels', 'kept-whole')).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
      expect(await store.query(`SELECT * FROM label_thinning`)).toEqual([]);
    });

    const thinned = await cm(['train', ...tiny, '--run-id', 'thinned'], RETENTION);
    expect(thinned.stderr).not.toMatch(/error|thinning .*failed/i);
    expect(thinned.code).toBe(0);
    await withStore(async (store) => {
      for (const run of ['kept-whole', 'thinned']) {
        const checkpoints = await stepsOf(store, 'layer_metrics', run);
        expect(checkpoints).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]); // metrics of every step stay
        const alerts = new Set(await stepsOf(store, 'alerts', run));
        const kept = expectedLabelSteps(checkpoints, alerts);
        expect(kept.length).toBeLessThan(checkpoints.length);
        const byLayer = await store.query<{ layer: string; steps: (number | string)[] }>(
          `SELECT layer, arraySort(groupUniqArray(step)) AS steps FROM neuron_labels FINAL WHERE run_id = '${run}' GROUP BY layer ORDER BY layer`,
        );
        expect(byLayer.map((r) => [r.layer, r.steps.map(Number)])).toEqual(
          ['conv1', 'conv2', 'logits'].map((l) => [l, kept]),
        );
        const [record] = await store.query<{
          through_step: number;
          keep_every: number;
          steps_removed: number;
        }>(
          `SELECT through_step, keep_every, steps_removed FROM label_thinning FINAL WHERE run_id = '${run}'`,
        );
        expect({
          through: Number(record.through_step),
          k: Number(record.keep_every),
          removed: Number(record.steps_removed),
        }).toEqual({ through: 5, k: 2, removed: checkpoints.length - kept.length });
      }
    });
    // `cm runs` says what was thinned
    const runs = await cm(['runs']);
    expect(runs.code).toBe(0);
    expect(runs.stdout).toMatch(/thinned[\s\S]*labels: every 2nd checkpoint up to step 5/);
  }, 480_000);
});
