import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@cm/core';
import { startClickHouse, type ManagedServer } from '@cm/stack';
import {
  assertExportFormatSupported,
  exportRun,
  openStore,
  RUN_TABLES,
  runTableSql,
  startReaderEndpoint,
  thinLabels,
  type ReaderEndpoint,
  type ThinningRecord,
  type Store,
} from '@cm/store';
import { alertRecord, sampleRun } from '../../../libs/store/test/fixtures';
import { cmWith } from './run-cm';

/** `cm export` as a user runs it (subprocess) on an embedded chDB store filled by the fixtures. */
const dir = mkdtempSync(join(tmpdir(), 'cm-cli-export-'));
const DB = 'cm_export';
const cm = cmWith({ CM_CHDB_PATH: join(dir, 'store'), CM_CLICKHOUSE_DATABASE: DB });
/** rows per table of run-a, counted in the store itself (FINAL), before any export */
const expected: Record<string, number> = {};
/** run-a is thinned once recorded (label_thinning gets its record): steps 0-300 keep every 3rd. */
const RETENTION = { fullDays: 0, fullCheckpoints: 1, keepEvery: 3 };
const RUN_A = (): ReturnType<typeof sampleRun> => [
  ...sampleRun('run-a', 5),
  alertRecord('run-a', 'resolved', 300),
];
let thinning: ThinningRecord;

