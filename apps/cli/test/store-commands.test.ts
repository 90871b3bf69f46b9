import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '@cm/store';
import { alertRecord, sampleRun } from '../../../libs/store/test/fixtures';
import { cmWith } from './run-cm';

/** `cm sql` and `cm runs` as a user runs them (subprocess) on an embedded chDB store. */
const dir = mkdtempSync(join(tmpdir(), 'cm-cli-store-'));

const cm = cmWith({ CM_CHDB_PATH: join(dir, 'store'), CM_CLICKHOUSE_DATABASE: 'cm_cli' });

beforeAll(async () => {
  // fill the store in this process, then release the chDB folder for the subprocesses
  const store = await openStore({ kind: 'chdb', path: join(dir, 'store'), database: 'cm_cli' });
  await store.migrate();
  await store.insertRecords([
    ...sampleRun('run-a', 2),
    ...sampleRun('run-b', 3),
    alertRecord('run-b', 'resolved', 300),
  ]);
  await store.close();
  const { drainPending } = await import('chdb');
  await drainPending();
}, 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('cm sql / cm runs on chDB', () => {
  it('prints a table, CSV and JSON, one row per neuron with FINAL', async () => {
    const q =
      "SELECT layer, count() AS neurons FROM neuron_labels FINAL WHERE run_id = 'run-a' AND step = 100 GROUP BY layer ORDER BY layer";
    const table = await cm(['sql', q]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/layer\s*│\s*neurons/);
    expect(table.stdout).toMatch(/2 rows/);
    const csv = await cm(['sql', q, '--format', 'csv']);
    expect(csv.stdout.trim().split('\n')).toEqual(['"layer","neurons"', '"block.1/conv\'2",4', '"fc",3']);
    const json = await cm(['sql', q, '--format', 'json']);
    expect(JSON.parse(json.stdout)).toEqual([
      { layer: "block.1/conv'2", neurons: 4 },
      { layer: 'fc', neurons: 3 },
    ]);
  }, 60_000);

  it('lists runs with last step and health', async () => {
    const r = await cm(['runs', '--json']);
    expect(r.code).toBe(0);
    const runs = JSON.parse(r.stdout) as Record<string, unknown>[];
    const byId = Object.fromEntries(runs.map((x) => [x.run_id, x]));
    expect(byId['run-a']).toMatchObject({ health: 'alerting', firing_rules: 'diversity_drop' });
    expect(Number(byId['run-a'].last_step)).toBe(100);
    expect(byId['run-b']).toMatchObject({ health: 'ok' });
    expect(Number(byId['run-b'].last_step)).toBe(200);
  }, 60_000);

  it('reports a bad query or format in one line', async () => {
    const bad = await cm(['sql', 'SELECT * FROM no_such_table']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.trim().split('\n')[0]).toMatch(/^cm: error: query failed on chdb .*no_such_table/);
    const fmt = await cm(['sql', 'SELECT 1', '--format', 'xml']);
    expect(fmt.stderr.trim()).toBe('cm: error: unknown --format xml (use one of table, csv, json)');
  }, 60_000);
});
