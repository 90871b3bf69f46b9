import { TABLES } from '@cm/contracts';

/**
 * The SQL of every panel, variable, annotation and alert rule, in one place. Table names are
 * unqualified: the data source's default database is the store's (CM_CLICKHOUSE_DATABASE).
 *
 * Rules the SQL keeps, so it runs on clickhouse-server 18.16, current ClickHouse and chDB alike:
 * no query parameters (Grafana variables are interpolated as literals), no window functions (per
 * neuron sequences are built with groupArray + arraySort), no DateTime64 (only the second-precision
 * macros), no Map (Nested columns with ARRAY JOIN). Every read of a ReplacingMergeTree uses FINAL
 * so a redelivered record never counts twice.
 */
const T = TABLES;

// ---- variables ----

export const RUNS_VARIABLE_SQL = `SELECT run_id FROM ${T.runs} FINAL ORDER BY started_at DESC, run_id`;

export const LAYERS_VARIABLE_SQL = `SELECT DISTINCT layer FROM ${T.layerMetrics} WHERE run_id = '\${run}' ORDER BY layer`;

export const STEPS_VARIABLE_SQL = `SELECT DISTINCT step FROM ${T.neuronLabels} WHERE run_id = '\${run}' AND layer = '\${layer}' ORDER BY step DESC`;

export const COMPARISON_LAYERS_VARIABLE_SQL = `SELECT DISTINCT layer FROM ${T.layerMetrics} WHERE run_id IN ('\${run_a}', '\${run_b}') ORDER BY layer`;

// ---- run overview ----

/** Every run with its health; start/end in ms for the data link that opens a run's time range. */
export const RUNS_TABLE_SQL = `
SELECT run_id, model, paradigm, status, started_at, last_step, checkpoints, open_alerts,
  toUInt64(started_at) * 1000 AS from_ms,
  (toUInt64(if(status = 'running', now(), ended_at)) + 60) * 1000 AS to_ms
FROM (
  SELECT run_id, model, paradigm, status, started_at, ended_at, last_step, checkpoints
  FROM (SELECT run_id, model, paradigm, status, started_at, ended_at FROM ${T.runs} FINAL) AS r
  ANY LEFT JOIN (SELECT run_id, max(step) AS last_step, count() AS checkpoints FROM ${T.checkpoints} FINAL GROUP BY run_id) AS c USING run_id
) AS rc
ANY LEFT JOIN (
  SELECT run_id, toUInt64(countIf(resolved = 0)) AS open_alerts
  FROM (SELECT run_id, alert_id, max(state = 'resolved') AS resolved FROM ${T.alerts} FINAL GROUP BY run_id, alert_id)
  GROUP BY run_id
) AS a USING run_id
ORDER BY started_at DESC, run_id`;

export const TRAINING_METRICS_SQL = `
SELECT time, metrics.name AS metric, metrics.value AS value
FROM ${T.checkpoints} FINAL ARRAY JOIN metrics
WHERE run_id = '\${run}' AND metrics.name IN ('loss', 'accuracy') AND $__timeFilter(time)
ORDER BY time`;

export const INTERPRETABLE_SHARE_SQL = `
SELECT time, layer, interpretable_fraction AS interpretable
FROM ${T.layerMetrics} FINAL
WHERE run_id = '\${run}' AND $__timeFilter(time)
ORDER BY time`;

export const DIVERSITY_SQL = `
SELECT time, layer, distinct_concept_share AS diversity
FROM ${T.layerMetrics} FINAL
WHERE run_id = '\${run}' AND $__timeFilter(time)
ORDER BY time`;

export const LAYER_SUMMARY_SQL = `
SELECT layer, max(step) AS last_step,
  argMax(interpretable_fraction, step) AS interpretable,
  argMax(distinct_concept_share, step) AS diversity,
  argMax(label_entropy, step) AS entropy,
  argMax(dead_fraction, step) AS dead,
  argMax(top_concepts.concept[1], step) AS top_concept
FROM ${T.layerMetrics} FINAL
WHERE run_id = '\${run}'
GROUP BY layer
ORDER BY layer`;

