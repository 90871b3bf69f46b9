import { TABLES } from '@cm/contracts';
import { invalidArgument } from '@cm/core';
import {
  andFilter,
  int,
  intList,
  text,
  textList,
  type IntArg,
  type SqlFragment,
  type TextArg,
} from './literal';

/**
 * Every question asked of the store, in one place: the web view (`cm ui`), `cm report` and the
 * Grafana dashboards (libs/dashboards/src/sql.ts builds its panels' SQL from these with template
 * variables as arguments), so a question is answered the same way everywhere. Table names are
 * unqualified: the store's (or the data source's) default database is the store's.
 *
 * Rules the SQL keeps, so it runs on clickhouse-server 18.16, current ClickHouse and chDB alike:
 * no query parameters (values are escaped literals, see literal.ts), no window functions (per
 * neuron sequences are built with groupArray + arraySort), no DateTime64 (only second-precision
 * time), no Map (Nested columns with ARRAY JOIN), one JOIN per SELECT with explicit ANY strictness.
 * Every read of a ReplacingMergeTree uses FINAL so a redelivered record never counts twice (the
 * switching questions instead count distinct keys of the few rows they read, see there).
 * PREWHERE filters only on sorting-key columns (step, neuron of neuron_labels): every version of a
 * row shares its key, so filtering before FINAL's merge drops whole groups and keeps the answer,
 * while reading a fraction of a wide layer (a neuron's history: 40 ms instead of 460 ms on 2M rows).
 */
const T = TABLES;

/** Which column is a series' x axis: wall-clock `time` (Grafana's time panels) or the training `step`. */
export type Axis = 'time' | 'step';

export interface RunArgs {
  run: TextArg;
  /** Extra condition on `time` (Grafana's `$__timeFilter(time)`); the web view reads whole runs. */
  timeFilter?: SqlFragment;
}
export interface LayerArgs extends RunArgs {
  layer: TextArg;
}
export interface PairArgs {
  runA: TextArg;
  runB: TextArg;
}

/** The layer_metrics columns a comparison may plot (a closed list: the name goes into SQL as written). */
export const LAYER_METRIC_COLUMNS = [
  'interpretable_fraction',
  'distinct_concept_share',
  'label_entropy',
  'embedding_spread',
  'dead_fraction',
  'switch_fraction',
  'mean_top_score',
] as const;
export type LayerMetricColumn = (typeof LAYER_METRIC_COLUMNS)[number];

function metricColumn(metric: LayerMetricColumn | SqlFragment): string {
  if (typeof metric !== 'string') return metric.sql;
  if (!(LAYER_METRIC_COLUMNS as readonly string[]).includes(metric))
    throw invalidArgument(`not a layer metric: ${JSON.stringify(metric)}`, {
      metric,
      known: [...LAYER_METRIC_COLUMNS],
    });
  return metric;
}

// ---- runs ----

export const runIdsSql = (): string => `SELECT run_id FROM ${T.runs} FINAL ORDER BY started_at DESC, run_id`;

/** Every run with its health; start/end in ms for Grafana's data link that opens a run's time range. */
export const runsTableSql = (): string => `
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

/**
 * Every run (or one) with paradigm, model, bundle, status, last step, health and the rules of its
 * firing (unresolved) alert episodes. Health: 'alerting' while an episode is open, else 'ok'.
 */
export const runsOverviewSql = (filter: { run?: TextArg } = {}): string => `
SELECT run_id, model, paradigm, bundle_id, status, started_at, ended_at, checkpoints, last_step,
  firing_alerts, firing_rules, if(firing_alerts > 0, 'alerting', 'ok') AS health
