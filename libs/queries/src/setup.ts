/**
 * Whether two runs were scored the same way: the setup each run records (runs.setup_*,
 * concept_set_hash, clip_model; migration 3, written by libs/engine setup.ts). `cm report --compare`
 * and the web view's compare page both warn from this, so they name the same differences.
 */
import { TABLES } from '@cm/contracts';
import type { Store } from '@cm/store';
import { text, type TextArg } from './literal';
import { hasColumnSql } from './questions';

/** The setup columns of the runs table, with the words a reader sees. */
export const SETUP_FIELDS = [
  { column: 'setup_method', label: 'method', opaque: false },
  { column: 'setup_params', label: 'parameters', opaque: true },
  { column: 'setup_pooling', label: 'pooling', opaque: false },
  { column: 'setup_calibration', label: 'calibration', opaque: false },
  { column: 'concept_set_hash', label: 'concept set', opaque: true },
  { column: 'clip_model', label: 'CLIP model', opaque: false },
] as const;

export type SetupColumn = (typeof SETUP_FIELDS)[number]['column'];

export interface SetupDifference {
  column: SetupColumn;
  label: string;
  /** The two runs' values, in the order asked. */
  a: string;
  b: string;
  /** In words: "method soft_wpmi vs wpmi"; for a hash or JSON parameters only the name. */
  text: string;
}

/** Both runs' setups. */
export const runSetupsSql = (a: { runA: TextArg; runB: TextArg }): string =>
  `SELECT run_id, ${SETUP_FIELDS.map((f) => f.column).join(', ')} FROM ${TABLES.runs} FINAL WHERE run_id IN (${text(a.runA)}, ${text(a.runB)})`;

/**
 * Where two setups differ. Nothing when either is missing or predates the setup columns (an empty
 * setup_method): an unknown setup is not reported as a different one.
 */
export function compareSetups(
  x: Partial<Record<string, unknown>> | undefined,
  y: Partial<Record<string, unknown>> | undefined,
): SetupDifference[] {
  if (!x || !y || !x.setup_method || !y.setup_method) return [];
  const s = (v: unknown): string => (v === null || v === undefined ? '' : String(v));
  return SETUP_FIELDS.filter((f) => s(x[f.column]) !== s(y[f.column])).map((f) => {
    const a = s(x[f.column]);
    const b = s(y[f.column]);
    return {
      column: f.column,
      label: f.label,
      a,
      b,
      text: f.opaque ? f.label : `${f.label} ${a || '-'} vs ${b || '-'}`,
    };
  });
}

/** The store's answer to "were these runs scored the same way?" (empty: yes, or not known). */
export async function runSetupDifferences(
  store: Pick<Store, 'query'>,
  runA: string,
  runB: string,
): Promise<SetupDifference[]> {
  const [present] = await store.query<{ n: unknown }>(
    hasColumnSql({ table: TABLES.runs, column: 'setup_method' }),
  );
  if (Number(present?.n ?? 0) === 0) return [];
  const rows = await store.query<Record<string, unknown>>(runSetupsSql({ runA, runB }));
  return compareSetups(
    rows.find((r) => r.run_id === runA),
    rows.find((r) => r.run_id === runB),
  );
}
