import { TABLES, type RunRecord } from '@cm/contracts';
import { CmError } from '@cm/core';
import { LOCAL_SUFFIX } from './cluster';
import { qualified } from './schema';
import { sqlIdentifier, sqlString } from './sql';
import type { Store } from './store';

/**
 * Ending and deleting a run by hand (`cm runs close ID`, `cm runs delete ID`): for runs whose
 * trainer died without RunEnd, and for runs a user wants gone. Plain functions over a Store.
 */

/** The run's record as stored (FINAL: the newest), or undefined when the store has no such run. */
export async function storedRunRecord(store: Store, runId: string): Promise<RunRecord | undefined> {
  const [row] = await store.query<{
    run_id: string;
    model: string;
    paradigm: string;
    bundle_id: string;
    layer_names: string[];
    layer_widths: (number | string)[];
    tag_keys: string[];
    tag_values: string[];
    status: RunRecord['status'];
    started_at: string;
  }>(
    `SELECT run_id, model, paradigm, bundle_id, layers.name AS layer_names, layers.width AS layer_widths,
  tags.key AS tag_keys, tags.value AS tag_values, status, toString(started_at) AS started_at
FROM ${qualified(store.database, TABLES.runs)} FINAL WHERE run_id = ${sqlString(runId)}`,
  );
  if (!row) return undefined;
  const startedAt = new Date(`${row.started_at.replace(' ', 'T')}Z`).toISOString();
  return {
    kind: 'run',
    runId: row.run_id,
    model: row.model,
    paradigm: row.paradigm,
    bundleId: row.bundle_id,
    layers: row.layer_names.map((name, i) => ({ name, width: Number(row.layer_widths[i]) })),
    tags: Object.fromEntries(row.tag_keys.map((k, i) => [k, row.tag_values[i]])),
    status: row.status,
    startedAt,
    time: startedAt,
  };
}

function unknownRun(store: Store, runId: string): CmError {
  return new CmError('NOT_FOUND', `no run ${runId} in the store`, {
    context: { runId, database: store.database },
    hint: 'cm runs lists the runs',
  });
}

/** Record the run as ended (`completed`, `failed` or `abandoned`) now; returns the record written. */
export async function closeRun(
  store: Store,
  runId: string,
  status: 'completed' | 'failed' | 'abandoned',
  now: Date = new Date(),
): Promise<RunRecord> {
  const run = await storedRunRecord(store, runId);
  if (!run) throw unknownRun(store, runId);
  const time = now.toISOString();
  const closed: RunRecord = { ...run, status, endedAt: time, time };
  await store.insertRecords([closed]);
  return closed;
}

/** Tables that hold rows of a run (the concept dictionary is per bundle and stays). */
const RUN_TABLES = [TABLES.runs, TABLES.checkpoints, TABLES.neuronLabels, TABLES.layerMetrics, TABLES.alerts];

/** Rows the run has in each table (FINAL). */
export async function runRowCounts(store: Store, runId: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of RUN_TABLES) {
    const [row] = await store.query<{ n: string | number }>(
      `SELECT count() AS n FROM ${qualified(store.database, t)} FINAL WHERE run_id = ${sqlString(runId)}`,
    );
    out[t] = Number(row.n);
  }
  return out;
}

/**
 * Delete every row of the run (ALTER ... DELETE: a mutation on 18.16 and current servers alike;
 * on a cluster, of the local tables ON CLUSTER). Mutations run in the background, so this waits
 * until the run's rows are gone, up to `timeoutMs`.
 */
export async function deleteRun(
  store: Store,
  runId: string,
  opts: { cluster?: string; timeoutMs?: number } = {},
): Promise<Record<string, number>> {
  const before = await runRowCounts(store, runId);
  if (before[TABLES.runs] === 0) throw unknownRun(store, runId);
  for (const t of RUN_TABLES) {
    const table = opts.cluster
      ? `${qualified(store.database, `${t}${LOCAL_SUFFIX}`)} ON CLUSTER ${sqlIdentifier(opts.cluster)}`
      : qualified(store.database, t);
    await store.execute(`ALTER TABLE ${table} DELETE WHERE run_id = ${sqlString(runId)}`);
  }
  // what label retention recorded of the run goes with it (label_thinning, migration 5, when the store has it)
  const thinning = await store.query(
    `SELECT name FROM system.tables WHERE database = ${sqlString(store.database)} AND name = ${sqlString(TABLES.labelThinning)}`,
  );
  if (thinning.length > 0) {
    const table = opts.cluster
      ? `${qualified(store.database, `${TABLES.labelThinning}${LOCAL_SUFFIX}`)} ON CLUSTER ${sqlIdentifier(opts.cluster)}`
      : qualified(store.database, TABLES.labelThinning);
    await store.execute(`ALTER TABLE ${table} DELETE WHERE run_id = ${sqlString(runId)}`);
  }
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (;;) {
    const left = await runRowCounts(store, runId);
    if (Object.values(left).every((n) => n === 0)) return before;
    if (Date.now() > deadline) {
      throw new CmError('TIMEOUT', `run ${runId}: rows still there after the delete (mutations pending)`, {
        context: { runId, left },
        hint: 'see system.mutations; the delete finishes in the background',
      });
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
