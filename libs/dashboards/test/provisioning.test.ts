import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import {
  alertRulesProvisioning,
  checkGenerated,
  dashboardProviderProvisioning,
  datasourceProvisioning,
  DASHBOARD_UIDS,
  DATASOURCE_TYPE,
  DATASOURCE_UID,
  generateFiles,
  GRAFANA_DIR,
  metricNamesOfPromQL,
  prometheusDatasourceProvisioning,
  PROMETHEUS_DATASOURCE_TYPE,
  PROMETHEUS_DATASOURCE_UID,
  promQueriesOfDashboard,
  queriesOfAlertRules,
  queriesOfDashboard,
} from '../src';
import { loadConfig } from '@cm/config';
import { conceptServiceMetrics, recorderMetrics, serviceRegistry } from '@cm/metrics';

const read = (rel: string): string => readFileSync(join(GRAFANA_DIR, rel), 'utf8');
const PIPELINE_FILE = 'dashboards/pipeline.json';
const dashboardFiles = Object.keys(generateFiles()).filter((f) => f.startsWith('dashboards/'));

describe('committed Grafana provisioning (deploy/grafana)', () => {
  it('matches the generator: run `npm run dashboards:generate` after changing libs/dashboards', () => {
    expect(checkGenerated()).toEqual([]);
  });

  it('data source and dashboard provider YAML parse to exactly the typed objects', () => {
    expect(parse(read('provisioning/datasources/clickhouse.yaml'))).toEqual(datasourceProvisioning());
    expect(parse(read('provisioning/dashboards/concept-monitor.yaml'))).toEqual(
      dashboardProviderProvisioning(),
    );
    const ds = datasourceProvisioning().datasources[0];
    expect(ds).toMatchObject({
      type: 'grafana-clickhouse-datasource',
      uid: DATASOURCE_UID,
      jsonData: { protocol: 'native', username: 'grafana' },
    });
    // No secret in the repository: the password is Grafana's env interpolation.
    expect(ds.secureJsonData.password).toBe('${CM_GRAFANA_CH_PASSWORD}');
  });

  it('alert rules YAML parses to the typed rules; every condition and expression input exists', () => {
    const alerts = loadConfig({}).alerts;
    const typed = alertRulesProvisioning({
      diversityFloor: alerts.diversityFloor,
      dominanceShare: alerts.dominanceShare,
    });
    const parsed = parse(read('provisioning/alerting/concept-collapse.yaml'));
    expect(parsed).toEqual(JSON.parse(JSON.stringify(typed)));
    const rules = typed.groups[0].rules;
    expect(rules.map((r) => r.uid)).toEqual([
      'cm-collapse-open-episode',
      'cm-collapse-diversity-floor',
      'cm-collapse-concept-dominance',
    ]);
    for (const rule of rules) {
      const refs = rule.data.map((d) => d.refId);
      expect(refs).toContain(rule.condition);
      for (const d of rule.data) {
        expect(d.model.refId).toBe(d.refId);
        if (d.datasourceUid === '__expr__') expect(refs).toContain(d.model.expression);
        else
          expect(d).toMatchObject({
            datasourceUid: DATASOURCE_UID,
            model: { editorType: 'sql', rawSql: expect.any(String) },
          });
      }
    }
    const floor = rules[1].data.find((d) => d.refId === 'C')?.model as {
      conditions: { evaluator: { type: string; params: number[] } }[];
    };
    expect(floor.conditions[0].evaluator).toEqual({ type: 'lt', params: [alerts.diversityFloor] });
  });

  it('the dashboards parse, use the provisioned data sources, and fit the 24-column grid', () => {
    expect(dashboardFiles.sort()).toEqual([
      'dashboards/concept-map.json',
      'dashboards/layer-view.json',
      'dashboards/pipeline.json',
      'dashboards/run-comparison.json',
      'dashboards/run-overview.json',
    ]);
    const uids = new Set<string>();
    for (const file of dashboardFiles) {
      const d = JSON.parse(read(file));
      uids.add(d.uid);
      expect(d.title).toMatch(/^Concept-Monitor: /);
      expect(d.panels.length).toBeGreaterThanOrEqual(2);
      // the pipeline dashboard reads Prometheus; every other one reads ClickHouse
      const ds =
        file === PIPELINE_FILE
          ? { type: PROMETHEUS_DATASOURCE_TYPE, uid: PROMETHEUS_DATASOURCE_UID }
          : { type: DATASOURCE_TYPE, uid: DATASOURCE_UID };
      for (const p of d.panels) {
        expect(p.datasource).toEqual(ds);
        expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
        for (const t of p.targets) expect(t.datasource.uid).toBe(ds.uid);
      }
      if (file === PIPELINE_FILE) expect(queriesOfDashboard(file, d)).toEqual([]);
      else expect(queriesOfDashboard(file, d).length).toBeGreaterThan(0);
    }
    expect(uids).toEqual(new Set(Object.values(DASHBOARD_UIDS)));
  });

  it('the issue’s required panels are there', () => {
    const types = (file: string): string[] =>
      JSON.parse(read(file)).panels.map((p: { type: string }) => p.type);
    const overview = JSON.parse(read('dashboards/run-overview.json'));
    expect(overview.templating.list.map((v: { name: string }) => v.name)).toEqual(['run']);
    expect(
      overview.annotations.list.some((a: { target?: { rawSql?: string } }) =>
        a.target?.rawSql?.includes('FROM alerts'),
      ),
    ).toBe(true);
    expect(types('dashboards/layer-view.json')).toEqual(
      expect.arrayContaining(['state-timeline', 'barchart', 'timeseries']),
    );
    // the map and the trajectories, and what label retention thinned of the run
    expect(types('dashboards/concept-map.json')).toEqual(['xychart', 'xychart', 'table']);
    expect(types('dashboards/run-comparison.json')).toContain('trend');
    const stacked = JSON.parse(read('dashboards/layer-view.json')).panels.find((p: { title: string }) =>
      p.title.startsWith('Category shares'),
    );
    expect(stacked.fieldConfig.defaults.custom.stacking.mode).toBe('normal');
  });

  it('finds the SQL of alert rules for the store test', () => {
    expect(queriesOfAlertRules('a', parse(read('provisioning/alerting/concept-collapse.yaml')))).toHaveLength(
      3,
    );
  });
});