beforeAll(async () => {
  const store = await openStore({ kind: 'chdb', path: join(dir, 'store'), database: DB });
  await store.migrate();
  await store.insertRecords([
    ...RUN_A(),
    ...sampleRun('run-b', 2), // another run: must not leak into run-a's files
  ]);
  const { records } = await thinLabels(store, RETENTION, { run: 'run-a' });
  thinning = records[0];
  await thinLabels(store, RETENTION, { run: 'run-b' }); // must not leak either
  for (const table of RUN_TABLES) {
    const [row] = await store.query<{ n: string }>(
      `SELECT count() AS n FROM (${runTableSql(DB, table, 'run-a')})`,
    );
    expected[table] = Number(row.n);
  }
  await store.close();
  const { drainPending } = await import('chdb');
  await drainPending();
}, 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('cm export', () => {
  it('the fixtures give run-a rows in every table', () => {
    for (const table of RUN_TABLES)
      expect({ table, some: expected[table] > 0 }).toEqual({ table, some: true });
  });

  it('writes one CSVWithNames file per table: a header and one line per row', async () => {
    const out = join(dir, 'csv');
    const r = await cm(['export', '--run', 'run-a', '--format', 'csv', '--out', out]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(readdirSync(out).sort()).toEqual(RUN_TABLES.map((t) => `${t}.csv`).sort());
    for (const table of RUN_TABLES) {
      const lines = readFileSync(join(out, `${table}.csv`), 'utf8')
        .trimEnd()
        .split('\n');
      expect({ table, lines: lines.length }).toEqual({ table, lines: expected[table] + 1 });
      expect(lines[0]).toMatch(/"run_id"/);
      expect(lines.slice(1).every((l) => l.includes('"run-a"'))).toBe(true);
      expect(r.stdout).toContain(`${table}: ${expected[table]} row`);
    }
  }, 60_000);

  it("label_thinning.csv says which steps' labels retention removed", async () => {
    expect(thinning).toMatchObject({ afterStep: -1, throughStep: 300, keepEvery: 3, stepsRemoved: 1 });
    const out = join(dir, 'csv');
    const [header, ...rows] = readFileSync(join(out, 'label_thinning.csv'), 'utf8').trimEnd().split('\n');
    const cols = header.split(',').map((c) => JSON.parse(c) as string);
    expect(rows).toHaveLength(1);
    const row = Object.fromEntries(rows[0].split(',').map((v, i) => [cols[i], v.replace(/^"|"$/g, '')]));
    expect(row).toMatchObject({
      run_id: 'run-a',
      after_step: '-1',
      through_step: '300',
      keep_every: '3',
      steps_removed: '1',
      rows_removed: String(thinning.rowsRemoved),
    });
    // the removed step (200) is absent from neuron_labels.csv, every step is in layer_metrics.csv
    const steps = (table: string): Set<string> => {
      const [h, ...lines] = readFileSync(join(out, `${table}.csv`), 'utf8')
        .trimEnd()
        .split('\n');
      const at = h.split(',').indexOf('"step"');
      return new Set(lines.map((l) => l.split(',')[at]));
    };
    expect([...steps('neuron_labels')].sort()).toEqual(['0', '100', '300', '400']);
    expect([...steps('layer_metrics')].sort()).toEqual(['0', '100', '200', '300', '400']);
  }, 60_000);

  it('writes Parquet files that read back with the same row counts', async () => {
    const out = join(dir, 'parquet');
    const r = await cm(['export', '--run', 'run-a', '--format', 'parquet', '--out', out]);
    expect(r.code).toBe(0);
    const { query } = await import('chdb');
    for (const table of RUN_TABLES) {
      const path = join(out, `${table}.parquet`);
      const bytes = readFileSync(path);
      // Parquet files begin and end with the magic PAR1
      expect(bytes.subarray(0, 4).toString('latin1')).toBe('PAR1');
      expect(bytes.subarray(bytes.length - 4).toString('latin1')).toBe('PAR1');
      const back = JSON.parse(
        query(
          `SELECT count() AS n, countIf(run_id = 'run-a') AS a FROM file('${path}', Parquet)`,
          'JSONEachRow',
        ),
      ) as { n: string | number; a: string | number };
      expect({ table, n: Number(back.n), a: Number(back.a) }).toEqual({
        table,
        n: expected[table],
        a: expected[table],
      });
    }
  }, 60_000);

  it('an unknown run is an error and writes nothing', async () => {
    const out = join(dir, 'nothing');
    const r = await cm(['export', '--run', 'no-such-run', '--format', 'csv', '--out', out]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('no run no-such-run');
    expect(existsSync(out)).toBe(false);
  }, 60_000);

  it('an unknown format is refused before the store is opened', async () => {
    const out = join(dir, 'xlsx');
    const r = await cm(['export', '--run', 'run-a', '--format', 'xlsx', '--out', out]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unknown --format xlsx.*csv, parquet/s);
    expect(existsSync(out)).toBe(false);
  }, 60_000);

  it('refuses Parquet on ClickHouse 18.16, naming the version and suggesting csv', () => {
    expect(() => assertExportFormatSupported({ serverVersion: '18.16.1' }, 'parquet')).toThrow(
      expect.objectContaining({
        message: 'ClickHouse 18.16.1 cannot write Parquet',
        hint: expect.stringContaining('--format csv'),
      }),
    );
    expect(() => assertExportFormatSupported({ serverVersion: '18.16.1' }, 'csv')).not.toThrow();
    expect(() => assertExportFormatSupported({ serverVersion: '25.8.1.1' }, 'parquet')).not.toThrow();
  });
});

describe('cm export from clickhouse-server 18.16', () => {
  let server: ManagedServer | undefined;
  let url = '';

  beforeAll(async () => {
    server = await startClickHouse({
      dir: join(dir, 'server'),
      httpPort: await freePort(),
      tcpPort: await freePort(),
    });
    url = `${server.url}/?database=${DB}`;
    const store = await openStore({
      kind: 'server',
      url: server.url,
      user: 'default',
      password: '',
      database: DB,
    });
    await store.migrate();
    await store.insertRecords(RUN_A());
    await thinLabels(store, RETENTION, { run: 'run-a' });
    expect(store.serverVersion).toMatch(/^18\.16\./);
    await store.close();
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
  });

  it('exports CSV', async () => {
    const out = join(dir, 'server-csv');
    const r = await cm(['export', '--run', 'run-a', '--format', 'csv', '--out', out, '--store', url]);
    expect(r.code).toBe(0);
    const runs = readFileSync(join(out, 'runs.csv'), 'utf8').trimEnd().split('\n');
    expect(runs).toHaveLength(2);
    const labels = readFileSync(join(out, 'neuron_labels.csv'), 'utf8').trimEnd().split('\n');
    expect(labels.length - 1).toBe(expected.neuron_labels); // same fixture, same rows as on chDB
    const thinned = readFileSync(join(out, 'label_thinning.csv'), 'utf8').trimEnd().split('\n');
    expect(thinned).toHaveLength(2);
    expect(thinned[1]).toMatch(/^"run-a",-1,300,3,/);
  }, 60_000);

  it('refuses Parquet with the version and the csv hint, writing nothing', async () => {
    const out = join(dir, 'server-parquet');
    const r = await cm(['export', '--run', 'run-a', '--format', 'parquet', '--out', out, '--store', url]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/ClickHouse 18\.16\.\S+ cannot write Parquet/);
    expect(r.stderr).toContain('--format csv');
    expect(existsSync(out)).toBe(false);
  }, 60_000);
});

describe('cm export while another process writes the chDB folder', () => {
  // this test process holds the folder and serves reads, as `cm demo` does: Parquet bytes travel
  // through the reader endpoint's binary mode untouched
  const held = join(dir, 'held');
  let store: Store;
  let endpoint: ReaderEndpoint;

  beforeAll(async () => {
    store = await openStore({ kind: 'chdb', path: held, database: DB });
    await store.migrate();
    await store.insertRecords(sampleRun('held-run', 2));
    endpoint = await startReaderEndpoint(store, { writer: 'cm test-writer' });
  }, 60_000);
  afterAll(async () => {
    await endpoint?.close();
    await store?.close();
  });

  it('exports Parquet through the writer, byte for byte what the store renders', async () => {
    const out = join(dir, 'held-parquet');
    const r = await cm(['export', '--run', 'held-run', '--format', 'parquet', '--out', out], {
      CM_CHDB_PATH: held,
    });
    expect(r.stderr).toContain('served by cm test-writer');
    expect(r.code).toBe(0);
    const direct = await store.queryBinary(runTableSql(DB, 'layer_metrics', 'held-run'), 'Parquet');
    expect(direct.subarray(0, 4).toString('latin1')).toBe('PAR1');
    expect(readFileSync(join(out, 'layer_metrics.parquet')).equals(direct)).toBe(true);
  }, 60_000);
});

describe('cm export of a store made before label_thinning (migration 5)', () => {
  it('exports the other tables and no label_thinning file', async () => {
    const store = await openStore({ kind: 'chdb', path: join(dir, 'old'), database: DB });
    try {
      await store.migrate();
      await store.insertRecords(sampleRun('old-run', 2));
      await store.execute(`DROP TABLE ${DB}.label_thinning`);
      const tables = await exportRun(store, 'old-run', 'csv');
      expect(tables.map((t) => t.table)).toEqual(RUN_TABLES.filter((t) => t !== 'label_thinning'));
      expect(tables.every((t) => t.rows > 0 || t.table === 'alerts')).toBe(true);
    } finally {
      await store.close();
    }
  }, 60_000);
});
