import { TABLES } from '@cm/contracts';
import { CmError, errorMessage, type Logger } from '@cm/core';
import { LOCAL_SUFFIX } from './cluster';
import { qualified } from './schema';
import { sqlIdentifier, sqlNumber, sqlString } from './sql';
import type { Store } from './store';

/**
 * Retention of neuron_labels over long runs (docs/store.md, "Retention"). neuron_labels is the one
 * table that grows with neurons x checkpoints; runs, checkpoints, layer_metrics and alerts are a few
 * rows per checkpoint and are always kept whole. Old label rows are thinned to every k-th
 * checkpoint of the run:
 *
 *   - a step is *old* when its newest label row is older than `fullDays` (0: no age bound) and it is
 *     not among the run's newest `fullCheckpoints` checkpoints (0: no count bound);
 *   - old steps are decided in order, once: each pass decides the steps after the previous pass's
 *     `through_step` up to the last old step before the first step that is not old, and records
 *     that range in label_thinning. A step already decided is never looked at again, so a rerun is
 *     a no-op and a later change of `keepEvery` applies only to steps decided after it;
 *   - in the decided range, the labels of a step are kept when the step's ordinal among the run's
 *     checkpoints (the steps of checkpoints and layer_metrics, tables that are never thinned, so
 *     the count does not move) is a multiple of `keepEvery`, when an alert episode fired or
 *     resolved at it, or when it has no checkpoint or layer_metrics row (no ordinal); the first
 *     checkpoint is ordinal 0, and the last step of a run is never old. The others are deleted.
 *
 * The planner is a pure function (planThinning); thinLabels reads its input from a store, deletes
 * with ALTER TABLE ... DELETE (a mutation: 18.16, current servers and chDB alike; on a cluster, of
 * the local tables ON CLUSTER), waits for the rows to be gone and writes the records.
 */

export interface RetentionPolicy {
  /** Label rows younger than this many days keep every checkpoint (0: no age bound). */
  fullDays: number;
  /** A run's newest this many checkpoints keep every label row (0: no count bound). */
  fullCheckpoints: number;
  /** Older label rows are kept at every k-th checkpoint only; 0 or 1: thinning is off. */
  keepEvery: number;
}

/** Thinning runs only with a k of 2 or more and at least one bound that protects the newest rows. */
export function retentionEnabled(policy: RetentionPolicy): boolean {
  return policy.keepEvery >= 2 && (policy.fullDays > 0 || policy.fullCheckpoints > 0);
}

/** The policy in words: "labels older than 30 days: every 10th checkpoint kept" ('' when off). */
export function describePolicy(policy: RetentionPolicy): string {
  if (!retentionEnabled(policy)) return '';
  const bounds = [
    ...(policy.fullDays > 0 ? [`older than ${policy.fullDays} day${policy.fullDays === 1 ? '' : 's'}`] : []),
    ...(policy.fullCheckpoints > 0
      ? [`outside each run's newest ${policy.fullCheckpoints} checkpoints`]
      : []),
  ];
  return `labels ${bounds.join(' and ')}: every ${ordinalSuffix(policy.keepEvery)} checkpoint kept`;
}

/** What the planner knows of one run. */
export interface RunLabelSteps {
  runId: string;
  /** Steps of the run's checkpoints and layer_metrics rows (the ordinal base), any order. */
  checkpointSteps: readonly number[];
  /** Steps that hold label rows: how many rows (an estimate: before FINAL) and the newest row's time. */
  labelSteps: readonly { step: number; rows: number; newestMs: number }[];
  /** Steps at which an alert episode fired or resolved. */
  alertSteps: readonly number[];
  /** The highest step a previous pass decided (label_thinning.through_step), -1 for none. */
  thinnedThrough: number;
}

