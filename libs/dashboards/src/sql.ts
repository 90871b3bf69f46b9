import * as Q from '@cm/queries';
import { raw } from '@cm/queries';

/**
 * The SQL of every panel, variable, annotation and alert rule. The questions live in @cm/queries
 * (shared with `cm ui` and `cm report`); here they get Grafana's template variables and data
 * source macros as arguments, which Grafana interpolates before the query reaches ClickHouse.
 * A single-value variable is inserted verbatim, so string variables are quoted here ('${run}').
 */
const v = {
  run: raw("'${run}'"),
  runA: raw("'${run_a}'"),
  runB: raw("'${run_b}'"),
  layer: raw("'${layer}'"),
  neurons: raw('${neurons}'),
  step: raw('${step}'),
  trail: raw('${trail}'),
  /** Hidden: 1 when the layer's switches were recorded, 0 when recorded before migration 6. */
  switchesRecorded: raw('${switches_recorded}'),
  /** A custom variable whose values are layer_metrics column names (not free text). */
  metric: raw('${metric}'),
  timeFilter: raw('$__timeFilter(time)'),
};
const run = { run: v.run, timeFilter: v.timeFilter };
const layer = { ...run, layer: v.layer };
const pair = { runA: v.runA, runB: v.runB };

// ---- variables ----
export const RUNS_VARIABLE_SQL = Q.runIdsSql();
export const LAYERS_VARIABLE_SQL = Q.layersSql({ run: v.run });
export const STEPS_VARIABLE_SQL = Q.labelStepsSql({ run: v.run, layer: v.layer });
export const COMPARISON_LAYERS_VARIABLE_SQL = Q.comparisonLayersSql(pair);

// ---- run overview ----
export const RUNS_TABLE_SQL = Q.runsTableSql();
export const TRAINING_METRICS_SQL = Q.trainingMetricsSql(run);
export const LEARNED_SHARE_SQL = Q.learnedShareSql(run);
export const INTERPRETABLE_SHARE_SQL = Q.interpretableShareSql(run);
export const DIVERSITY_SQL = Q.diversitySql(run);
export const LAYER_SUMMARY_SQL = Q.layerSummarySql({ run: v.run });
export const ALERT_EPISODES_SQL = Q.alertEpisodesSql({ run: v.run });
export const ALERT_ANNOTATIONS_SQL = Q.alertAnnotationsSql(run);
export const LABEL_THINNING_SQL = Q.labelThinningSql({ run: v.run });
export const LABEL_THINNING_ANNOTATIONS_SQL = Q.labelThinningAnnotationsSql(run);

// ---- layer view ----
export const NEURON_CONCEPTS_SQL = Q.neuronConceptsSql({ ...layer, neurons: v.neurons });
// each layer in its form: recorded switches, or its label sequences when recorded before migration 6
export const SWITCHES_RECORDED_VARIABLE_SQL = Q.switchesRecordedSql({ run: v.run, layer: v.layer });
export const SWITCHING_CONCEPTS_SQL = Q.switchingConceptsEitherSql({
  ...layer,
  recorded: v.switchesRecorded,
});
export const SWITCHING_NEURONS_SQL = Q.switchingNeuronsEitherSql({ ...layer, recorded: v.switchesRecorded });
export const CATEGORY_SHARES_SQL = Q.categorySharesSql(layer);
export const LAYER_HEALTH_SQL = Q.layerHealthSql(layer);

// ---- concept map ----
export const CONCEPT_MAP_SQL = Q.conceptMapSql({ run: v.run, layer: v.layer, step: v.step });
export const TRAJECTORIES_SQL = Q.trajectoriesSql({
  run: v.run,
  layer: v.layer,
  step: v.step,
  trail: v.trail,
});

// ---- run comparison ----
export const COMPARE_LAYER_METRIC_SQL = Q.compareLayerMetricSql({
  ...pair,
  layer: v.layer,
  metric: v.metric,
});
export const COMPARE_LOSS_SQL = Q.compareLossSql(pair);
export const COMPARE_FINAL_SQL = Q.compareFinalSql(pair);

// ---- Grafana alert rules (run every minute over the last window) ----
export const OPEN_EPISODES_ALERT_SQL = Q.openEpisodesAlertSql({ timeFilter: v.timeFilter });
export const LATEST_DIVERSITY_ALERT_SQL = Q.latestDiversityAlertSql({ timeFilter: v.timeFilter });
export const LATEST_DOMINANCE_ALERT_SQL = Q.latestDominanceAlertSql({ timeFilter: v.timeFilter });
