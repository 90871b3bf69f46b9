import { invalidArgument } from '@cm/core';

/**
 * SQL literals for the few queries that need one (a run id in a WHERE clause). Inserts never build
 * SQL from values: they go through the client's JSONEachRow body. Query parameters
 * ({name:Type}) would be nicer but clickhouse-server 18.16 has none, so literals are escaped here.
 *
 * ClickHouse string literals: backslash escapes are honoured inside '...', so both the backslash and
 * the quote are escaped, and control bytes are written as escapes so a literal stays on one line.
 */
export function sqlString(value: string): string {
  let out = "'";
  for (const ch of value) {
    switch (ch) {
      case '\\':
        out += '\\\\';
        break;
      case "'":
        out += "\\'";
        break;
      case '\n':
        out += '\\n';
        break;
      case '\r':
        out += '\\r';
        break;
      case '\t':
        out += '\\t';
        break;
      case '\0':
        out += '\\0';
        break;
      default:
        out += ch;
    }
  }
  return out + "'";
}

/** A number literal; refuses NaN/Infinity and non-integers where an integer is expected. */
export function sqlNumber(value: number, integer = true): string {
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw invalidArgument(`not a valid ${integer ? 'integer' : 'number'} for SQL: ${value}`, { value });
  }
  return String(value);
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A database or table name, back-quoted. Only plain identifiers are accepted (config validates the same). */
export function sqlIdentifier(name: string): string {
  if (!IDENTIFIER.test(name)) {
    throw invalidArgument(
      `not a valid ClickHouse identifier: ${JSON.stringify(name)}`,
      { name },
      'use letters, digits and _ only',
    );
  }
  return '`' + name + '`';
}