FROM (
  SELECT run_id, model, paradigm, bundle_id, status, started_at, ended_at, checkpoints, last_step
  FROM (SELECT run_id, model, paradigm, bundle_id, status, started_at, ended_at FROM ${T.runs} FINAL${
    filter.run !== undefined ? ` WHERE run_id = ${text(filter.run)}` : ''
  }) AS r
  ANY LEFT JOIN (SELECT run_id, count() AS checkpoints, max(step) AS last_step FROM ${T.checkpoints} FINAL GROUP BY run_id) AS c
  USING run_id
) AS rc
ANY LEFT JOIN (
  SELECT run_id, count() AS firing_alerts, arrayStringConcat(arraySort(groupUniqArray(rule)), ',') AS firing_rules
  FROM (
    SELECT run_id, alert_id, any(rule) AS rule, max(state = 'resolved') AS resolved
    FROM ${T.alerts} FINAL GROUP BY run_id, alert_id
  ) AS episodes
  WHERE resolved = 0 GROUP BY run_id
) AS a USING run_id
ORDER BY started_at DESC, run_id`;

/** The layers of a run as declared at its start (name, width), in declaration order. */
export const runLayersSql = (a: { run: TextArg }): string => `
SELECT name, width
FROM ${T.runs} FINAL ARRAY JOIN layers.name AS name, layers.width AS width
WHERE run_id = ${text(a.run)}`;

export const layersSql = (a: { run: TextArg }): string =>
  `SELECT DISTINCT layer FROM ${T.layerMetrics} WHERE run_id = ${text(a.run)} ORDER BY layer`;

export const comparisonLayersSql = (a: PairArgs): string =>
  `SELECT DISTINCT layer FROM ${T.layerMetrics} WHERE run_id IN (${text(a.runA)}, ${text(a.runB)}) ORDER BY layer`;

/** Steps with neuron labels for a layer, newest first. */
export const labelStepsSql = (a: { run: TextArg; layer: TextArg }): string =>
  `SELECT DISTINCT step FROM ${T.neuronLabels} WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)} ORDER BY step DESC`;

/** Steps with layer metrics for a layer, oldest first (cheap: one row per checkpoint). */
export const layerStepsSql = (a: { run: TextArg; layer: TextArg }): string =>
  `SELECT step FROM ${T.layerMetrics} FINAL WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)} ORDER BY step`;

// ---- run overview ----

/** Loss and accuracy per checkpoint: (time|step, metric, value). */
export const trainingMetricsSql = (a: RunArgs & { by?: Axis }): string => {
  const x = a.by ?? 'time';
  return `
SELECT ${x}, metrics.name AS metric, metrics.value AS value
FROM ${T.checkpoints} FINAL ARRAY JOIN metrics
WHERE run_id = ${text(a.run)} AND metrics.name IN ('loss', 'accuracy')${andFilter(a.timeFilter)}
ORDER BY ${x}`;
};

/**
 * The learned-concept share per layer (beyond random init, docs/dissect.md): rows only where the
 * run had a random-init baseline (NULL before it is not 0).
 */
export const learnedShareSql = (a: RunArgs & { by?: Axis }): string => {
  const x = a.by ?? 'time';
  return `
SELECT ${x}, layer, learned_fraction AS learned
FROM ${T.layerMetrics} FINAL
WHERE run_id = ${text(a.run)} AND isNotNull(learned_fraction)${andFilter(a.timeFilter)}
ORDER BY ${x}`;
};

/** The association share per layer: interpretable under the shuffle null (random filters pass it too). */
export const interpretableShareSql = (a: RunArgs & { by?: Axis }): string => {
  const x = a.by ?? 'time';
  return `
SELECT ${x}, layer, interpretable_fraction AS interpretable
FROM ${T.layerMetrics} FINAL
WHERE run_id = ${text(a.run)}${andFilter(a.timeFilter)}
ORDER BY ${x}`;
};

export const diversitySql = (a: RunArgs & { by?: Axis }): string => {
  const x = a.by ?? 'time';
  return `
SELECT ${x}, layer, distinct_concept_share AS diversity
FROM ${T.layerMetrics} FINAL
WHERE run_id = ${text(a.run)}${andFilter(a.timeFilter)}
ORDER BY ${x}`;
};

/**
 * Every layer metric of a run (or of one layer) per checkpoint, by step: the run overview's and the
 * report's curves (interpretable share, distinct share, entropy, spread, dead share, switch rate).
 */
export const layerCurvesSql = (a: { run: TextArg; layer?: TextArg }): string => `
SELECT step, layer, neurons, learned_fraction, interpretable_fraction, distinct_concept_share, label_entropy,
  embedding_spread, dead_fraction, switch_fraction, mean_top_score
