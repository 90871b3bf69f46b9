import * as barchart from '@grafana/grafana-foundation-sdk/barchart';
import * as common from '@grafana/grafana-foundation-sdk/common';
import * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import * as statetimeline from '@grafana/grafana-foundation-sdk/statetimeline';
import * as table from '@grafana/grafana-foundation-sdk/table';
import * as timeseries from '@grafana/grafana-foundation-sdk/timeseries';
import * as trend from '@grafana/grafana-foundation-sdk/trend';
import * as xychart from '@grafana/grafana-foundation-sdk/xychart';
import { DATASOURCE, sqlTable, sqlTimeSeries } from './datasource';
import { PIPELINE_DASHBOARD_UID, pipelineDashboard } from './pipeline';
import * as SQL from './sql';

/**
 * The four dashboards, as code. Panels over wall-clock time (run overview, layer view) carry the
 * alert annotations and use $__timeFilter; panels whose x axis is the training step (run
 * comparison) or a 2D concept space (concept map) read whole runs.
 *
 * Long results (time, series label, value) become one series per label: the ClickHouse plugin does
 * that for time-series queries; table queries use Grafana's "partition by values" transformation.
 */

export const DASHBOARD_UIDS = {
  runOverview: 'cm-run-overview',
  layerView: 'cm-layer-view',
  conceptMap: 'cm-concept-map',
  runComparison: 'cm-run-comparison',
  pipeline: PIPELINE_DASHBOARD_UID,
} as const;

const TAGS = ['concept-monitor'];
/**
 * The switching panels answer each layer in its own form (libs/queries, "Label switches",
 * switching*EitherSql): the switches recorded on its rows, or, for a layer recorded before
 * migration 6, its label sequences, as the web view does.
 */
const SWITCHES_NOTE =
  "Switches recorded on each label row (its previous checkpoint's concept, store migration 6); for a layer recorded before that migration, rebuilt from each neuron's label sequence (slower), as the web view (cm ui) does. After retention thinning, the switches recorded at the kept checkpoints count (the panel 'Label retention' says which steps were thinned).";

const runVariable = (name = 'run', label = 'Run'): dashboard.QueryVariableBuilder =>
  new dashboard.QueryVariableBuilder(name)
    .label(label)
    .datasource(DATASOURCE)
    .query(SQL.RUNS_VARIABLE_SQL)
    .definition(SQL.RUNS_VARIABLE_SQL)
    .refresh(dashboard.VariableRefresh.OnDashboardLoad);

const layerVariable = (sql = SQL.LAYERS_VARIABLE_SQL): dashboard.QueryVariableBuilder =>
  new dashboard.QueryVariableBuilder('layer')
    .label('Layer')
    .datasource(DATASOURCE)
    .query(sql)
    .definition(sql)
    .refresh(dashboard.VariableRefresh.OnDashboardLoad)
    .sort(dashboard.VariableSort.AlphabeticalAsc);

/**
 * Hidden: 1 when the layer's switches were recorded on its rows, 0 for a layer recorded before
 * migration 6 (libs/queries switchesRecordedSql). Grafana asks it again when $run or $layer
 * changes; the switching panels read the recorded switches or rebuild them from the sequences by it.
 */
const switchesRecordedVariable = (): dashboard.QueryVariableBuilder =>
  new dashboard.QueryVariableBuilder('switches_recorded')
    .label('Switches recorded')
    .description("1: the layer's switches are recorded on its rows; 0: rebuilt from its label sequences")
    .datasource(DATASOURCE)
    .query(SQL.SWITCHES_RECORDED_VARIABLE_SQL)
    .definition(SQL.SWITCHES_RECORDED_VARIABLE_SQL)
    .refresh(dashboard.VariableRefresh.OnDashboardLoad)
    .hide(dashboard.VariableHide.HideVariable);

const customVariable = (
  name: string,
  label: string,
  values: string[],
  current: string,
): dashboard.CustomVariableBuilder =>
  new dashboard.CustomVariableBuilder(name)
    .label(label)
    .values(values.join(','))
    .current({ text: current, value: current })
    .allowCustomValue(false);

const alertAnnotations = (): dashboard.AnnotationQueryBuilder =>
  new dashboard.AnnotationQueryBuilder()
    .name('Concept-collapse alerts')
    .datasource(DATASOURCE)
    .enable(true)
    .iconColor('red')
    .target(sqlTable(SQL.ALERT_ANNOTATIONS_SQL));

