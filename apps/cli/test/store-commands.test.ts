import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@cm/core';
import { stackDown, stackUp } from '@cm/stack';
import { openStore, readerAdvertFile, startReaderEndpoint, type ReaderEndpoint, type Store } from '@cm/store';
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
    ...sampleRun('run-doomed', 3),
    ...sampleRun('run-long', 6), // label retention: `cm runs thin`
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
    const lines = bad.stderr.trim().split('\n');
    expect(lines[0]).toBe(`store: chdb ${join(dir, 'store')} (database cm_cli)`);
    expect(lines[1]).toMatch(/^cm: error: query failed on chdb .*no_such_table/);
    const fmt = await cm(['sql', 'SELECT 1', '--format', 'xml']);
    expect(fmt.stderr.trim()).toBe('cm: error: unknown --format xml (use one of table, csv, json)');
  }, 60_000);
});

describe('cm sql is read-only unless --write', () => {
  it('refuses DROP TABLE runs and the store stays intact; --write runs a statement; the next migration mends a dropped table', async () => {
    const runsBefore = JSON.parse((await cm(['runs', '--json'])).stdout) as unknown[];
    const drop = await cm(['sql', 'DROP TABLE runs']);
    expect(drop.code).not.toBe(0);
    expect(drop.stderr.trim()).toBe(
      'cm: error: DROP is not a read: only SELECT, WITH, SHOW, DESCRIBE, EXISTS and EXPLAIN run here (cm sql is read-only; pass --write to change the store)',
    );
    const sneaky = await cm(['sql', '/* SELECT */ ALTER TABLE runs DELETE WHERE 1']);
    expect(sneaky.stderr).toMatch(/cm: error: ALTER is not a read/);
    expect(JSON.parse((await cm(['runs', '--json'])).stdout)).toEqual(runsBefore);

    const written = await cm(['sql', '--write', 'CREATE TABLE scratch (a UInt8) ENGINE = Memory']);
    expect({ code: written.code, out: written.stdout }).toEqual({ code: 0, out: 'ok: the statement ran\n' });
    const dropped = await cm(['sql', '--write', 'DROP TABLE scratch']);
    expect(dropped.code).toBe(0);
    const tables = await cm([
      'sql',
      "SELECT name FROM system.tables WHERE database = 'cm_cli' AND name = 'scratch'",
      '--format',
      'json',
    ]);
    expect(JSON.parse(tables.stdout)).toEqual([]);
  }, 60_000);
});