FROM ${T.layerMetrics} FINAL
WHERE run_id = ${text(a.run)}${a.layer !== undefined ? ` AND layer = ${text(a.layer)}` : ''}
ORDER BY layer, step`;

export const layerSummarySql = (a: { run: TextArg }): string => `
SELECT layer, max(step) AS last_step,
  argMax(learned_fraction, step) AS learned,
  argMax(interpretable_fraction, step) AS interpretable,
  argMax(distinct_concept_share, step) AS diversity,
  argMax(label_entropy, step) AS entropy,
  argMax(dead_fraction, step) AS dead,
  argMax(top_concepts.concept[1], step) AS top_concept
FROM ${T.layerMetrics} FINAL
WHERE run_id = ${text(a.run)}
GROUP BY layer
ORDER BY layer`;

/** One row per alert episode of the run: when it fired, when (if) it resolved, what it saw. */
export const alertEpisodesSql = (a: { run: TextArg }): string => `
SELECT alert_id, layer, rule, severity,
  minIf(step, state = 'firing') AS fired_step,
  if(max(state = 'resolved') = 1, toString(minIf(step, state = 'resolved')), 'open') AS resolved_step,
  anyIf(value, state = 'firing') AS value,
  anyIf(threshold, state = 'firing') AS threshold,
  anyIf(message, state = 'firing') AS message
FROM ${T.alerts} FINAL
WHERE run_id = ${text(a.run)}
GROUP BY alert_id, layer, rule, severity
ORDER BY fired_step, alert_id`;

/** Alerts drawn on Grafana's time-series panels (the ClickHouse plugin maps time/text/tags). */
export const alertAnnotationsSql = (a: RunArgs): string => `
SELECT time, concat(upper(state), ' ', rule, ' @ ', layer, ' step ', toString(step), ': ', message) AS text,
  [rule, layer, state, severity] AS tags
FROM ${T.alerts} FINAL
WHERE run_id = ${text(a.run)}${andFilter(a.timeFilter)}
ORDER BY time`;

// ---- label retention ----

/**
 * A pass in words: "steps 0-5000: labels of every 10th checkpoint kept, and of alert steps (450
 * steps' labels removed, 115200 rows); layer metrics of every step kept".
 */
const THINNING_TEXT = `concat('steps ', toString(after_step + 1), '-', toString(through_step), ': labels of every ',
    toString(keep_every), multiIf(keep_every % 100 IN (11, 12, 13), 'th', keep_every % 10 = 1, 'st', keep_every % 10 = 2, 'nd', keep_every % 10 = 3, 'rd', 'th'),
    ' checkpoint kept, and of alert steps (', toString(steps_removed), ' steps'' labels removed, ',
    toString(rows_removed), ' rows); layer metrics of every step kept')`;

/**
 * What label retention thinned of a run (label_thinning, migration 5; libs/store/src/retention.ts):
 * one row per pass, the steps it decided (from_step through through_step), the k whose every k-th
 * checkpoint (by ordinal among the run's checkpoints, the first is 0) kept its labels, and what went.
 * Steps after the last through_step are not thinned. Empty for a run never thinned.
 */
export const labelThinningSql = (a: { run: TextArg }): string => `
SELECT toInt64(after_step + 1) AS from_step, through_step, keep_every, steps_removed, rows_removed,
  time AS thinned_at, ${THINNING_TEXT} AS note
FROM ${T.labelThinning} FINAL
WHERE run_id = ${text(a.run)}
ORDER BY through_step`;

/**
 * The thinned ranges as Grafana annotation regions over training time: from the time of the first
 * checkpoint a pass decided to its last (time, timeEnd), the pass in words (text). `timeFilter`
 * applies to checkpoint times (`time`): a range that overlaps the window is drawn clipped to it.
 */
export const labelThinningAnnotationsSql = (a: RunArgs): string => `
SELECT first_time AS time, last_time AS timeEnd, concat('Labels thinned by retention, ', note) AS text,
  ['label retention', concat('every ', toString(keep_every))] AS tags