/** The steps whose labels retention thinned, as regions over training time (label_thinning). */
const thinningAnnotations = (): dashboard.AnnotationQueryBuilder =>
  new dashboard.AnnotationQueryBuilder()
    .name('Label retention (thinned steps)')
    .datasource(DATASOURCE)
    .enable(true)
    .iconColor('purple')
    .target(sqlTable(SQL.LABEL_THINNING_ANNOTATIONS_SQL));

/** One row per retention pass over the run: which steps were decided and the k of their kept checkpoints. */
const thinningPanel = (gridPos: dashboard.GridPos): table.PanelBuilder =>
  new table.PanelBuilder()
    .title('Label retention: thinned steps of this run (no data: nothing thinned)')
    .description(
      'Label retention (CM_LABELS_*, docs/store.md "Retention") keeps the neuron labels of an old step only at every k-th checkpoint (by ordinal, the run\'s first is 0) and at alert steps; every step keeps its layer metrics. Panels over labels (neuron concepts, concept map, switches) have gaps at the removed steps; steps after the last through_step are whole.',
    )
    .datasource(DATASOURCE)
    .withTarget(sqlTable(SQL.LABEL_THINNING_SQL))
    .gridPos(gridPos);

const partitionBy = (field: string): dashboard.DataTransformerConfig => ({
  id: 'partitionByValues',
  options: { fields: [field], keepFields: false, naming: { asLabels: false } },
});

const links = (): dashboard.DashboardLinkBuilder =>
  new dashboard.DashboardLinkBuilder('Concept-Monitor')
    .type(dashboard.DashboardLinkType.Dashboards)
    .tags(TAGS)
    .asDropdown(true)
    .includeVars(true)
    .keepTime(true);

const fraction = (title: string, sql: string): timeseries.PanelBuilder =>
  new timeseries.PanelBuilder()
    .title(title)
    .datasource(DATASOURCE)
    .withTarget(sqlTimeSeries(sql))
    .unit('percentunit')
    .min(0)
    .max(1)
    .showPoints(common.VisibilityMode.Always)
    .pointSize(4);

function runOverview(): dashboard.DashboardBuilder {
  const runLink = `/d/${DASHBOARD_UIDS.runOverview}?var-run=\${__data.fields.run_id}&from=\${__data.fields.from_ms}&to=\${__data.fields.to_ms}`;
  return new dashboard.DashboardBuilder('Concept-Monitor: run overview')
    .uid(DASHBOARD_UIDS.runOverview)
    .description(
      'Loss and accuracy, per-layer interpretability and concept diversity, and concept-collapse alerts of one run.',
    )
    .tags(TAGS)
    .time({ from: 'now-6h', to: 'now' })
    .refresh('30s')
    .tooltip(dashboard.DashboardCursorSync.Crosshair)
    .link(links())
    .withVariable(runVariable())
    .annotation(alertAnnotations())
    .annotation(thinningAnnotations())
    .withPanel(
      new table.PanelBuilder()
        .title('Runs (click a run to open it over its own time range)')
        .datasource(DATASOURCE)
        .withTarget(sqlTable(SQL.RUNS_TABLE_SQL))
        .gridPos({ x: 0, y: 0, w: 24, h: 7 })
        .overrideByName('run_id', [{ id: 'links', value: [{ title: 'Open run', url: runLink }] }])
        .overrideByName('from_ms', [{ id: 'custom.hidden', value: true }])
        .overrideByName('to_ms', [{ id: 'custom.hidden', value: true }]),
    )
    .withPanel(
      new timeseries.PanelBuilder()
        .title('Loss and accuracy')
        .datasource(DATASOURCE)
        .withTarget(sqlTimeSeries(SQL.TRAINING_METRICS_SQL))
        .showPoints(common.VisibilityMode.Always)
        .pointSize(4)
        .overrideByRegexp('.*accuracy.*', [
          { id: 'custom.axisPlacement', value: 'right' },
          { id: 'unit', value: 'percentunit' },
        ])
        .gridPos({ x: 0, y: 7, w: 24, h: 8 }),
    )
    .withPanel(
      fraction(
        'Learned concepts per layer (interpretable beyond random init; empty until a baseline exists)',
        SQL.LEARNED_SHARE_SQL,
      )
        .description(
          'Share of neurons interpretable beyond the same layer of the same architecture at random initialisation (K initialisations, chance-corrected); docs/dissect.md, "Learned concepts".',
        )
        .gridPos({ x: 0, y: 15, w: 12, h: 9 }),
    )
    .withPanel(
      fraction('Association with P per layer (shuffle null)', SQL.INTERPRETABLE_SHARE_SQL)
        .description(
          'Share of neurons whose top concept beats activations shuffled across images. Random filters pass this too: it is not "has learned a concept".',
        )
        .gridPos({ x: 12, y: 15, w: 12, h: 9 }),
    )
    .withPanel(
      fraction('Concept diversity per layer (distinct-concept share)', SQL.DIVERSITY_SQL).gridPos({
        x: 0,
        y: 24,
        w: 12,
        h: 9,
      }),
    )
    .withPanel(
      new table.PanelBuilder()
        .title('Layers at their latest checkpoint')
        .datasource(DATASOURCE)
        .withTarget(sqlTable(SQL.LAYER_SUMMARY_SQL))
        .gridPos({ x: 12, y: 24, w: 12, h: 9 }),
    )
    .withPanel(
      new table.PanelBuilder()
        .title('Concept-collapse alert episodes')
        .datasource(DATASOURCE)
        .withTarget(sqlTable(SQL.ALERT_EPISODES_SQL))
        .gridPos({ x: 0, y: 33, w: 24, h: 8 }),
    )
    .withPanel(thinningPanel({ x: 0, y: 41, w: 24, h: 6 }));
}

