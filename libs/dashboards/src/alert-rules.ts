import * as alerting from '@grafana/grafana-foundation-sdk/alerting';
import * as expr from '@grafana/grafana-foundation-sdk/expr';
import { DASHBOARD_FOLDER, DASHBOARD_FOLDER_UID, DATASOURCE_UID, sqlTable } from './datasource';
import { DASHBOARD_UIDS } from './dashboards';
import * as SQL from './sql';

/**
 * Grafana-managed alert rules for concept collapse, provisioned from a file
 * (provisioning/alerting/*.yaml). They complement the engine's own detector (libs/alerts, which
 * writes the alerts table and calls the webhook): Grafana routes them to its contact points, and the
 * metric rules keep watching even for runs whose engine ran with other thresholds.
 *
 * Each rule: A = ClickHouse SQL (one row per run/layer: string columns become labels, the number
 * the value), B = reduce(last) of A, C = threshold on B, the condition.
 */
export interface CollapseThresholds {
  diversityFloor: number;
  dominanceShare: number;
}

/** The provisioning file's shape of a rule (Grafana's file format: datasourceUid, relativeTimeRange in s). */
export interface ProvisionedQuery {
  refId: string;
  datasourceUid: string;
  relativeTimeRange: { from: number; to: number };
  model: Record<string, unknown>;
}

export interface ProvisionedAlertRule {
  uid: string;
  title: string;
  condition: string;
  data: ProvisionedQuery[];
  noDataState: alerting.Rule['noDataState'];
  execErrState: alerting.Rule['execErrState'];
  for: string;
  annotations: Record<string, string>;
  labels: Record<string, string>;
  isPaused: boolean;
}

export interface AlertRulesProvisioning {
  apiVersion: 1;
  groups: { orgId: number; name: string; folder: string; interval: string; rules: ProvisionedAlertRule[] }[];
}

export const ALERT_RULE_GROUP = 'concept-collapse';
/** How far back each evaluation looks (seconds): a checkpoint every few minutes lands inside it. */
const WINDOW_S = 15 * 60;
const EPISODE_WINDOW_S = 24 * 3600;

const EXPRESSION_UID = '__expr__';

function sqlQuery(refId: string, sql: string, windowS: number): alerting.QueryBuilder {
  return new alerting.QueryBuilder(refId)
    .datasourceUid(DATASOURCE_UID)
    .relativeTimeRange({ from: windowS, to: 0 })
    .model(sqlTable(sql, refId));
}

function reduceLast(refId: string, input: string): alerting.QueryBuilder {
  return new alerting.QueryBuilder(refId)
    .datasourceUid(EXPRESSION_UID)
    .model(
      new expr.TypeReduceBuilder()
        .refId(refId)
        .expression(input)
        .reducer('last')
        .settings({ mode: 'dropNN' }),
    );
}

function threshold(refId: string, input: string, type: 'gt' | 'lt', value: number): alerting.QueryBuilder {
  return new alerting.QueryBuilder(refId).datasourceUid(EXPRESSION_UID).model(
    new expr.TypeThresholdBuilder()
      .refId(refId)
      .expression(input)
      .conditions([{ evaluator: { type, params: [value] } }]),
  );
}

function rule(
  uid: string,
  title: string,
  sql: string,
  windowS: number,
  cmp: 'gt' | 'lt',
  value: number,
  summary: string,
): alerting.RuleBuilder {
  return new alerting.RuleBuilder(title)
    .uid(uid)
    .folderUID(DASHBOARD_FOLDER_UID)
    .ruleGroup(ALERT_RULE_GROUP)
    .orgID(1)
    .withQuery(sqlQuery('A', sql, windowS))
    .withQuery(reduceLast('B', 'A'))
    .withQuery(threshold('C', 'B', cmp, value))
    .condition('C')
    .noDataState('OK')
    .execErrState('Error')
    .forDuration('0s')
    .labels({ team: 'ml', source: 'concept-monitor' })
    .annotations({
      summary,
      description: 'Run {{ $labels.run_id }}, layer {{ $labels.layer }}: value {{ $values.B }}.',
      __dashboardUid__: DASHBOARD_UIDS.runOverview,
    });
}

export function buildAlertRules(thresholds: CollapseThresholds): alerting.Rule[] {
  return [
    rule(
      'cm-collapse-open-episode',
      'Concept collapse episode open',
      SQL.OPEN_EPISODES_ALERT_SQL,
      EPISODE_WINDOW_S,
      'gt',
      0,
      'A concept-collapse episode detected by the concept service is still open.',
    ),
    rule(
      'cm-collapse-diversity-floor',
      'Layer concept diversity under the floor',
      SQL.LATEST_DIVERSITY_ALERT_SQL,
      WINDOW_S,
      'lt',
      thresholds.diversityFloor,
      `The distinct-concept share of a layer fell below ${thresholds.diversityFloor}.`,
    ),
    rule(
      'cm-collapse-concept-dominance',
      'One concept dominates a layer',
      SQL.LATEST_DOMINANCE_ALERT_SQL,
      WINDOW_S,
      'gt',
      thresholds.dominanceShare,
      `One concept holds more than ${thresholds.dominanceShare} of a layer's neurons.`,
    ),
  ].map((b) => b.build());
}

/** Plain JSON (drops the SDK's marker methods) of a built SDK object. */
const plain = <T>(value: unknown): T => JSON.parse(JSON.stringify(value)) as T;

export function alertRulesProvisioning(thresholds: CollapseThresholds): AlertRulesProvisioning {
  const rules = buildAlertRules(thresholds).map((r): ProvisionedAlertRule => ({
    uid: r.uid as string,
    title: r.title,
    condition: r.condition,
    data: r.data.map((q) => ({
      refId: q.refId as string,
      datasourceUid: q.datasourceUid as string,
      relativeTimeRange: { from: q.relativeTimeRange?.from ?? 0, to: q.relativeTimeRange?.to ?? 0 },
      model: plain<Record<string, unknown>>(q.model),
    })),
    noDataState: r.noDataState,
    execErrState: r.execErrState,
    for: r.for,
    annotations: r.annotations ?? {},
    labels: r.labels ?? {},
    isPaused: r.isPaused ?? false,
  }));
  return {
    apiVersion: 1,
    groups: [{ orgId: 1, name: ALERT_RULE_GROUP, folder: DASHBOARD_FOLDER, interval: '1m', rules }],
  };
}