FROM (
  SELECT through_step, any(note) AS note, any(keep_every) AS keep_every, min(time) AS first_time, max(time) AS last_time
  FROM (
    SELECT run_id, after_step, through_step, keep_every, ${THINNING_TEXT} AS note
    FROM ${T.labelThinning} FINAL
    WHERE run_id = ${text(a.run)}
  ) AS t
  ALL INNER JOIN (
    SELECT run_id, step, time FROM ${T.checkpoints} FINAL WHERE run_id = ${text(a.run)}${andFilter(a.timeFilter)}
  ) AS c USING run_id
  WHERE step > after_step AND step <= through_step
  GROUP BY through_step
)
ORDER BY time`;

// ---- layer view ----

/** Each neuron's top-1 concept per checkpoint, for the first `neurons` neurons of the layer. */
export const neuronConceptsSql = (a: LayerArgs & { neurons: IntArg }): string => `
SELECT time, concat('n', toString(neuron)) AS neuron_id, concept
FROM ${T.neuronLabels} FINAL
WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)} AND neuron < ${int(a.neurons)}${andFilter(a.timeFilter)}
ORDER BY neuron, time`;

/**
 * The layer's heat strip: per neuron, its (step, concept, category) at the given steps, steps
 * ascending. One row per neuron (arrays), so 512 neurons x 200 steps is 512 rows, not 100k.
 */
export const heatStripSql = (a: { run: TextArg; layer: TextArg; steps: readonly number[] }): string => {
  if (a.steps.length === 0) throw invalidArgument('heat strip needs at least one step', {});
  return `
SELECT neuron, arrayMap(p -> p.1, cells) AS steps, arrayMap(p -> p.2, cells) AS concepts,
  arrayMap(p -> p.3, cells) AS categories
FROM (
  SELECT neuron, arraySort(groupArray((step, toString(concept), toString(category)))) AS cells
  FROM ${T.neuronLabels} FINAL
  PREWHERE step IN (${intList(a.steps)})
  WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)}
  GROUP BY neuron
)
ORDER BY neuron`;
};

/**
 * Label switches (the layer view's "switching" questions). Since migration 6 every neuron_labels row
 * carries `previous_concept`, the neuron's concept at the run's previous checkpoint of the layer
 * ('' at its first), recorded when the checkpoint is dissected (the engine's switch). A switch is a
 * row with `previous_concept` not '' and unlike `concept`; the questions read only those rows, with
 * no FINAL: a redelivered or recomputed row has the key (neuron, step) of the row it repeats, and
 * switches are counted as distinct keys (uniqExact), concept paths made distinct (arrayDistinct), so
 * no row counts twice. Two semantics differ from rebuilding each neuron's sequence from the stored
 * rows (the *FromSequencesSql forms, kept for layers recorded before migration 6):
 *  - after retention thinning (libs/store/src/retention.ts) the switches recorded at the kept
 *    checkpoints still count, each against the checkpoint just before it at record time (thinned or
 *    not); switches at thinned checkpoints went with their rows. A sequence of the kept rows instead
 *    compares kept checkpoints with each other (A > B > A thinned to A > A is no switch);
 *  - with a time filter (Grafana), a switch at the window's first checkpoint counts (its previous
 *    checkpoint may be before the window), as the layer_metrics switch fraction does.
 * Rows recorded before migration 6 read '' and record no switch: switchingLayerModeSql tells, per
 * layer, which form answers it (the web view asks, then runs that form; Grafana asks
 * switchesRecordedSql into a hidden variable and runs the *EitherSql statements with it).
 */
const SWITCH_ROW = `previous_concept != '' AND previous_concept != concept`;
/** 1 when at most one step of the rows read has no previous concept (see switchingLayerModeSql). */
const RECORDED = `toUInt8(uniqExactIf(step, previous_concept = '') <= 1)`;

/**
 * Whether the layer's switches were recorded (`recorded` 1) or must be rebuilt from its sequences
 * (0): a layer recorded since migration 6 has rows without a previous concept at one step at most
 * (its first; none once thinned away), one recorded before it at every step. `proven` 1 once a row
 * with a previous concept is there (the writer records them: the answer will not change, a cache
 * may keep it). Neuron 0's rows only (PREWHERE on the sorting key: a fraction of the layer). Needs
 * the column (hasColumnSql).
 */
export const switchingLayerModeSql = (a: { run: TextArg; layer: TextArg }): string => `
SELECT ${RECORDED} AS recorded,
  toUInt8(countIf(previous_concept != '') > 0) AS proven
