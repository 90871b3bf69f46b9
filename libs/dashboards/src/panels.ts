import { invalidArgument } from '@cm/core';

/**
 * Every SQL statement a dashboard or alert-rule file makes Grafana run, found by walking the
 * provisioned JSON/YAML itself (not the TypeScript), so tests check exactly what ships.
 */
export interface ShippedQuery {
  /** file and element, for test names and errors: "run-overview.json / panel 'Loss and accuracy' / A" */
  where: string;
  kind: 'panel' | 'variable' | 'annotation' | 'alert-rule';
  sql: string;
}

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const list = (v: unknown): Json[] => (Array.isArray(v) ? v.filter(isObj) : []);

function rawSql(target: Json, where: string): string {
  if (typeof target.rawSql !== 'string' || target.rawSql.trim() === '')
    throw invalidArgument(`${where} has no rawSql`, { where });
  return target.rawSql;
}

const isPrometheusTarget = (target: Json): boolean =>
  isObj(target.datasource) && target.datasource.type === 'prometheus';

/** Every PromQL expression of a dashboard's panels (the pipeline dashboard), with where it is. */
export function promQueriesOfDashboard(file: string, dashboard: unknown): { where: string; expr: string }[] {
  if (!isObj(dashboard)) throw invalidArgument(`${file} is not a dashboard object`);
  const panels = list(dashboard.panels).flatMap((p) => [p, ...list(p.panels)]);
  return panels.flatMap((panel) =>
    list(panel.targets)
      .filter(isPrometheusTarget)
      .map((target) => {
        const where = `${file} / panel '${String(panel.title)}' / ${String(target.refId)}`;
        if (typeof target.expr !== 'string' || target.expr.trim() === '')
          throw invalidArgument(`${where} has no expr`, { where });
        return { where, expr: target.expr };
      }),
  );
}

/** The metric names a PromQL expression reads (this project's series all start with cm_). */
export function metricNamesOfPromQL(expr: string): string[] {
  return [...new Set([...expr.matchAll(/\bcm_[a-z0-9_]+/g)].map((m) => m[0]))];
}

export function queriesOfDashboard(file: string, dashboard: unknown): ShippedQuery[] {
  if (!isObj(dashboard)) throw invalidArgument(`${file} is not a dashboard object`);
  const out: ShippedQuery[] = [];
  const panels = list(dashboard.panels).flatMap((p) => [p, ...list(p.panels)]); // rows nest panels
  for (const panel of panels) {
    for (const target of list(panel.targets)) {
      if (isPrometheusTarget(target)) continue; // PromQL, not SQL: see promQueriesOfDashboard
      const where = `${file} / panel '${String(panel.title)}' / ${String(target.refId)}`;
      out.push({ where, kind: 'panel', sql: rawSql(target, where) });
    }
  }
  const templating = isObj(dashboard.templating) ? dashboard.templating : {};
  for (const variable of list(templating.list)) {
    if (variable.type !== 'query') continue;
    const where = `${file} / variable $${String(variable.name)}`;
    const q = variable.query;
    const sql = typeof q === 'string' ? q : isObj(q) ? rawSql(q, where) : '';
    if (!sql) throw invalidArgument(`${where} has no query`);
    out.push({ where, kind: 'variable', sql });
  }
  const annotations = isObj(dashboard.annotations) ? dashboard.annotations : {};
  for (const a of list(annotations.list)) {
    if (!isObj(a.target)) continue; // Grafana's built-in annotations have no SQL
    const where = `${file} / annotation '${String(a.name)}'`;
    out.push({ where, kind: 'annotation', sql: rawSql(a.target, where) });
  }
  return out;
}

export function queriesOfAlertRules(file: string, provisioning: unknown): ShippedQuery[] {
  if (!isObj(provisioning)) throw invalidArgument(`${file} is not an alert provisioning object`);
  const out: ShippedQuery[] = [];
  for (const group of list(provisioning.groups)) {
    for (const rule of list(group.rules)) {
      for (const q of list(rule.data)) {
        if (q.datasourceUid === '__expr__' || !isObj(q.model)) continue;
        const where = `${file} / rule '${String(rule.title)}' / ${String(q.refId)}`;
        out.push({ where, kind: 'alert-rule', sql: rawSql(q.model, where) });
      }
    }
  }
  return out;
}
