import { expandMacros, expandPanelSql, expandVariables } from '../src';

const ctx = { from: new Date('2024-05-01T10:00:00.000Z'), to: new Date('2024-05-01T12:30:00.500Z') };
const FROM = 1714557600;
const TO = 1714566600;

describe('expandMacros (grafana-clickhouse-datasource semantics)', () => {
  it('expands the time macros with second precision', () => {
    expect(expandMacros('WHERE $__timeFilter(time)', ctx)).toBe(
      `WHERE time >= toDateTime(${FROM}) AND time <= toDateTime(${TO})`,
    );
    expect(expandMacros('$__fromTime..$__toTime', ctx)).toBe(`toDateTime(${FROM})..toDateTime(${TO})`);
    expect(expandMacros('$__dateFilter(d)', ctx)).toBe(
      "d >= toDate('2024-05-01') AND d <= toDate('2024-05-01')",
    );
    expect(expandMacros('$__timeFilter_ms(t)', ctx)).toBe(
      't >= fromUnixTimestamp64Milli(1714557600000) AND t <= fromUnixTimestamp64Milli(1714566600500)',
    );
    expect(expandMacros('$__timeInterval(time) / $__interval_s', { ...ctx, intervalMs: 30_000 })).toBe(
      'toStartOfInterval(toDateTime(time), INTERVAL 30 second) / 30',
    );
  });
  it('strips quotes from macro arguments like the plugin', () => {
    expect(expandMacros("$__timeFilter('time')", ctx)).toBe(
      `time >= toDateTime(${FROM}) AND time <= toDateTime(${TO})`,
    );
  });
  it('refuses unknown macros and missing arguments, naming them', () => {
    expect(() => expandMacros('$__conditionalAll(x, $y)', ctx)).toThrow(/\$__conditionalAll/);
    expect(() => expandMacros('$__bogus', ctx)).toThrow(/unknown ClickHouse data source macro \$__bogus/);
    expect(() => expandMacros('$__timeFilter', ctx)).toThrow(/needs a column argument/);
  });
});

describe('expandVariables (Grafana interpolation)', () => {
  it('supports ${x}, $x, [[x]] and the sql formats; multi-values are quoted lists', () => {
    const vars = { run: 'r1', layers: ['conv1', 'conv2'], odd: "it's" };
    expect(expandVariables("run_id = '${run}' AND run_id = '$run' AND x = '[[run]]'", vars)).toBe(
      "run_id = 'r1' AND run_id = 'r1' AND x = 'r1'",
    );
    expect(expandVariables('layer IN (${layers})', vars)).toBe("layer IN ('conv1','conv2')");
    expect(expandVariables('${layers:csv}', vars)).toBe('conv1,conv2');
    expect(expandVariables('${odd:singlequote}', vars)).toBe("'it\\'s'");
    expect(expandVariables('${odd:sqlstring}', vars)).toBe("'it''s'");
    expect(expandVariables('$__timeFilter(time)', vars)).toBe('$__timeFilter(time)');
  });
  it('refuses a variable without value and an unknown format', () => {
    expect(() => expandVariables("'${missing}'", {})).toThrow(/template variable \$missing has no value/);
    expect(() => expandVariables('${run:json}', { run: 'x' })).toThrow(
      /unsupported variable format run:json/,
    );
  });
});

describe('expandPanelSql', () => {
  it('expands variables first, then macros, and knows Grafana built-ins', () => {
    const sql = "SELECT ${__from} AS f WHERE run_id = '${run}' AND $__timeFilter(time)";
    expect(expandPanelSql(sql, { ...ctx, variables: { run: 'r' } })).toBe(
      `SELECT 1714557600000 AS f WHERE run_id = 'r' AND time >= toDateTime(${FROM}) AND time <= toDateTime(${TO})`,
    );
  });
});
