import { invalidArgument } from '@cm/core';

/**
 * Expands a panel's SQL the way Grafana and the ClickHouse data source do before the query reaches
 * ClickHouse, so tests (and `cm` users pasting panel SQL) can run it as-is:
 *
 * 1. Template variables (Grafana, in the browser): `${name}`, `$name`, `[[name]]`, and the formats
 *    `${name:singlequote}`, `${name:sqlstring}`, `${name:csv}`, `${name:raw}`. A multi-value
 *    variable renders like the plugin does: `'a','b'` (quoted, comma-separated) by default.
 * 2. Data-source macros (grafana-clickhouse-datasource, pkg/macros/macros.go), second precision:
 *      $__timeFilter(col)      -> col >= toDateTime(<from s>) AND col <= toDateTime(<to s>)
 *      $__timeFilter_ms(col)   -> col >= fromUnixTimestamp64Milli(<from ms>) AND col <= ...(<to ms>)
 *      $__dateFilter(col)      -> col >= toDate('<from day>') AND col <= toDate('<to day>')
 *      $__fromTime, $__toTime  -> toDateTime(<s>)
 *      $__fromTime_ms, $__toTime_ms -> fromUnixTimestamp64Milli(<ms>)
 *      $__timeInterval(col)    -> toStartOfInterval(toDateTime(col), INTERVAL <interval s> second)
 *      $__interval_s           -> <interval s>
 *    (the _ms forms need DateTime64, which clickhouse-server 18.16 lacks; our panels avoid them).
 *
 * Anything else that looks like a macro or a variable is an error naming it, so a panel that uses
 * something this expander does not know fails its test instead of running half-expanded.
 */
export interface ExpandContext {
  from: Date;
  to: Date;
  /** Grafana's $__interval for the panel (defaults to 60 s). */
  intervalMs?: number;
  /** Template variable values; an array is a multi-value selection. */
  variables?: Record<string, string | string[]>;
}

/** Grafana's built-in variables that the expander fills from the time range. */
function builtins(ctx: ExpandContext): Record<string, string> {
  const intervalMs = Math.max(1, ctx.intervalMs ?? 60_000);
  return {
    __from: String(ctx.from.getTime()),
    __to: String(ctx.to.getTime()),
    __interval_ms: String(intervalMs),
    __interval: `${Math.max(1, Math.round(intervalMs / 1000))}s`,
  };
}

const quote = (v: string): string => `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

function formatValue(name: string, value: string | string[], format: string | undefined): string {
  const values = Array.isArray(value) ? value : [value];
  switch (format) {
    case undefined:
      // A single value goes in verbatim (panels quote it themselves: '${run}'); several are quoted.
      return Array.isArray(value) ? values.map(quote).join(',') : value;
    case 'raw':
      return values.join(',');
    case 'csv':
      return values.join(',');
    case 'singlequote':
      return values.map(quote).join(',');
    case 'sqlstring':
      return values.map((v) => `'${v.replace(/'/g, "''")}'`).join(',');
    default:
      throw invalidArgument(`unsupported variable format ${name}:${format}`, { variable: name, format });
  }
}

export function expandVariables(sql: string, variables: Record<string, string | string[]>): string {
  const lookup = (name: string, format?: string): string => {
    const value = variables[name];
    if (value === undefined)
      throw invalidArgument(`template variable $${name} has no value`, {
        variable: name,
        known: Object.keys(variables),
      });
    return formatValue(name, value, format);
  };
  return sql
    .replace(/\$\{([A-Za-z0-9_]+)(?::([A-Za-z]+))?\}/g, (_, name: string, format?: string) =>
      lookup(name, format),
    )
    .replace(/\[\[([A-Za-z0-9_]+)\]\]/g, (_, name: string) => lookup(name))
    .replace(/\$([A-Za-z_][A-Za-z0-9_]*)(?![A-Za-z0-9_(])/g, (whole, name: string) =>
      name.startsWith('__') ? whole : lookup(name),
    );
}

function toSeconds(d: Date): number {
  return Math.floor(d.getTime() / 1000);
}

const day = (d: Date): string => d.toISOString().slice(0, 10);

export function expandMacros(sql: string, ctx: ExpandContext): string {
  const from = toSeconds(ctx.from);
  const to = toSeconds(ctx.to);
  const intervalS = Math.max(1, Math.floor((ctx.intervalMs ?? 60_000) / 1000));
  const withArg: Record<string, (col: string) => string> = {
    timeFilter: (c) => `${c} >= toDateTime(${from}) AND ${c} <= toDateTime(${to})`,
    timeFilter_ms: (c) =>
      `${c} >= fromUnixTimestamp64Milli(${ctx.from.getTime()}) AND ${c} <= fromUnixTimestamp64Milli(${ctx.to.getTime()})`,
    dateFilter: (c) => `${c} >= toDate('${day(ctx.from)}') AND ${c} <= toDate('${day(ctx.to)}')`,
    timeInterval: (c) => `toStartOfInterval(toDateTime(${c}), INTERVAL ${intervalS} second)`,
  };
  const plain: Record<string, string> = {
    fromTime: `toDateTime(${from})`,
    toTime: `toDateTime(${to})`,
    fromTime_ms: `fromUnixTimestamp64Milli(${ctx.from.getTime()})`,
    toTime_ms: `fromUnixTimestamp64Milli(${ctx.to.getTime()})`,
    interval_s: String(intervalS),
  };
  return sql.replace(
    /\$__([A-Za-z_]+)(\(([^()]*)\))?/g,
    (_whole, name: string, call?: string, arg?: string) => {
      if (call !== undefined) {
        const fn = withArg[name];
        if (!fn)
          throw invalidArgument(`unknown ClickHouse data source macro $__${name}(...)`, { macro: name });
        const column = (arg ?? '').trim().replace(/["']/g, '');
        if (!column) throw invalidArgument(`macro $__${name} needs a column argument`, { macro: name });
        return fn(column);
      }
      if (name in plain) return plain[name];
      if (name in withArg) throw invalidArgument(`macro $__${name} needs a column argument`, { macro: name });
      throw invalidArgument(`unknown ClickHouse data source macro $__${name}`, { macro: name });
    },
  );
}

/** Both steps, in Grafana's order: variables first (browser), then the data source's macros (backend). */
export function expandPanelSql(sql: string, ctx: ExpandContext): string {
  const withVariables = expandVariables(sql, { ...builtins(ctx), ...(ctx.variables ?? {}) });
  return expandMacros(withVariables, ctx);
}