FROM ${T.neuronLabels}
PREWHERE neuron = 0
WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)}`;

/**
 * The layer's `recorded` of switchingLayerModeSql alone: Grafana's hidden `$switches_recorded`
 * variable, which the switching panels pass to the *EitherSql questions (Grafana asks it again
 * whenever the run or the layer changes).
 */
export const switchesRecordedSql = (a: { run: TextArg; layer: TextArg }): string =>
  `SELECT ${RECORDED} AS recorded FROM ${T.neuronLabels} PREWHERE neuron = 0 WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)}`;

/**
 * A branch of an *EitherSql question: it reads rows only when `recorded` (switchesRecordedSql's
 * answer, a literal by the time the query runs) is `is`. A literal `0 = 1` lets the server select
 * no granule (12-27 ms on a 2.56M-row layer on 18.16); the same condition on a scalar subquery, or
 * a run_id IN (subquery) set, made 18.16 read the whole layer (1.5 s instead of 0.3 s).
 */
export interface SwitchBranch {
  recorded: IntArg;
  is: 0 | 1;
}
const inBranch = (b: SwitchBranch | undefined): string => (b ? ` AND ${int(b.recorded)} = ${b.is}` : '');

/**
 * Concepts that neurons switch into most often (and out of): each recorded switch (see above) is one
 * switch into its concept and one out of its previous concept, counted once per (neuron, step).
 */
export const switchingConceptsSql = (a: LayerArgs & { branch?: SwitchBranch }): string => `
SELECT switch_concept AS concept, uniqExactIf(neuron, step, direction = 1) AS switches_into,
  uniqExactIf(neuron, step, direction = 0) AS switches_out_of
FROM (
  SELECT neuron, step,
    arrayJoin([(toString(concept), toUInt8(1)), (toString(previous_concept), toUInt8(0))]) AS switch,
    switch.1 AS switch_concept, switch.2 AS direction
  FROM ${T.neuronLabels}
  PREWHERE ${SWITCH_ROW}
  WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)}${andFilter(a.timeFilter)}${inBranch(a.branch)}
)
GROUP BY concept
ORDER BY switches_into + switches_out_of DESC, concept
LIMIT 20`;

/**
 * Neurons whose label changed most often, with their concept path: the first concept, then the
 * concept of each recorded switch by step, distinct (every neuron is listed, switching or not).
 */
export const switchingNeuronsSql = (a: LayerArgs & { limit?: IntArg; branch?: SwitchBranch }): string => `
SELECT neuron, uniqExactIf(step, switched) AS switches,
  arrayStringConcat(arrayDistinct(arrayConcat([argMin(label, step)],
    arrayMap(p -> p.2, arraySort(groupArrayIf((step, label), switched))))), ' > ') AS concepts
FROM (
  SELECT neuron, step, toString(concept) AS label, ${SWITCH_ROW} AS switched
  FROM ${T.neuronLabels}
  WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)}${andFilter(a.timeFilter)}${inBranch(a.branch)}
)
GROUP BY neuron
ORDER BY switches DESC, neuron
LIMIT ${int(a.limit ?? 20)}`;

const conceptSequences = (a: LayerArgs & { branch?: SwitchBranch }): string => `
    SELECT neuron, arrayMap(p -> p.2, arraySort(groupArray((step, concept)))) AS seq
    FROM ${T.neuronLabels} FINAL
    WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)}${andFilter(a.timeFilter)}${inBranch(a.branch)}
    GROUP BY neuron`;

/**
 * switchingConceptsSql for layers recorded before migration 6 (switchingLayerModeSql says 0): each
 * neuron's concept sequence ordered by step (all rows of the layer, FINAL), pairs of consecutive
 * labels that differ, counted by the concept switched to (and from). One pass over the layer: each
 * neuron's switches become (concept, 1, 0) for the concept switched into and (concept, 0, 1) for the
 * one left. 2-3.5 s on a 2.56M-row layer (docs/store.md, "Long runs").
 */
export const switchingConceptsFromSequencesSql = (a: LayerArgs & { branch?: SwitchBranch }): string => `
SELECT concept, sum(into) AS switches_into, sum(out_of) AS switches_out_of
FROM (
  SELECT arrayJoin(arrayConcat(
      arrayMap(c -> (c, 1, 0), arrayFilter((cur, prev) -> cur != prev, arrayPopFront(seq), arrayPopBack(seq))),
      arrayMap(c -> (c, 0, 1), arrayFilter((prev, cur) -> cur != prev, arrayPopBack(seq), arrayPopFront(seq)))
    )) AS switch, switch.1 AS concept, switch.2 AS into, switch.3 AS out_of
  FROM (${conceptSequences(a)}
  )
)
GROUP BY concept
ORDER BY switches_into + switches_out_of DESC, concept
LIMIT 20`;

/** switchingNeuronsSql for layers recorded before migration 6, from each neuron's sequence. */
export const switchingNeuronsFromSequencesSql = (
  a: LayerArgs & { limit?: IntArg; branch?: SwitchBranch },
): string => `
SELECT neuron, length(arrayFilter((cur, prev) -> cur != prev, arrayPopFront(seq), arrayPopBack(seq))) AS switches,
  arrayStringConcat(arrayDistinct(seq), ' > ') AS concepts
