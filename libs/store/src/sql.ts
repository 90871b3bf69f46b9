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

/**
 * Reads, told apart from writes by the statement's first keyword (comments skipped): what a
 * read-only path accepts (`cm sql` without --write, the reader endpoint, on chDB where no server
 * setting enforces it).
 */
const READ_KEYWORDS = new Set(['SELECT', 'WITH', 'SHOW', 'DESCRIBE', 'DESC', 'EXISTS', 'EXPLAIN']);

/** Strip leading whitespace and SQL comments (-- line, block) to find the first keyword. */
function firstKeyword(sql: string): string {
  let s = sql;
  for (;;) {
    const t = s.trimStart();
    if (t.startsWith('--')) {
      const nl = t.indexOf('\n');
      s = nl < 0 ? '' : t.slice(nl + 1);
    } else if (t.startsWith('/*')) {
      const end = t.indexOf('*/');
      s = end < 0 ? '' : t.slice(end + 2);
    } else {
      s = t;
      break;
    }
  }
  return (/^[A-Za-z]+/.exec(s)?.[0] ?? '').toUpperCase();
}

/** The reason a statement is not a read, or undefined when it is one. */
export function notAReadStatement(sql: string): string | undefined {
  const keyword = firstKeyword(sql);
  if (!READ_KEYWORDS.has(keyword))
    return keyword
      ? `${keyword} is not a read: only SELECT, WITH, SHOW, DESCRIBE, EXISTS and EXPLAIN run here`
      : 'the statement is empty';
  return undefined;
}