function layerView(): dashboard.DashboardBuilder {
  return new dashboard.DashboardBuilder('Concept-Monitor: layer view')
    .uid(DASHBOARD_UIDS.layerView)
    .description(
      "Each neuron's concept over the run, the concepts neurons switch between, and the category mix of one layer.",
    )
    .tags(TAGS)
    .time({ from: 'now-6h', to: 'now' })
    .refresh('1m')
    .link(links())
    .withVariable(runVariable())
    .withVariable(layerVariable())
    .withVariable(customVariable('neurons', 'Neurons shown', ['16', '32', '64', '128'], '32'))
    .withVariable(switchesRecordedVariable())
    .annotation(alertAnnotations())
    .annotation(thinningAnnotations())
    .withPanel(
      new statetimeline.PanelBuilder()
        .title("Each neuron's concept over the run (first $neurons neurons)")
        .datasource(DATASOURCE)
        .withTarget(sqlTable(SQL.NEURON_CONCEPTS_SQL))
        .withTransformation(partitionBy('neuron_id'))
        .showValue(common.VisibilityMode.Auto)
        .mergeValues(true)
        .rowHeight(0.8)
        .gridPos({ x: 0, y: 0, w: 24, h: 14 }),
    )
    .withPanel(
      new barchart.PanelBuilder()
        .title('Concepts neurons switch into / out of most')
        .description(SWITCHES_NOTE)
        .datasource(DATASOURCE)
        .withTarget(sqlTable(SQL.SWITCHING_CONCEPTS_SQL))
        .xField('concept')
        .orientation(common.VizOrientation.Horizontal)
        .gridPos({ x: 0, y: 14, w: 12, h: 10 }),
    )
    .withPanel(
      new table.PanelBuilder()
        .title('Neurons that switch concept most')
        .description(SWITCHES_NOTE)
        .datasource(DATASOURCE)
        .withTarget(sqlTable(SQL.SWITCHING_NEURONS_SQL))
        .gridPos({ x: 12, y: 14, w: 12, h: 10 }),
    )
    .withPanel(
      new timeseries.PanelBuilder()
        .title('Category shares of interpretable neurons (stacked)')
        .datasource(DATASOURCE)
        .withTarget(sqlTimeSeries(SQL.CATEGORY_SHARES_SQL))
        .stacking(new common.StackingConfigBuilder().mode(common.StackingMode.Normal))
        .fillOpacity(60)
        .lineWidth(0)
        .unit('percentunit')
        .min(0)
        .max(1)
        .gridPos({ x: 0, y: 24, w: 12, h: 9 }),
    )
    .withPanel(
      new timeseries.PanelBuilder()
        .title('Switching, dead neurons, entropy, mean score')
        .datasource(DATASOURCE)
        .withTarget(sqlTimeSeries(SQL.LAYER_HEALTH_SQL))
        .showPoints(common.VisibilityMode.Always)
        .pointSize(4)
        .min(0)
        .gridPos({ x: 12, y: 24, w: 12, h: 9 }),
    )
    .withPanel(thinningPanel({ x: 0, y: 33, w: 24, h: 6 }));
}

