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
  queriesOfAlertRules,
  queriesOfDashboard,
} from '../src';
import { loadConfig } from '@cm/config';

const read = (rel: string): string => readFileSync(join(GRAFANA_DIR, rel), 'utf8');
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

  it('the four dashboards parse, use the provisioned data source, and fit the 24-column grid', () => {
    expect(dashboardFiles.sort()).toEqual([
      'dashboards/concept-map.json',
      'dashboards/layer-view.json',
      'dashboards/run-comparison.json',
      'dashboards/run-overview.json',
    ]);
    const uids = new Set<string>();
    for (const file of dashboardFiles) {
      const d = JSON.parse(read(file));
      uids.add(d.uid);
      expect(d.title).toMatch(/^Concept-Monitor: /);
      expect(d.panels.length).toBeGreaterThanOrEqual(2);
      for (const p of d.panels) {
        expect(p.datasource).toEqual({ type: DATASOURCE_TYPE, uid: DATASOURCE_UID });
        expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
        for (const t of p.targets) expect(t.datasource.uid).toBe(DATASOURCE_UID);
      }
      expect(queriesOfDashboard(file, d).length).toBeGreaterThan(0);
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
    expect(types('dashboards/concept-map.json')).toEqual(['xychart', 'xychart']);
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