describe('cm runs close | delete', () => {
  it('closes a run its trainer left running, and deletes a run with every row after confirmation', async () => {
    const status = async (id: string) =>
      (JSON.parse((await cm(['runs', '--json'])).stdout) as { run_id: string; status: string }[]).find(
        (r) => r.run_id === id,
      )?.status;
    expect(await status('run-doomed')).toBe('running');
    const closed = await cm(['runs', 'close', 'run-doomed']);
    expect(closed.code).toBe(0);
    expect(closed.stdout).toMatch(/^run run-doomed: failed at \d{4}-\d\d-\d\dT/);
    expect(await status('run-doomed')).toBe('failed');
    expect((await cm(['runs', 'close', 'run-doomed', '--status', 'completed'])).code).toBe(0);
    expect(await status('run-doomed')).toBe('completed');
    const unknown = await cm(['runs', 'close', 'no-such-run']);
    expect(unknown.stderr).toMatch(/cm: error: no run no-such-run in the store/);

    // no terminal to ask on and no --yes: nothing is deleted
    const refused = await cm(['runs', 'delete', 'run-doomed']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/refusing to delete without confirmation \(pass --yes/);
    expect(await status('run-doomed')).toBe('completed');
    const deleted = await cm(['runs', 'delete', 'run-doomed', '--yes']);
    expect(deleted.code).toBe(0);
    expect(deleted.stdout).toMatch(
      /^run run-doomed deleted \(1 runs, 3 checkpoints, 21 neuron_labels, 6 layer_metrics, 1 alerts\)/,
    );
    expect(await status('run-doomed')).toBeUndefined();
    const left = await cm([
      'sql',
      "SELECT (SELECT count() FROM neuron_labels WHERE run_id = 'run-doomed') + (SELECT count() FROM checkpoints WHERE run_id = 'run-doomed') AS n",
      '--format',
      'json',
    ]);
    expect(JSON.parse(left.stdout)).toEqual([{ n: 0 }]);
    // the other runs are untouched
    expect(await status('run-a')).toBeDefined();
    expect(await status('run-b')).toBe('running');
  }, 90_000);
});

describe('cm runs thin', () => {
  // the fixtures' rows are of January 2026: older than a day by now
  const policy = { CM_LABELS_FULL_DAYS: '1', CM_LABELS_KEEP_EVERY: '2' };
  const labelSteps = async (run: string): Promise<number[]> =>
    (
      JSON.parse(
        (
          await cm([
            'sql',
            `SELECT DISTINCT step FROM neuron_labels FINAL WHERE run_id = '${run}' ORDER BY step`,
            '--format',
            'json',
          ])
        ).stdout,
      ) as { step: number }[]
    ).map((r) => r.step);

  it('off by default: says how to turn it on', async () => {
    const r = await cm(['runs', 'thin', '--run', 'run-long']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/cm: error: label thinning is off/);
    expect(r.stderr).toMatch(/CM_LABELS_KEEP_EVERY/);
  }, 60_000);

  it('--dry-run prints the plan and changes nothing; then a pass thins, cm runs says so, a rerun is a no-op', async () => {
    const dry = await cm(['runs', 'thin', '--dry-run', '--run', 'run-long'], policy);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('policy: labels older than 1 day: every 2nd checkpoint kept');
    // steps 0..500; 500 is the last; ordinals 0, 2, 4 and the alert step 100 stay
    expect(dry.stdout).toContain(
      'run-long: steps 0..400 decided, 4 kept: would remove the labels of 1 steps',
    );
    expect(dry.stdout).toContain('dry run: nothing changed');
    expect(await labelSteps('run-long')).toEqual([0, 100, 200, 300, 400, 500]);

    const thin = await cm(['runs', 'thin', '--run', 'run-long'], policy);
    expect(thin.code).toBe(0);
    expect(thin.stdout).toContain(
      'run-long: steps 0..400 decided, 4 kept: removed the labels of 1 steps (7 rows)',
    );
    expect(await labelSteps('run-long')).toEqual([0, 100, 200, 400, 500]);
    const metrics = await cm([
      'sql',
      "SELECT count() AS n FROM layer_metrics FINAL WHERE run_id = 'run-long'",
      '--format',
      'json',
    ]);
    expect(JSON.parse(metrics.stdout)).toEqual([{ n: 12 }]);

    const runs = JSON.parse((await cm(['runs', '--json'])).stdout) as { run_id: string; thinned: string }[];
    expect(runs.find((r) => r.run_id === 'run-long')!.thinned).toBe(
      'labels: every 2nd checkpoint up to step 400',
    );
    expect(runs.find((r) => r.run_id === 'run-a')!.thinned).toBe('');
    expect((await cm(['runs'])).stdout).toContain('labels: every 2nd checkpoint up to step 400');

    const again = await cm(['runs', 'thin', '--run', 'run-long'], policy);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('nothing to thin');
    expect(await labelSteps('run-long')).toEqual([0, 100, 200, 400, 500]);
  }, 90_000);

  it('refuses a bad value, naming it', async () => {
    const r = await cm(['runs', 'thin', '--keep-every', 'x', '--full-days', '1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/CM_LABELS_KEEP_EVERY/);
  }, 60_000);
});

describe('which store a reading command reads', () => {
  it('a --store folder that does not exist is an error, and nothing is created', async () => {
    const missing = join(dir, 'typo-store');
    for (const args of [
      ['sql', 'SELECT 1', '--store', missing],
      ['runs', '--store', missing],
    ]) {
      const r = await cm(args);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`cm: error: no store at ${missing} (--store)`);
      expect(existsSync(missing)).toBe(false);
    }
  }, 60_000);

  it('no embedded store yet: an error that says how to make one, and no folder made', async () => {
    const home = mkdtempSync(join(tmpdir(), 'cm-cli-home-'));
    try {
      const r = await cm(['runs'], { CM_HOME: home, CM_CHDB_PATH: '' });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`no store at ${join(home, 'store')}`);
      expect(r.stderr).toContain('cm demo');
      expect(readdirSync(home)).toEqual([]);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }, 60_000);

  it('says which store it read', async () => {
    const r = await cm(['sql', 'SELECT 1 AS one', '--format', 'csv']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(`store: chdb ${join(dir, 'store')} (database cm_cli)\n`);
  }, 60_000);
});

describe('reads while another process writes the chDB folder', () => {
  // this test process is the writer: it holds the folder (chDB: one process per folder) and serves
  // reads exactly as `cm demo` / `cm train` do (openMonitor -> startReaderEndpoint)
  const held = join(dir, 'held');
  let store: Store;
  let endpoint: ReaderEndpoint;
  const heldCm = cmWith({ CM_CHDB_PATH: held, CM_CLICKHOUSE_DATABASE: 'cm_cli' });

  beforeAll(async () => {
    store = await openStore({ kind: 'chdb', path: held, database: 'cm_cli' });
    await store.migrate();
    await store.insertRecords(sampleRun('held-run', 2));
    endpoint = await startReaderEndpoint(store, { writer: 'cm test-writer' });
  }, 60_000);
  afterAll(async () => {
    await endpoint?.close();
    await store?.close();
  });

  it('cm sql and cm runs answer through the writer, and say so', async () => {
    const r = await heldCm([
      'sql',
      "SELECT count() AS n FROM neuron_labels FINAL WHERE run_id = 'held-run'",
      '--format',
      'json',
    ]);
    expect(r.stderr).toBe(`store: chdb ${held} (served by cm test-writer, pid ${process.pid})\n`);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([{ n: 14 }]);
    const csv = await heldCm(['sql', "SELECT 'a,b' AS s", '--format', 'csv']);
    expect(csv.stdout.trim().split('\n')).toEqual(['"s"', '"a,b"']);
    const runs = await heldCm(['runs', '--json']);
    expect(runs.code).toBe(0);
    expect((JSON.parse(runs.stdout) as { run_id: string }[]).map((x) => x.run_id)).toEqual(['held-run']);
    // rows written after the reader started are there too: it reads the live store
    await store.insertRecords(sampleRun('held-run-2', 1));
    const later = await heldCm(['sql', 'SELECT count() AS n FROM runs FINAL', '--format', 'json']);
    expect(JSON.parse(later.stdout)).toEqual([{ n: 2 }]);
  }, 60_000);

  it('refuses anything but a read, and a request without the token', async () => {
    for (const sql of [
      'DROP TABLE runs',
      "INSERT INTO runs (run_id) VALUES ('x')",
      '/* c */ ALTER TABLE runs DELETE WHERE 1',
    ]) {
      const r = await heldCm(['sql', sql]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/cm: error: (DROP|INSERT|ALTER) is not a read/);
    }
    const [{ n }] = await store.query<{ n: number }>('SELECT count() AS n FROM runs FINAL');
    expect(Number(n)).toBe(2);
    const res = await fetch(`http://127.0.0.1:${endpoint.port}/query`, {
      method: 'POST',
      body: JSON.stringify({ sql: 'SELECT 1', mode: 'rows' }),
    });
    expect(res.status).toBe(401);
  }, 60_000);

  it('cm runs thin through a writer is refused, naming it (the writer thins its own folder)', async () => {
    const r = await heldCm(['runs', 'thin'], { CM_LABELS_FULL_DAYS: '1', CM_LABELS_KEEP_EVERY: '2' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/cm test-writer/);
    const [{ n }] = await store.query<{ n: number }>(
      "SELECT count() AS n FROM neuron_labels FINAL WHERE run_id = 'held-run'",
    );
    expect(Number(n)).toBe(14);
  }, 60_000);

  it('a stale advertisement (its process is gone) is ignored', async () => {
    const stale = join(dir, 'stale');
    mkdirSync(stale); // an empty folder: chDB makes its files on the first open
    const gone = spawn(process.execPath, ['-e', '0']);
    const deadPid = await new Promise<number>((ok) => gone.on('exit', () => ok(gone.pid!)));
    writeFileSync(
      readerAdvertFile(stale),
      JSON.stringify({
        pid: deadPid,
        port: 1,
        token: 'x',
        writer: 'cm demo',
        path: stale,
        database: 'cm_cli',
      }),
    );
    const r = await cmWith({ CM_CHDB_PATH: stale, CM_CLICKHOUSE_DATABASE: 'cm_cli' })([
      'sql',
      'SELECT 41 + 1 AS answer',
      '--format',
      'csv',
    ]);
    expect(r.stderr).toBe(`store: chdb ${stale} (database cm_cli)\n`);
    expect(r.stdout.trim().split('\n')).toEqual(['"answer"', '42']);
  }, 60_000);
});

describe('cm train writing, cm sql reading in a second process', () => {
  it('reads through the writer while it trains; the advertisement goes when it ends', async () => {
    const home = mkdtempSync(join(tmpdir(), 'cm-cli-train-'));
    const env = { ...process.env, CM_HOME: home, CM_CHDB_PATH: '', CM_LOG_LEVEL: 'warn' };
    const train = spawn(
      process.execPath,
      [
        join(__dirname, '..', 'bin', 'cm.js'),
        'train',
        '--steps',
        '160',
        '--every',
        '10',
        '--count',
        '240',
        '--probe-images',
        '120',
        '--run-id',
        'read-while-training',
      ],
      { env, stdio: 'ignore' },
    );
    const exited = new Promise<number | null>((ok) => train.on('exit', (code) => ok(code)));
    const reader = cmWith({ CM_HOME: home, CM_CHDB_PATH: '' });
    try {
      const advert = readerAdvertFile(join(home, 'store'));
      const deadline = Date.now() + 90_000;
      let rows: { n: number }[] = [];
      let stderr = '';
      // the first checkpoints land within seconds; ask until one is there, while training goes on
      while (Date.now() < deadline && train.exitCode === null) {
        if (existsSync(advert)) {
          const r = await reader([
            'sql',
            "SELECT count() AS n FROM checkpoints FINAL WHERE run_id = 'read-while-training'",
            '--format',
            'json',
          ]);
          if (r.code === 0 && (JSON.parse(r.stdout) as { n: number }[])[0].n > 0) {
            rows = JSON.parse(r.stdout) as { n: number }[];
            stderr = r.stderr;
            break;
          }
        }
        await new Promise((ok) => setTimeout(ok, 500));
      }
      expect(train.exitCode).toBeNull(); // still training when the answer came
      expect(rows[0]?.n).toBeGreaterThan(0);
      expect(stderr).toBe(`store: chdb ${join(home, 'store')} (served by cm train, pid ${train.pid})\n`);
      expect(await exited).toBe(0);
      expect(existsSync(advert)).toBe(false);
      const after = await reader(['runs', '--json']);
      expect(after.stderr).toBe(`store: chdb ${join(home, 'store')} (database concept_monitor)\n`);
      expect((JSON.parse(after.stdout) as { status: string }[])[0]).toMatchObject({ status: 'completed' });
    } finally {
      if (train.exitCode === null) train.kill('SIGKILL');
      await exited;
      rmSync(home, { recursive: true, force: true });
    }
  }, 240_000);
});

describe('the stack, when `cm stack up` runs for this CM_HOME', () => {
  // a real stack (nats-server + clickhouse-server 18.16) on free ports in a temporary CM_HOME
  const home = mkdtempSync(join(tmpdir(), 'cm-cli-stack-'));
  const stackDir = join(home, 'stack');
  let url = '';

  beforeAll(async () => {
    const ports = {
      natsPort: await freePort(),
      natsMonitorPort: await freePort(),
      clickhouseHttpPort: await freePort(),
      clickhouseTcpPort: await freePort(),
    };
    await stackUp({ dir: stackDir, ...ports });
    url = `http://127.0.0.1:${ports.clickhouseHttpPort}`;
    const server = await openStore({
      kind: 'server',
      url,
      user: 'default',
      password: '',
      database: 'cm_cli',
    });
    await server.migrate();
    await server.insertRecords(sampleRun('stack-run', 2));
    await server.close();
  }, 120_000);
  afterAll(async () => {
    await stackDown(stackDir);
    rmSync(home, { recursive: true, force: true });
  });

  it('cm runs and cm sql read the stack, not the embedded folder, and say so; --store overrides', async () => {
    const env = { CM_HOME: home, CM_CHDB_PATH: '', CM_CLICKHOUSE_DATABASE: 'cm_cli' };
    const runs = await cm(['runs', '--json'], env);
    expect(runs.stderr).toMatch(
      new RegExp(
        `^store: clickhouse ${url} \\(database cm_cli\\) of \`cm stack up\` \\(clickhouse-server pid \\d+\\)\n$`,
      ),
    );
    expect(runs.code).toBe(0);
    expect((JSON.parse(runs.stdout) as { run_id: string }[]).map((x) => x.run_id)).toEqual(['stack-run']);
    const sql = await cm(['sql', 'SELECT version() AS v', '--format', 'csv'], env);
    expect(sql.stdout).toMatch(/^"v"\n"18\.16/);
    expect(existsSync(join(home, 'store'))).toBe(false); // the embedded store was not touched
    const flagged = await cm(['runs', '--json', '--store', join(dir, 'store')], env);
    expect(flagged.stderr).toBe(`store: chdb ${join(dir, 'store')} (database cm_cli)\n`);
    expect((JSON.parse(flagged.stdout) as { run_id: string }[]).map((x) => x.run_id).sort()).toEqual([
      'run-a',
      'run-b',
      'run-long',
    ]);
  }, 60_000);
});