function conceptMap(): dashboard.DashboardBuilder {
  return (
    new dashboard.DashboardBuilder('Concept-Monitor: concept map')
      .uid(DASHBOARD_UIDS.conceptMap)
      .description(
        'Neurons placed in one 2D concept space at a chosen step, and the paths of the neurons that moved most.',
      )
      .tags(TAGS)
      .time({ from: 'now-30d', to: 'now' })
      .link(links())
      .withVariable(runVariable())
      .withVariable(layerVariable())
      .withVariable(
        new dashboard.QueryVariableBuilder('step')
          .label('Step')
          .description('Steps that hold neuron labels (a step thinned by label retention is not listed)')
          .datasource(DATASOURCE)
          .query(SQL.STEPS_VARIABLE_SQL)
          .definition(SQL.STEPS_VARIABLE_SQL)
          .refresh(dashboard.VariableRefresh.OnDashboardLoad),
      )
      .withVariable(customVariable('trail', 'Trajectories', ['5', '10', '20', '50'], '10'))
      .withPanel(
        new xychart.PanelBuilder()
          .title('Concept map at step $step')
          .datasource(DATASOURCE)
          .withTarget(sqlTable(SQL.CONCEPT_MAP_SQL))
          .mapping(xychart.SeriesMapping.Auto)
          .show(xychart.XYShowMode.Points)
          .pointSize({ fixed: 7 })
          .gridPos({ x: 0, y: 0, w: 12, h: 16 }),
      )
      .withPanel(
        new xychart.PanelBuilder()
          .title('Trajectories up to step $step ($trail neurons that moved most)')
          .datasource(DATASOURCE)
          .withTarget(sqlTable(SQL.TRAJECTORIES_SQL))
          .withTransformation(partitionBy('neuron_id'))
          .mapping(xychart.SeriesMapping.Auto)
          .show(xychart.XYShowMode.PointsAndLines)
          .pointSize({ fixed: 4 })
          .lineWidth(1)
          .gridPos({ x: 12, y: 0, w: 12, h: 16 }),
      )
      // the step variable lists only steps that hold labels: a thinned step is not offered
      .withPanel(thinningPanel({ x: 0, y: 16, w: 24, h: 6 }))
  );
}

/** Layer metrics the comparison can show; the learned-concept share first (the default). */
const LAYER_METRIC_COLUMNS = [
  'learned_fraction',
  'distinct_concept_share',
  'interpretable_fraction',
  'label_entropy',
  'mean_top_score',
  'embedding_spread',
  'dead_fraction',
  'switch_fraction',
];

function runComparison(): dashboard.DashboardBuilder {
  return new dashboard.DashboardBuilder('Concept-Monitor: run comparison')
    .uid(DASHBOARD_UIDS.runComparison)
    .description("Two runs' layer metrics overlaid by training step.")
    .tags(TAGS)
    .time({ from: 'now-30d', to: 'now' })
    .link(links())
    .withVariable(runVariable('run_a', 'Run A'))
    .withVariable(runVariable('run_b', 'Run B'))
    .withVariable(layerVariable(SQL.COMPARISON_LAYERS_VARIABLE_SQL))
    .withVariable(customVariable('metric', 'Layer metric', LAYER_METRIC_COLUMNS, LAYER_METRIC_COLUMNS[0]))
    .withPanel(
      new trend.PanelBuilder()
        .title('$metric of layer $layer by step: $run_a vs $run_b')
        .datasource(DATASOURCE)
        .withTarget(sqlTable(SQL.COMPARE_LAYER_METRIC_SQL))
        .withTransformation(partitionBy('run_id'))
        .xField('step')
        .showPoints(common.VisibilityMode.Always)
        .pointSize(4)
        .spanNulls(true)
        .gridPos({ x: 0, y: 0, w: 24, h: 10 }),
    )
    .withPanel(
      new trend.PanelBuilder()
        .title('Loss by step')
        .datasource(DATASOURCE)
        .withTarget(sqlTable(SQL.COMPARE_LOSS_SQL))
        .withTransformation(partitionBy('run_id'))
        .xField('step')
        .spanNulls(true)
        .gridPos({ x: 0, y: 10, w: 12, h: 9 }),
    )
    .withPanel(
      new table.PanelBuilder()
        .title('Every layer at its latest checkpoint')
        .datasource(DATASOURCE)
        .withTarget(sqlTable(SQL.COMPARE_FINAL_SQL))
        .gridPos({ x: 12, y: 10, w: 12, h: 9 }),
    );
}

/** Every dashboard, keyed by the file name it is written to under deploy/grafana/dashboards. */
export function buildDashboards(): Record<string, dashboard.Dashboard> {
  return {
    'run-overview.json': runOverview().build(),
    'layer-view.json': layerView().build(),
    'concept-map.json': conceptMap().build(),
    'run-comparison.json': runComparison().build(),
    'pipeline.json': pipelineDashboard().build(),
  };
}
