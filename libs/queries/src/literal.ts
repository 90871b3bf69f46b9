import { sqlIdentifier, sqlNumber, sqlString } from '@cm/store/src/sql';

/**
 * How a value reaches SQL. The store has no query parameters on clickhouse-server 18.16, so every
 * value is written as a literal: a plain string is always escaped (sqlString), a number must be a
 * finite integer (sqlNumber). A `SqlFragment` is SQL written by us, not by a user: the Grafana
 * dashboards pass their template variables (`'${run}'`) and macros (`$__timeFilter(time)`) this way,
 * so the same builder serves Grafana (which interpolates later) and the web view (values now).
 */
export class SqlFragment {
  constructor(readonly sql: string) {}
  toString(): string {
    return this.sql;
  }
}

/** Trusted SQL text (a Grafana variable or macro, a column we chose). Never pass user input here. */
export const raw = (sql: string): SqlFragment => new SqlFragment(sql);

/** A string value: escaped literal, or a fragment left as written. */
export type TextArg = string | SqlFragment;
/** An integer value (step, neuron, limit): checked literal, or a fragment left as written. */
export type IntArg = number | SqlFragment;

export const text = (v: TextArg): string => (v instanceof SqlFragment ? v.sql : sqlString(v));
export const int = (v: IntArg): string => (v instanceof SqlFragment ? v.sql : sqlNumber(v));
/** A list of integers as `a, b, c` (an empty list is refused by the callers). */
export const intList = (vs: readonly number[]): string => vs.map((v) => sqlNumber(v)).join(', ');
/** A list of strings as `'a', 'b'`. */
export const textList = (vs: readonly TextArg[]): string => vs.map(text).join(', ');

/** ` AND <filter>` when a filter is given (the dashboards' `$__timeFilter(time)`), else nothing. */
export const andFilter = (filter: SqlFragment | undefined): string => (filter ? ` AND ${filter.sql}` : '');

export { sqlIdentifier, sqlNumber, sqlString };