/** One run's part of a pass: the steps after `afterStep` up to `throughStep` are decided. */
export interface RunThinning {
  runId: string;
  /** Exclusive lower bound: the previous pass's through_step (-1: from the start). */
  afterStep: number;
  throughStep: number;
  keepEvery: number;
  /** Steps whose label rows are deleted, ascending. */
  removeSteps: number[];
  /** Old steps of the range whose labels stay (every k-th, alert steps), ascending. */
  keptSteps: number[];
  /** Label rows at removeSteps (the planner's estimate; thinLabels records the exact count). */
  rows: number;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** The pass over the given runs at `now`; runs with nothing new to decide are left out. */
export function planThinning(
  runs: readonly RunLabelSteps[],
  policy: RetentionPolicy,
  now: Date,
): RunThinning[] {
  if (!retentionEnabled(policy)) return [];
  const cutoffMs = policy.fullDays > 0 ? now.getTime() - policy.fullDays * DAY_MS : Infinity;
  const out: RunThinning[] = [];
  for (const run of runs) {
    const base = [...new Set(run.checkpointSteps)].sort((a, b) => a - b);
    const ordinal = new Map(base.map((s, i) => [s, i]));
    const labels = [...run.labelSteps].sort((a, b) => a.step - b.step);
    const lastStep = Math.max(base.at(-1) ?? -1, labels.at(-1)?.step ?? -1);
    // the newest fullCheckpoints checkpoints: every step from the first of them on
    const newestFrom =
      policy.fullCheckpoints > 0 ? (base[base.length - policy.fullCheckpoints] ?? -Infinity) : Infinity;
    const alerts = new Set(run.alertSteps);
    const isOld = (l: { step: number; newestMs: number }): boolean =>
      l.step !== lastStep && l.step < newestFrom && l.newestMs < cutoffMs;
    const removeSteps: number[] = [];
    const keptSteps: number[] = [];
    let rows = 0;
    let throughStep = run.thinnedThrough;
    for (const l of labels) {
      if (l.step <= run.thinnedThrough) continue;
      if (!isOld(l)) break; // the range stays contiguous: nothing after a step that is not old
      throughStep = l.step;
      const k = ordinal.get(l.step);
      if (k === undefined || k % policy.keepEvery === 0 || alerts.has(l.step)) keptSteps.push(l.step);
      else {
        removeSteps.push(l.step);
        rows += l.rows;
      }
    }
    if (throughStep > run.thinnedThrough)
      out.push({
        runId: run.runId,
        afterStep: run.thinnedThrough,
        throughStep,
        keepEvery: policy.keepEvery,
        removeSteps,
        keptSteps,
        rows,
      });
  }
  return out;
}

/** A label_thinning row: one pass over one run. */
export interface ThinningRecord {
  runId: string;
  afterStep: number;
  throughStep: number;
  keepEvery: number;
  stepsRemoved: number;
  rowsRemoved: number;
  /** When the pass ran (ISO). */
  at: string;
}

function ordinalSuffix(n: number): string {
  const tens = n % 100;
  if (tens >= 11 && tens <= 13) return `${n}th`;
  return `${n}${{ 1: 'st', 2: 'nd', 3: 'rd' }[n % 10] ?? 'th'}`;
}

/**
 * What was thinned of one run, in words: "labels: every 10th checkpoint up to step 5000" (passes
 * with the same k over adjacent ranges read as one). '' when nothing was thinned.
 */
export function describeThinning(records: readonly ThinningRecord[]): string {
  const sorted = [...records].sort((a, b) => a.throughStep - b.throughStep);
  const spans: { keepEvery: number; from: number; through: number }[] = [];
  for (const r of sorted) {
    const last = spans.at(-1);
    if (last && last.keepEvery === r.keepEvery) last.through = r.throughStep;
    else spans.push({ keepEvery: r.keepEvery, from: r.afterStep, through: r.throughStep });
  }
  if (spans.length === 0) return '';
  return `labels: ${spans
    .map((s, i) =>
      i === 0
        ? `every ${ordinalSuffix(s.keepEvery)} checkpoint up to step ${s.through}`
        : `every ${ordinalSuffix(s.keepEvery)} from step ${s.from + 1} to ${s.through}`,
    )
    .join(', ')}`;
}

// ---- the store side ----

export interface ThinOptions {
  /** The clock of the pass (tests pass one; default: now). */
  now?: Date;
  /** Plan only: nothing is deleted or recorded. */
  dryRun?: boolean;
  /** Only this run. */
  run?: string;
  /** Cluster mode: delete from the local tables ON CLUSTER (default: the store target's cluster). */
  cluster?: string;
  /** How long to wait for the mutation to remove the rows (default 10 min). */
  timeoutMs?: number;
}

export interface ThinResult {
  plan: RunThinning[];
  /** The records written (none on a dry run or when no run had anything new to decide). */
  records: ThinningRecord[];
}

type Num = number | string;

async function tableExists(store: Store, table: string): Promise<boolean> {
  const rows = await store.query(
    `SELECT name FROM system.tables WHERE database = ${sqlString(store.database)} AND name = ${sqlString(table)}`,
  );
  return rows.length > 0;
}

/** The planner's input for every run of the store (or one), read with a handful of GROUP BYs. */
export async function readRunLabelSteps(store: Store, run?: string): Promise<RunLabelSteps[]> {
  const q = (t: string): string => qualified(store.database, t);
  const where = run === undefined ? '' : ` WHERE run_id = ${sqlString(run)}`;
  const thinned = new Map<string, number>();
  if (await tableExists(store, TABLES.labelThinning)) {
    for (const r of await store.query<{ run_id: string; through: Num }>(
      `SELECT run_id, max(through_step) AS through FROM ${q(TABLES.labelThinning)}${where} GROUP BY run_id`,
    ))
      thinned.set(r.run_id, Number(r.through));
  }
  // Without FINAL: a step's row count before merges is an estimate (the records count exactly),
  // and max(time) over every version is the newest row, as the age rule wants.
  const labelRows = await store.query<{ run_id: string; step: Num; rows: Num; newest: Num }>(
    `SELECT run_id, step, count() AS rows, max(toUInt64(time)) AS newest FROM ${q(TABLES.neuronLabels)}${where} GROUP BY run_id, step`,
  );
  const baseRows = await store.query<{ run_id: string; steps: Num[] }>(
    `SELECT run_id, groupUniqArray(step) AS steps FROM (SELECT run_id, step FROM ${q(TABLES.checkpoints)}${where} UNION ALL SELECT run_id, step FROM ${q(TABLES.layerMetrics)}${where}) GROUP BY run_id`,
  );
  const alertRows = await store.query<{ run_id: string; steps: Num[] }>(
    `SELECT run_id, groupUniqArray(step) AS steps FROM ${q(TABLES.alerts)}${where} GROUP BY run_id`,
  );
  const runs = new Map<string, RunLabelSteps & { labelSteps: RunLabelSteps['labelSteps'][number][] }>();
  const runOf = (id: string) => {
    let r = runs.get(id);
    if (!r) {
      r = {
        runId: id,
        checkpointSteps: [],
        labelSteps: [],
        alertSteps: [],
        thinnedThrough: thinned.get(id) ?? -1,
      };
      runs.set(id, r);
    }
    return r;
  };
  for (const r of labelRows)
    runOf(r.run_id).labelSteps.push({
      step: Number(r.step),
      rows: Number(r.rows),
      newestMs: Number(r.newest) * 1000,
    });
  for (const r of baseRows) if (runs.has(r.run_id)) runOf(r.run_id).checkpointSteps = r.steps.map(Number);
  for (const r of alertRows) if (runs.has(r.run_id)) runOf(r.run_id).alertSteps = r.steps.map(Number);
  return [...runs.values()].sort((a, b) => (a.runId < b.runId ? -1 : a.runId > b.runId ? 1 : 0));
}

/** The WHERE condition of one run's removed steps. */
function stepsCondition(t: RunThinning): string {
  return `(run_id = ${sqlString(t.runId)} AND step IN (${t.removeSteps.map((s) => sqlNumber(s)).join(', ')}))`;
}

/** Conditions joined with OR into statements of at most ~maxChars (18.16's max_query_size is 256 KiB). */
function chunkConditions(conditions: string[], maxChars = 64 * 1024): string[] {
  const out: string[] = [];
  let current: string[] = [];
  let size = 0;
  for (const c of conditions) {
    if (current.length > 0 && size + c.length > maxChars) {
      out.push(current.join(' OR '));
      current = [];
      size = 0;
    }
    current.push(c);
    size += c.length + 4;
  }
  if (current.length > 0) out.push(current.join(' OR '));
  return out;
}

/** The mutation statement; on a cluster, of the replicated local table on every node. */
export function thinningDeleteSql(database: string, condition: string, cluster?: string): string {
  const table = cluster
    ? `${qualified(database, `${TABLES.neuronLabels}${LOCAL_SUFFIX}`)} ON CLUSTER ${sqlIdentifier(cluster)}`
    : qualified(database, TABLES.neuronLabels);
  return `ALTER TABLE ${table} DELETE WHERE ${condition}`;
}

async function countWhere(store: Store, condition: string, final: boolean): Promise<number> {
  const [r] = await store.query<{ n: Num }>(
    `SELECT count() AS n FROM ${qualified(store.database, TABLES.neuronLabels)}${final ? ' FINAL' : ''} WHERE ${condition}`,
  );
  return Number(r.n);
}

/**
 * One retention pass: plan, delete, wait, record. Safe to rerun and to run from several processes
 * (a second pass finds nothing new; two identical passes delete the same rows and write the same
 * records, keyed by run and through_step). Never touches a run's newest rows (see the module note).
 */
export async function thinLabels(
  store: Store,
  policy: RetentionPolicy,
  opts: ThinOptions = {},
): Promise<ThinResult> {
  if (!retentionEnabled(policy)) return { plan: [], records: [] };
  if (!opts.dryRun && !(await tableExists(store, TABLES.labelThinning)))
    throw new CmError('NOT_FOUND', `${TABLES.labelThinning} is missing: the store is not migrated`, {
      context: { database: store.database },
      hint: 'store.migrate() (the recorder and cm serve migrate at start)',
    });
  const now = opts.now ?? new Date();
  const plan = planThinning(await readRunLabelSteps(store, opts.run), policy, now);
  if (opts.dryRun || plan.length === 0) return { plan, records: [] };
  const cluster = opts.cluster ?? (store.target.kind === 'server' ? store.target.cluster : undefined);
  const removing = plan.filter((t) => t.removeSteps.length > 0);
  const exact = new Map<string, number>();
  for (const t of removing) exact.set(t.runId, await countWhere(store, stepsCondition(t), true));
  const chunks = chunkConditions(removing.map(stepsCondition));
  for (const condition of chunks) await store.execute(thinningDeleteSql(store.database, condition, cluster));
  const deadline = Date.now() + (opts.timeoutMs ?? 10 * 60_000);
  for (const condition of chunks) {
    for (;;) {
      const left = await countWhere(store, condition, false);
      if (left === 0) break;
      if (Date.now() > deadline)
        throw new CmError(
          'TIMEOUT',
          `label thinning: ${left} rows still there after the delete (mutation pending)`,
          {
            context: { left, runs: removing.map((t) => t.runId) },
            hint: 'see system.mutations; the next pass plans the same range again and records it',
          },
        );
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const at = new Date();
  const records: ThinningRecord[] = plan.map((t) => ({
    runId: t.runId,
    afterStep: t.afterStep,
    throughStep: t.throughStep,
    keepEvery: t.keepEvery,
    stepsRemoved: t.removeSteps.length,
    rowsRemoved: exact.get(t.runId) ?? 0,
    at: at.toISOString(),
  }));
  const seconds = Math.floor(at.getTime() / 1000);
  const values = records
    .map(
      (r) =>
        `(${sqlString(r.runId)}, ${sqlNumber(r.afterStep)}, ${sqlNumber(r.throughStep)}, ${sqlNumber(r.keepEvery)}, ${sqlNumber(policy.fullDays, false)}, ${sqlNumber(policy.fullCheckpoints)}, ${sqlNumber(r.stepsRemoved)}, ${sqlNumber(r.rowsRemoved)}, ${seconds}, ${at.getTime()})`,
    )
    .join(', ');
  await store.execute(
    `INSERT INTO ${qualified(store.database, TABLES.labelThinning)} (run_id, after_step, through_step, keep_every, full_days, full_checkpoints, steps_removed, rows_removed, time, time_ms) VALUES ${values}`,
  );
  return { plan, records };
}

/** Every run's thinning records (FINAL), by run; empty when the store has no label_thinning table. */
export async function thinningRecords(store: Store, run?: string): Promise<Map<string, ThinningRecord[]>> {
  const out = new Map<string, ThinningRecord[]>();
  if (!(await tableExists(store, TABLES.labelThinning))) return out;
  const rows = await store.query<{
    run_id: string;
    after_step: Num;
    through_step: Num;
    keep_every: Num;
    steps_removed: Num;
    rows_removed: Num;
    time_ms: Num;
  }>(
    `SELECT run_id, after_step, through_step, keep_every, steps_removed, rows_removed, time_ms FROM ${qualified(store.database, TABLES.labelThinning)} FINAL${
      run === undefined ? '' : ` WHERE run_id = ${sqlString(run)}`
    } ORDER BY run_id, through_step`,
  );
  for (const r of rows) {
    const list = out.get(r.run_id) ?? [];
    list.push({
      runId: r.run_id,
      afterStep: Number(r.after_step),
      throughStep: Number(r.through_step),
      keepEvery: Number(r.keep_every),
      stepsRemoved: Number(r.steps_removed),
      rowsRemoved: Number(r.rows_removed),
      at: new Date(Number(r.time_ms)).toISOString(),
    });
    out.set(r.run_id, list);
  }
  return out;
}

export interface ThinningSchedule {
  /** Run a pass now (waits for one in progress first); errors are thrown to the caller. */
  runNow(): Promise<ThinResult>;
  stop(): Promise<void>;
}

/**
 * Thinning every `intervalMs` in a long-lived writer (the recorder, cm serve): the first pass
 * after `firstDelayMs`, passes never overlap, a failed pass is logged and the next one tries again.
 * With thinning off (retentionEnabled false) nothing is scheduled.
 */
export function scheduleLabelThinning(
  store: Store,
  policy: RetentionPolicy,
  opts: { intervalMs: number; firstDelayMs?: number; log?: Logger },
): ThinningSchedule {
  let running: Promise<ThinResult> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const pass = (): Promise<ThinResult> => {
    const p = (running ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => thinLabels(store, policy))
      .then((result) => {
        for (const r of result.records)
          opts.log?.info('labels thinned', {
            run: r.runId,
            throughStep: r.throughStep,
            keepEvery: r.keepEvery,
            steps: r.stepsRemoved,
            rows: r.rowsRemoved,
          });
        return result;
      });
    running = p;
    return p;
  };
  const tick = (delay: number): void => {
    if (stopped || !retentionEnabled(policy)) return;
    timer = setTimeout(() => {
      pass()
        .catch((e: unknown) =>
          opts.log?.warn('label thinning failed; retried next pass', { error: errorMessage(e) }),
        )
        .finally(() => tick(opts.intervalMs));
    }, delay);
    timer.unref();
  };
  tick(opts.firstDelayMs ?? Math.min(opts.intervalMs, 60_000));
  return {
    runNow: pass,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running?.catch(() => undefined);
    },
  };
}
