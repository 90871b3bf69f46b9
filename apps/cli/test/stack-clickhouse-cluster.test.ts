import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, freePortRun } from '@cm/core';
import { isAlive, readPid } from '@cm/stack';
import { cmWith } from './run-cm';

const cm = cmWith();

describe('cm stack up --clickhouse-shards 2 (subprocess, real ZooKeeper and clickhouse-server)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-clistack-ch-'));
  const env: NodeJS.ProcessEnv = {
    CM_STACK_DIR: dir,
    CM_HOME: dir,
    CM_BUNDLE_DIR: join(dir, 'bundles'),
    CM_CHDB_PATH: join(dir, 'store'),
  };
  beforeAll(async () => {
    for (const k of [
      'CM_NATS_PORT',
      'CM_NATS_MONITOR_PORT',
      'CM_ZOOKEEPER_PORT',
      'CM_SERVICE_HEALTH_PORT',
      'CM_RECORDER_HEALTH_PORT',
    ])
      env[k] = String(await freePort());
    for (const k of ['CM_CLICKHOUSE_HTTP_PORT', 'CM_CLICKHOUSE_TCP_PORT', 'CM_CLICKHOUSE_INTERSERVER_PORT'])
      env[k] = String(await freePortRun(2));
    env.CM_GRPC_LISTEN = `127.0.0.1:${await freePort()}`;
  });
  afterAll(async () => {
    await cm(['stack', 'down'], env);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('refuses a bad layout before starting anything', async () => {
    const bad = await cm(['stack', 'up', '--clickhouse-shards', '0'], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--clickhouse-shards must be an integer from 1 to 16, got 0/);
    expect(readPid(dir, 'zookeeper')).toBeUndefined();
  });

  it('runs the services on the cluster, and the reading commands find node s1r1', async () => {
    const up = await cm(['stack', 'up', '--clickhouse-shards', '2', '--clickhouse-replicas', '1'], env);
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    expect(up.stdout).toMatch(
      /stack up: started nats, zookeeper, clickhouse-s1r1, clickhouse-s2r1, concept-service, recorder \(/,
    );
    const status = await cm(['stack', 'status'], env);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^zookeeper\s+\d+\s+healthy\s+zookeeper:\/\/127\.0\.0\.1:/m);

    // the services made the schema ON CLUSTER: the table the reading commands read is Distributed
    const engine = await cm(
      [
        'sql',
        "SELECT engine FROM system.tables WHERE database = 'concept_monitor' AND name = 'checkpoints'",
        '--format',
        'csv',
      ],
      env,
    );
    expect(engine.code).toBe(0);
    expect(engine.stderr).toMatch(
      new RegExp(
        `store: clickhouse http://127\\.0\\.0\\.1:${env.CM_CLICKHOUSE_HTTP_PORT} .*of \`cm stack up\``,
      ),
    );
    expect(engine.stdout.trim().split('\n')).toEqual(['"engine"', '"Distributed"']);

    // a later `up` without flags keeps the recorded layout
    const again = await cm(['stack', 'up'], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(
      /stack up: kept nats, zookeeper, clickhouse-s1r1, clickhouse-s2r1, concept-service, recorder \(/,
    );

    const pids = ['zookeeper', 'clickhouse-s1r1', 'clickhouse-s2r1', 'recorder'].map((n) => readPid(dir, n)!);
    const down = await cm(['stack', 'down'], env);
    expect(down.code).toBe(0);
    expect(pids.filter(isAlive)).toEqual([]);
  }, 240_000);
});