FROM (${conceptSequences(a)}
)
ORDER BY switches DESC, neuron
LIMIT ${int(a.limit ?? 20)}`;

/**
 * The switching questions in one statement that answers a layer in its own form (Grafana's layer
 * view): `recorded` is the layer's switchesRecordedSql answer (Grafana's `$switches_recorded`
 * variable); 1 reads the recorded switches, 0 (a layer recorded before migration 6) rebuilds them
 * from the label sequences, as the web view does. Both forms are the builders above; the branch not
 * taken selects nothing (inBranch). Columns are cast to one type each (a UNION ALL of 18.16 does
 * not look for a common type).
 */
export const switchingConceptsEitherSql = (a: LayerArgs & { recorded: IntArg }): string =>
  eitherForm(
    a.recorded,
    { concept: 'toString', switches_into: 'toUInt64', switches_out_of: 'toUInt64' },
    (branch) => switchingConceptsSql({ ...a, branch }),
    (branch) => switchingConceptsFromSequencesSql({ ...a, branch }),
    `ORDER BY switches_into + switches_out_of DESC, concept
LIMIT 20`,
  );

/** switchingNeuronsSql or switchingNeuronsFromSequencesSql, as `recorded` says (above). */
export const switchingNeuronsEitherSql = (a: LayerArgs & { recorded: IntArg; limit?: IntArg }): string =>
  eitherForm(
    a.recorded,
    { neuron: 'toUInt32', switches: 'toUInt64', concepts: 'toString' },
    (branch) => switchingNeuronsSql({ ...a, branch }),
    (branch) => switchingNeuronsFromSequencesSql({ ...a, branch }),
    `ORDER BY switches DESC, neuron
LIMIT ${int(a.limit ?? 20)}`,
  );

/**
 * The recorded form's rows (`recorded` 1) or the label-sequence form's (0) of one question: both
 * forms in a UNION ALL, each branch selecting nothing unless `recorded` picks it, each column cast
 * with its function; `tail` orders and limits the union.
 */
function eitherForm(
  recorded: IntArg,
  casts: Record<string, string>,
  recordedForm: (branch: SwitchBranch) => string,
  sequencesForm: (branch: SwitchBranch) => string,
  tail: string,
): string {
  const columns = Object.keys(casts);
  const cast = Object.entries(casts)
    .map(([column, to]) => `${to}(${column}) AS ${column}`)
    .join(', ');
  return `
SELECT ${columns.join(', ')}
FROM (
  SELECT ${cast}
  FROM (${recordedForm({ recorded, is: 1 })})
  UNION ALL
  SELECT ${cast}
  FROM (${sequencesForm({ recorded, is: 0 })})
)
${tail}`;
}

/** Share of the layer's interpretable neurons per concept category, per checkpoint (stacked). */
export const categorySharesSql = (a: LayerArgs & { by?: Axis }): string => {
  const x = a.by ?? 'time';
  return `
