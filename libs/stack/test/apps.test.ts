import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appServices, appServicesEnv, LOCAL_CLICKHOUSE_CLUSTER, REPO_ROOT, stackNatsUrl } from '../src';

/** The one builder of the app services' environment (cm stack up, bench:soak, chaos). */
describe('appServices', () => {
  const base = {
    natsPort: 4300,
    clickhouseHttpPort: 8200,
    bundleDir: '/data/bundles',
    serviceHealthPort: 8090,
    recorderHealthPort: 8091,
    baseEnv: { PATH: '/usr/bin', CM_NATS_URL: 'nats://elsewhere:4222', CM_CLICKHOUSE_CLUSTER: 'stale' },
  };

  it('one nats-server and one clickhouse-server: R1, no ClickHouse cluster, the stack overrides the inherited env', () => {
    const env = appServicesEnv({ ...base, natsNodes: 1, clickhouse: { shards: 1, replicas: 1 } });
    expect(env).toEqual({
      PATH: '/usr/bin',
      CM_NATS_URL: 'nats://127.0.0.1:4300',
      CM_NATS_REPLICAS: '1',
      CM_CLICKHOUSE_URL: 'http://127.0.0.1:8200',
      CM_CLICKHOUSE_CLUSTER: '',
      CM_BUNDLE_DIR: '/data/bundles',
      CM_SERVICE_HEALTH_PORT: '8090',
      CM_RECORDER_HEALTH_PORT: '8091',
    });
  });

  it('a NATS cluster and a ClickHouse cluster: every node in CM_NATS_URL, R3, the local cluster name', () => {
    const env = appServicesEnv({ ...base, natsNodes: 3, clickhouse: { shards: 2, replicas: 2 } });
    expect(env.CM_NATS_URL).toBe('nats://127.0.0.1:4300,nats://127.0.0.1:4301,nats://127.0.0.1:4302');
    expect(stackNatsUrl({ natsNodes: 3, natsPort: 4300 })).toBe(env.CM_NATS_URL);
    expect(env.CM_NATS_REPLICAS).toBe('3');
    expect(env.CM_CLICKHOUSE_URL).toBe('http://127.0.0.1:8200'); // node s1r1
    expect(env.CM_CLICKHOUSE_CLUSTER).toBe(LOCAL_CLICKHOUSE_CLUSTER);
    // one shard with two replicas is a cluster too
    expect(
      appServicesEnv({ ...base, natsNodes: 1, clickhouse: { shards: 1, replicas: 2 } }).CM_CLICKHOUSE_CLUSTER,
    ).toBe(LOCAL_CLICKHOUSE_CLUSTER);
  });

  it('extraEnv (a bench database, a gRPC address) is applied last, to both services', () => {
    const apps = appServices({
      ...base,
      natsNodes: 1,
      clickhouse: { shards: 1, replicas: 1 },
      extraEnv: { CM_CLICKHOUSE_DATABASE: 'cm_bench', CM_GRPC_LISTEN: '127.0.0.1:5999' },
    });
    expect(apps.map((a) => [a.name, a.healthPort])).toEqual([
      ['concept-service', 8090],
      ['recorder', 8091],
    ]);
    for (const a of apps) {
      expect(a.env).toMatchObject({ CM_CLICKHOUSE_DATABASE: 'cm_bench', CM_GRPC_LISTEN: '127.0.0.1:5999' });
      expect(existsSync(a.entry)).toBe(true);
      expect(a.entry.startsWith(join(REPO_ROOT, 'apps'))).toBe(true);
    }
    expect(apps[0].entry).toBe(join(REPO_ROOT, 'apps/concept-service/src/main.ts'));
  });

  it('leaves out a service whose entry point is not in the tree', () => {
    const empty = mkdtempSync(join(tmpdir(), 'cm-apps-'));
    try {
      expect(
        appServices({ ...base, natsNodes: 1, clickhouse: { shards: 1, replicas: 1 }, root: empty }),
      ).toEqual([]);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
