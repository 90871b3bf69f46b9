import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@cm/core';
import { startClickHouse, type ManagedServer } from '@cm/stack';
import {
  assertExportFormatSupported,
  openStore,
  RUN_TABLES,
  runTableSql,
  startReaderEndpoint,
  type ReaderEndpoint,
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

beforeAll(async () => {
  const store = await openStore({ kind: 'chdb', path: join(dir, 'store'), database: DB });
  await store.migrate();
  await store.insertRecords([
    ...sampleRun('run-a', 3),
    alertRecord('run-a', 'resolved', 300),
    ...sampleRun('run-b', 2), // another run: must not leak into run-a's files
  ]);
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
    await store.insertRecords(sampleRun('run-a', 3));
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
