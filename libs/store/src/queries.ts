import { TABLES } from '@cm/contracts';
import { qualified } from './schema';
import { sqlNumber, sqlString } from './sql';

/**
 * The queries we ship (CLI, dashboards, tests). Each reads with FINAL, so every neuron, checkpoint
 * and alert comes back exactly once even before ClickHouse has merged redelivered rows. The SQL
 * sticks to what 18.16 understands: one JOIN per SELECT (nested subqueries for more),
 * explicit ANY strictness, no window functions, no query parameters (literals via sqlString).
 */

/** Runs with their last checkpoint and health (alert episodes firing now). */
export function runsOverviewSql(database: string): string {
  const q = (t: string): string => qualified(database, t);
  return `SELECT run_id, model, paradigm, bundle_id, status, started_at, checkpoints, last_step, firing_alerts, firing_rules,
  if(firing_alerts > 0, 'alerting', 'ok') AS health
FROM (
  SELECT run_id, model, paradigm, bundle_id, status, started_at, checkpoints, last_step
  FROM (SELECT run_id, model, paradigm, bundle_id, status, started_at FROM ${q(TABLES.runs)} FINAL) AS r
  ANY LEFT JOIN (SELECT run_id, count() AS checkpoints, max(step) AS last_step FROM ${q(TABLES.checkpoints)} FINAL GROUP BY run_id) AS c
  USING run_id
) AS rc
ANY LEFT JOIN (
  SELECT run_id, count() AS firing_alerts, arrayStringConcat(groupUniqArray(rule), ',') AS firing_rules
  FROM (
    SELECT run_id, alert_id, any(rule) AS rule, max(state = 'resolved') AS resolved
    FROM ${q(TABLES.alerts)} FINAL GROUP BY run_id, alert_id
  ) AS episodes
  WHERE resolved = 0 GROUP BY run_id
) AS a USING run_id
ORDER BY started_at DESC, run_id`;
}

export interface LabelsFilter {
  runId: string;
  layer?: string;
  step?: number;
}

/** Neuron labels of a run (optionally one layer / step), one row per neuron and step. */
export function neuronLabelsSql(database: string, filter: LabelsFilter): string {
  const where = [`run_id = ${sqlString(filter.runId)}`];
  if (filter.layer !== undefined) where.push(`layer = ${sqlString(filter.layer)}`);
  if (filter.step !== undefined) where.push(`step = ${sqlNumber(filter.step)}`);
  return `SELECT run_id, layer, step, neuron, concept, category, score, interpretable, dead, top_concepts, top_scores, top_images, x, y, time
FROM ${qualified(database, TABLES.neuronLabels)} FINAL
WHERE ${where.join(' AND ')}
ORDER BY layer, step, neuron`;
}

/** Per-layer metrics of a run over steps (the learning curves of interpretability and diversity). */
export function layerMetricsSql(database: string, runId: string): string {
  return `SELECT run_id, layer, step, neurons, learned_fraction, learned_chance, interpretable_fraction, mean_top_score, distinct_concept_share, label_entropy,
  embedding_spread, dead_fraction, switches, switch_fraction, threshold,
  category_shares.category AS categories, category_shares.share AS shares,
  top_concepts.concept AS top_concept_names, top_concepts.count AS top_concept_counts, time
FROM ${qualified(database, TABLES.layerMetrics)} FINAL
WHERE run_id = ${sqlString(runId)}
ORDER BY layer, step`;
}

/** Training metrics of a run per checkpoint, as name/value arrays. */
export function checkpointsSql(database: string, runId: string): string {
  return `SELECT run_id, step, metrics.name AS metric_names, metrics.value AS metric_values, time
FROM ${qualified(database, TABLES.checkpoints)} FINAL
WHERE run_id = ${sqlString(runId)}
ORDER BY step`;
}

/** Alert rows of a run (a firing and, later, its resolution per episode). */
export function alertsSql(database: string, runId: string): string {
  return `SELECT alert_id, run_id, layer, step, rule, state, severity, value, threshold, message, time
FROM ${qualified(database, TABLES.alerts)} FINAL
WHERE run_id = ${sqlString(runId)}
ORDER BY time, alert_id, state`;
}

/**
 * Whether the store holds a run record under this id (any status): a used run id, so a new run
 * under it is refused unless it resumes (ConceptEngineOptions.runExists, all-in-one mode).
 */
export async function runIsStored(
  store: { query<T>(sql: string): Promise<T[]> },
  runId: string,
): Promise<boolean> {
  const rows = await store.query<{ n: number | string }>(
    `SELECT count() AS n FROM ${TABLES.runs} WHERE run_id = ${sqlString(runId)}`,
  );
  return Number(rows[0]?.n ?? 0) > 0;
}