SELECT ${x}, category_shares.category AS category, category_shares.share AS share
FROM ${T.layerMetrics} FINAL ARRAY JOIN category_shares
WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)}${andFilter(a.timeFilter)}
ORDER BY ${x}`;
};

export const layerHealthSql = (a: LayerArgs): string => `
SELECT time, metric, value
FROM (
  SELECT time, ['switch fraction', 'dead fraction', 'label entropy', 'mean top score'] AS metrics,
    [switch_fraction, dead_fraction, label_entropy, mean_top_score] AS values
  FROM ${T.layerMetrics} FINAL
  WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)}${andFilter(a.timeFilter)}
)
ARRAY JOIN metrics AS metric, values AS value
ORDER BY time`;

/** How many label rows a layer has (all steps, or one): what the layer view's charts must hold. */
export const labelCountSql = (a: { run: TextArg; layer: TextArg; step?: IntArg }): string =>
  `SELECT count() AS n FROM ${T.neuronLabels} FINAL WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)}${
    a.step !== undefined ? ` AND step = ${int(a.step)}` : ''
  }`;

// ---- concept map ----

export const conceptMapSql = (a: { run: TextArg; layer: TextArg; step: IntArg }): string => `
SELECT x, y, concept, category, concat('n', toString(neuron)) AS neuron_id, score
FROM ${T.neuronLabels} FINAL
WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)} AND step = ${int(a.step)}
ORDER BY neuron`;

/**
 * Paths up to the chosen step of the `trail` neurons that moved most (bounding box of their path).
 * One pass over the layer: each neuron's path is gathered while its bounding box is measured, the
 * `trail` largest are kept and unrolled (filtering a second pass by `neuron IN (...)` read every
 * granule again: neurons of a step share granules, so a neuron filter skips nothing).
 */
export const trajectoriesSql = (a: { run: TextArg; layer: TextArg; step: IntArg; trail: IntArg }): string => `
SELECT concat('n', toString(neuron)) AS neuron_id, point.2 AS x, point.3 AS y
FROM (
  SELECT neuron, groupArray((step, x, y)) AS path
  FROM ${T.neuronLabels} FINAL
  WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)} AND step <= ${int(a.step)}
  GROUP BY neuron
  ORDER BY (max(x) - min(x)) + (max(y) - min(y)) DESC, neuron
  LIMIT ${int(a.trail)}
)
ARRAY JOIN path AS point
ORDER BY neuron, point.1`;

/** Paths of the chosen neurons over the whole run (step, x, y, concept), by neuron then step. */
export const neuronPathsSql = (a: { run: TextArg; layer: TextArg; neurons: readonly number[] }): string => {
  if (a.neurons.length === 0) throw invalidArgument('neuron paths need at least one neuron', {});
  return `
SELECT neuron, step, x, y, concept
FROM ${T.neuronLabels} FINAL
PREWHERE neuron IN (${intList(a.neurons)})
WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)}
ORDER BY neuron, step`;
};

/** The concepts of a probe bundle with their categories (the map's names when the bundle is not at hand). */
export const bundleConceptsSql = (a: { bundle: TextArg }): string =>
  `SELECT concept, category FROM ${T.concepts} FINAL WHERE bundle_id = ${text(a.bundle)} ORDER BY concept`;

// ---- neuron view ----

/**
 * One neuron's labels over steps: concept, score, its top-k concepts with scores and (where the
 * store has the column) the indices of its top-activating probe images, best first.
 */
export const neuronHistorySql = (a: {
  run: TextArg;
  layer: TextArg;
  neuron: IntArg;
  withTopImages: boolean;
}): string => `
SELECT step, concept, category, score, interpretable, dead, top_concepts, top_scores, x, y${
  a.withTopImages ? ', top_images' : ''
}
FROM ${T.neuronLabels} FINAL
PREWHERE neuron = ${int(a.neuron)}
WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)}
ORDER BY step`;

/** 1 when neuron_labels has the column (the evidence migration ran), else 0. */
export const hasColumnSql = (a: { table: TextArg; column: TextArg }): string =>
  `SELECT count() AS n FROM system.columns WHERE database = currentDatabase() AND table = ${text(a.table)} AND name = ${text(a.column)}`;

/** How many of the given tables the store's database has (a reader never creates them). */
export const tablesPresentSql = (a: { tables: readonly TextArg[] }): string =>
  `SELECT count() AS n FROM system.tables WHERE database = currentDatabase() AND name IN (${textList(a.tables)})`;

/** The number of neurons a layer had at its last checkpoint. */
export const layerWidthSql = (a: { run: TextArg; layer: TextArg }): string =>
  `SELECT argMax(neurons, step) AS neurons, count() AS checkpoints FROM ${T.layerMetrics} FINAL WHERE run_id = ${text(a.run)} AND layer = ${text(a.layer)}`;

// ---- run comparison ----

/** `metric` is a layer_metrics column (a closed list) or, in Grafana, a custom variable over that list. */
export const compareLayerMetricSql = (
  a: PairArgs & { layer: TextArg; metric: LayerMetricColumn | SqlFragment },
): string => `
SELECT step, run_id, ${metricColumn(a.metric)} AS value
FROM ${T.layerMetrics} FINAL
WHERE run_id IN (${text(a.runA)}, ${text(a.runB)}) AND layer = ${text(a.layer)}
ORDER BY run_id, step`;

export const compareLossSql = (a: PairArgs): string => `
SELECT step, run_id, metrics.value AS loss
FROM ${T.checkpoints} FINAL ARRAY JOIN metrics
WHERE run_id IN (${text(a.runA)}, ${text(a.runB)}) AND metrics.name = 'loss'
ORDER BY run_id, step`;

export const compareFinalSql = (a: PairArgs): string => `
SELECT layer, run_id, max(step) AS last_step,
  argMax(learned_fraction, step) AS learned,
  argMax(interpretable_fraction, step) AS interpretable,
  argMax(distinct_concept_share, step) AS diversity,
  argMax(label_entropy, step) AS entropy,
  argMax(dead_fraction, step) AS dead