describe('the pipeline dashboard (Prometheus)', () => {
  const pipeline = (): unknown => JSON.parse(read(PIPELINE_FILE));

  /** Every series name the services expose: the registries libs/metrics builds, as the shells do. */
  async function registeredNames(): Promise<{ names: Set<string>; histograms: Set<string> }> {
    const service = serviceRegistry('concept-service');
    conceptServiceMetrics(service, () => 0);
    const recorder = serviceRegistry('recorder');
    recorderMetrics(recorder, async () => ({ pending: 0, ackPending: 0 }));
    const metrics = [...(await service.getMetricsAsJSON()), ...(await recorder.getMetricsAsJSON())];
    return {
      names: new Set(metrics.map((m) => m.name)),
      histograms: new Set(metrics.filter((m) => String(m.type) === 'histogram').map((m) => m.name)),
    };
  }

  it('is provisioned with its Prometheus data source, which the compose service serves', () => {
    expect(parse(read('provisioning/datasources/prometheus.yaml'))).toEqual(
      prometheusDatasourceProvisioning(),
    );
    expect(prometheusDatasourceProvisioning().datasources[0]).toMatchObject({
      type: 'prometheus',
      uid: PROMETHEUS_DATASOURCE_UID,
      url: 'http://prometheus:9090',
      isDefault: false,
    });
    // the ClickHouse source stays the default of the SQL dashboards
    expect(datasourceProvisioning().datasources[0].isDefault).toBe(true);
  });

  it('has the issue’s panels', () => {
    const exprs = promQueriesOfDashboard(PIPELINE_FILE, pipeline()).map((q) => q.expr);
    const all = exprs.join('\n');
    for (const needed of [
      /rate\(cm_service_checkpoints_received_total/,
      /rate\(cm_service_checkpoints_acked_total/,
      /sum by \(service, code\) \(rate\(cm_service_refusals_total/,
      /histogram_quantile\(0\.5, .*cm_service_dissection_seconds_bucket/,
      /histogram_quantile\(0\.95, .*cm_service_dissection_seconds_bucket/,
      /cm_service_publish_seconds_bucket/,
      /rate\(cm_service_activation_bytes_total/,
      /cm_service_open_streams/,
      /sum by \(table\) \(rate\(cm_recorder_rows_inserted_total/,
      /cm_recorder_insert_seconds_bucket/,
      /cm_recorder_consumer_pending_messages/,
      /rate\(cm_recorder_redeliveries_total/,
      /cm_process_resident_memory_bytes/,
    ])
      expect(all).toMatch(needed);
  });

  it('names, in every expression, only series that libs/metrics registers', async () => {
    const { names, histograms } = await registeredNames();
    const queries = promQueriesOfDashboard(PIPELINE_FILE, pipeline());
    expect(queries.length).toBeGreaterThanOrEqual(10);
    const unknown: string[] = [];
    for (const { where, expr } of queries) {
      const used = metricNamesOfPromQL(expr);
      expect({ where, count: used.length > 0 }).toEqual({ where, count: true });
      for (const name of used) {
        // a histogram is exposed as <name>_bucket, _sum and _count
        const base = name.replace(/_(bucket|sum|count)$/, '');
        const known = names.has(name) || (base !== name && histograms.has(base));
        if (!known) unknown.push(`${where}: ${name}`);
      }
    }
    expect(unknown).toEqual([]);
  });

  it('the name check would catch a misspelt series', async () => {
    const { names } = await registeredNames();
    expect(
      metricNamesOfPromQL('rate(cm_recorder_rows_insrted_total[5m])').filter((n) => !names.has(n)),
    ).toEqual(['cm_recorder_rows_insrted_total']);
  });
});