/** One row per alert episode of the run: when it fired, when (if) it resolved, what it saw. */
export const ALERT_EPISODES_SQL = `
SELECT alert_id, layer, rule, severity,
  minIf(step, state = 'firing') AS fired_step,
  if(max(state = 'resolved') = 1, toString(minIf(step, state = 'resolved')), 'open') AS resolved_step,
  anyIf(value, state = 'firing') AS value,
  anyIf(threshold, state = 'firing') AS threshold,
  anyIf(message, state = 'firing') AS message
FROM ${T.alerts} FINAL
WHERE run_id = '\${run}'
GROUP BY alert_id, layer, rule, severity
ORDER BY fired_step, alert_id`;

/** Alerts drawn on the time-series panels (the ClickHouse plugin maps time/text/tags). */
export const ALERT_ANNOTATIONS_SQL = `
SELECT time, concat(upper(state), ' ', rule, ' @ ', layer, ' step ', toString(step), ': ', message) AS text,
  [rule, layer, state, severity] AS tags
FROM ${T.alerts} FINAL
WHERE run_id = '\${run}' AND $__timeFilter(time)
ORDER BY time`;

// ---- layer view ----

/** Each neuron's top-1 concept per checkpoint, for the first $neurons neurons of the layer. */
export const NEURON_CONCEPTS_SQL = `
SELECT time, concat('n', toString(neuron)) AS neuron_id, concept
FROM ${T.neuronLabels} FINAL
WHERE run_id = '\${run}' AND layer = '\${layer}' AND neuron < \${neurons} AND $__timeFilter(time)
ORDER BY neuron, time`;

/**
 * Concepts that neurons switch into most often: each neuron's concept sequence ordered by step,
 * pairs of consecutive labels that differ, counted by the concept switched to (and from).
 */
export const SWITCHING_CONCEPTS_SQL = `
SELECT concept, sum(into) AS switches_into, sum(out_of) AS switches_out_of
FROM (
  SELECT arrayJoin(arrayFilter((cur, prev) -> cur != prev, arrayPopFront(seq), arrayPopBack(seq))) AS concept, 1 AS into, 0 AS out_of
  FROM (
    SELECT neuron, arrayMap(p -> p.2, arraySort(groupArray((step, concept)))) AS seq
    FROM ${T.neuronLabels} FINAL
    WHERE run_id = '\${run}' AND layer = '\${layer}' AND $__timeFilter(time)
    GROUP BY neuron
  )
  UNION ALL
  SELECT arrayJoin(arrayFilter((prev, cur) -> cur != prev, arrayPopBack(seq), arrayPopFront(seq))) AS concept, 0 AS into, 1 AS out_of
  FROM (
    SELECT neuron, arrayMap(p -> p.2, arraySort(groupArray((step, concept)))) AS seq
    FROM ${T.neuronLabels} FINAL
    WHERE run_id = '\${run}' AND layer = '\${layer}' AND $__timeFilter(time)
    GROUP BY neuron
  )
)
GROUP BY concept
ORDER BY switches_into + switches_out_of DESC, concept
LIMIT 20`;

/** Neurons whose label changed most often, with their concept sequence. */
export const SWITCHING_NEURONS_SQL = `
SELECT neuron, length(arrayFilter((cur, prev) -> cur != prev, arrayPopFront(seq), arrayPopBack(seq))) AS switches,
  arrayStringConcat(arrayDistinct(seq), ' > ') AS concepts
FROM (
  SELECT neuron, arrayMap(p -> p.2, arraySort(groupArray((step, concept)))) AS seq
  FROM ${T.neuronLabels} FINAL
  WHERE run_id = '\${run}' AND layer = '\${layer}' AND $__timeFilter(time)
  GROUP BY neuron
)
ORDER BY switches DESC, neuron
LIMIT 20`;

/** Share of the layer's interpretable neurons per concept category, per checkpoint (stacked). */
export const CATEGORY_SHARES_SQL = `
SELECT time, category_shares.category AS category, category_shares.share AS share
FROM ${T.layerMetrics} FINAL ARRAY JOIN category_shares
WHERE run_id = '\${run}' AND layer = '\${layer}' AND $__timeFilter(time)
ORDER BY time`;