FROM ${T.layerMetrics} FINAL
WHERE run_id IN (${text(a.runA)}, ${text(a.runB)})
GROUP BY layer, run_id
ORDER BY layer, run_id`;

/** Category shares of several runs at each run's last checkpoint of the layer: (run_id, category, share). */
export const lastCategorySharesSql = (a: { runs: readonly TextArg[]; layer: TextArg }): string => {
  if (a.runs.length === 0) throw invalidArgument('category shares need at least one run', {});
  return `
SELECT run_id, step, category_shares.category AS category, category_shares.share AS share
FROM ${T.layerMetrics} FINAL ARRAY JOIN category_shares
WHERE layer = ${text(a.layer)} AND (run_id, step) IN (
  SELECT run_id, max(step) FROM ${T.layerMetrics} FINAL
  WHERE run_id IN (${textList(a.runs)}) AND layer = ${text(a.layer)} GROUP BY run_id
)
ORDER BY run_id, category`;
};

// ---- live ----

/**
 * What changed in the store: rows and the newest write per table. The web view polls it and
 * pushes an update to open pages when the answer differs (a new checkpoint, label or alert).
 */
export const changeTokenSql = (): string => `
SELECT 'checkpoints' AS t, count() AS n, max(time_ms) AS last_ms FROM ${T.checkpoints} FINAL
UNION ALL SELECT 'layer_metrics' AS t, count() AS n, max(time_ms) AS last_ms FROM ${T.layerMetrics} FINAL
UNION ALL SELECT 'alerts' AS t, count() AS n, max(time_ms) AS last_ms FROM ${T.alerts} FINAL
UNION ALL SELECT 'runs' AS t, count() AS n, max(time_ms) AS last_ms FROM ${T.runs} FINAL`;

// ---- Grafana alert rules (run every minute over the last window) ----

/** 1 per alert episode that fired in the window and is not resolved; labels: run, layer, rule. */
export const openEpisodesAlertSql = (a: { timeFilter: SqlFragment }): string => `
SELECT run_id, layer, rule, toFloat64(1) AS open_episode
FROM (
  SELECT run_id, layer, rule, alert_id, max(state = 'resolved') AS resolved
  FROM ${T.alerts} FINAL
  WHERE alert_id IN (SELECT alert_id FROM ${T.alerts} WHERE state = 'firing' AND ${a.timeFilter.sql})
  GROUP BY run_id, layer, rule, alert_id
)
WHERE resolved = 0`;

/** Latest distinct-concept share per (run, layer) written in the window. */
export const latestDiversityAlertSql = (a: { timeFilter: SqlFragment }): string => `
SELECT run_id, layer, argMax(distinct_concept_share, step) AS diversity
FROM ${T.layerMetrics} FINAL
WHERE ${a.timeFilter.sql}
GROUP BY run_id, layer`;

/** Latest share of the layer held by its top concept per (run, layer) written in the window. */
export const latestDominanceAlertSql = (a: { timeFilter: SqlFragment }): string => `
SELECT run_id, layer, argMax(if(neurons > 0, top_concepts.count[1] / neurons, 0), step) AS top_concept_share
FROM ${T.layerMetrics} FINAL
WHERE ${a.timeFilter.sql}
GROUP BY run_id, layer`;
