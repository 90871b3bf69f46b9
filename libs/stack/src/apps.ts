import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LOCAL_CLICKHOUSE_CLUSTER } from './clickhouse-cluster';
import { natsClusterPorts } from './servers';
import type { AppService, ClickHouseLayout } from './stack';

/** The repository root (libs/stack/src -> ../../..), where apps/ holds the services' entry points. */
export const REPO_ROOT = resolve(__dirname, '..', '..', '..');

/** What the project's own services of a local stack need to know: where the servers listen, and theirs. */
export interface AppServicesOptions {
  /** nats-server nodes of the stack: 1, or a JetStream cluster of 3 or more on consecutive ports. */
  natsNodes: number;
  natsPort: number;
  /** Only read for a cluster (natsNodes > 1); the ports of node i are these plus i. */
  natsMonitorPort?: number;
  natsRoutePort?: number;
  /** HTTP port of the one clickhouse-server, or of node s1r1 of the cluster (its first port). */
  clickhouseHttpPort: number;
  clickhouse: ClickHouseLayout;
  bundleDir: string;
  serviceHealthPort: number;
  recorderHealthPort: number;
  /** The environment the services start from (default process.env); the stack's settings override it. */
  baseEnv?: NodeJS.ProcessEnv;
  /** Further settings for both services (a bench's database, gRPC address, log level, CM_HOME). */
  extraEnv?: Record<string, string>;
  /** Where apps/ is (default the repository this lib sits in). */
  root?: string;
}

/** The NATS URL(s) of the stack: one server, or every node of the cluster comma-separated. */
export function stackNatsUrl(o: Pick<AppServicesOptions, 'natsNodes' | 'natsPort'>): string {
  if (o.natsNodes === 1) return `nats://127.0.0.1:${o.natsPort}`;
  return natsClusterPorts(o.natsNodes, { natsPort: o.natsPort, natsMonitorPort: 0, natsRoutePort: 0 })
    .clientPorts.map((p) => `nats://127.0.0.1:${p}`)
    .join(',');
}

/** The environment both services of the stack get (one object: they share every setting). */
export function appServicesEnv(o: AppServicesOptions): NodeJS.ProcessEnv {
  return {
    ...(o.baseEnv ?? process.env),
    CM_NATS_URL: stackNatsUrl(o),
    // a cluster keeps the stream (and the run-state bucket) on three nodes
    CM_NATS_REPLICAS: String(o.natsNodes === 1 ? 1 : 3),
    // one server, or node s1r1 of the cluster (it takes the first HTTP port); the store then makes
    // and writes its tables ON CLUSTER
    CM_CLICKHOUSE_URL: `http://127.0.0.1:${o.clickhouseHttpPort}`,
    CM_CLICKHOUSE_CLUSTER: o.clickhouse.shards * o.clickhouse.replicas > 1 ? LOCAL_CLICKHOUSE_CLUSTER : '',
    CM_BUNDLE_DIR: o.bundleDir,
    CM_SERVICE_HEALTH_PORT: String(o.serviceHealthPort),
    CM_RECORDER_HEALTH_PORT: String(o.recorderHealthPort),
    ...o.extraEnv,
  };
}

/**
 * The project's own services, started by `stackUp` after nats-server and clickhouse-server: the
 * concept service and the recorder with their environment. One definition for `cm stack up`, the
 * soak and the chaos bench. A service whose entry point is not in this tree (a trimmed image) is
 * left out.
 */
export function appServices(o: AppServicesOptions): AppService[] {
  const root = o.root ?? REPO_ROOT;
  const env = appServicesEnv(o);
  const apps: AppService[] = [
    {
      name: 'concept-service',
      entry: join(root, 'apps/concept-service/src/main.ts'),
      env,
      healthPort: o.serviceHealthPort,
    },
    {
      name: 'recorder',
      entry: join(root, 'apps/recorder/src/main.ts'),
      env,
      healthPort: o.recorderHealthPort,
    },
  ];
  return apps.filter((a) => existsSync(a.entry));
}