export const LAYER_HEALTH_SQL = `
SELECT time, metric, value
FROM (
  SELECT time, ['switch fraction', 'dead fraction', 'label entropy', 'mean top score'] AS metrics,
    [switch_fraction, dead_fraction, label_entropy, mean_top_score] AS values
  FROM ${T.layerMetrics} FINAL
  WHERE run_id = '\${run}' AND layer = '\${layer}' AND $__timeFilter(time)
)
ARRAY JOIN metrics AS metric, values AS value
ORDER BY time`;

// ---- concept map ----

export const CONCEPT_MAP_SQL = `
SELECT x, y, concept, category, concat('n', toString(neuron)) AS neuron_id, score
FROM ${T.neuronLabels} FINAL
WHERE run_id = '\${run}' AND layer = '\${layer}' AND step = \${step}
ORDER BY neuron`;

/** Paths up to the chosen step of the $trail neurons that moved most (bounding box of their path). */
export const TRAJECTORIES_SQL = `
SELECT concat('n', toString(neuron)) AS neuron_id, x, y
FROM ${T.neuronLabels} FINAL
WHERE run_id = '\${run}' AND layer = '\${layer}' AND step <= \${step}
  AND neuron IN (
    SELECT neuron FROM (
      SELECT neuron, (max(x) - min(x)) + (max(y) - min(y)) AS moved
      FROM ${T.neuronLabels} FINAL
      WHERE run_id = '\${run}' AND layer = '\${layer}' AND step <= \${step}
      GROUP BY neuron
      ORDER BY moved DESC, neuron
      LIMIT \${trail}
    )
  )
ORDER BY neuron, step`;

// ---- run comparison ----

/** $metric is a custom variable whose values are layer_metrics column names (not free text). */
export const COMPARE_LAYER_METRIC_SQL = `
SELECT step, run_id, \${metric} AS value
FROM ${T.layerMetrics} FINAL
WHERE run_id IN ('\${run_a}', '\${run_b}') AND layer = '\${layer}'
ORDER BY run_id, step`;

export const COMPARE_LOSS_SQL = `
SELECT step, run_id, metrics.value AS loss
FROM ${T.checkpoints} FINAL ARRAY JOIN metrics
WHERE run_id IN ('\${run_a}', '\${run_b}') AND metrics.name = 'loss'
ORDER BY run_id, step`;

export const COMPARE_FINAL_SQL = `
SELECT layer, run_id, max(step) AS last_step,
  argMax(interpretable_fraction, step) AS interpretable,
  argMax(distinct_concept_share, step) AS diversity,
  argMax(label_entropy, step) AS entropy,
  argMax(dead_fraction, step) AS dead
FROM ${T.layerMetrics} FINAL
WHERE run_id IN ('\${run_a}', '\${run_b}')
GROUP BY layer, run_id
ORDER BY layer, run_id`;

// ---- Grafana alert rules (run every minute over the last window) ----

/** 1 per alert episode that fired in the window and is not resolved; labels: run, layer, rule. */
export const OPEN_EPISODES_ALERT_SQL = `
SELECT run_id, layer, rule, toFloat64(1) AS open_episode
FROM (
  SELECT run_id, layer, rule, alert_id, max(state = 'resolved') AS resolved
  FROM ${T.alerts} FINAL
  WHERE alert_id IN (SELECT alert_id FROM ${T.alerts} WHERE state = 'firing' AND $__timeFilter(time))
  GROUP BY run_id, layer, rule, alert_id
)
WHERE resolved = 0`;

/** Latest distinct-concept share per (run, layer) written in the window. */
export const LATEST_DIVERSITY_ALERT_SQL = `
SELECT run_id, layer, argMax(distinct_concept_share, step) AS diversity
FROM ${T.layerMetrics} FINAL
WHERE $__timeFilter(time)
GROUP BY run_id, layer`;

/** Latest share of the layer held by its top concept per (run, layer) written in the window. */
export const LATEST_DOMINANCE_ALERT_SQL = `
SELECT run_id, layer, argMax(if(neurons > 0, top_concepts.count[1] / neurons, 0), step) AS top_concept_share
FROM ${T.layerMetrics} FINAL
WHERE $__timeFilter(time)
GROUP BY run_id, layer`;
