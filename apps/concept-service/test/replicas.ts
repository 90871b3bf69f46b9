/**
 * Two concept-service replicas, each its own process, on the stack libs/stack starts (nats-server,
 * clickhouse-server, the recorder), as the replica tests run them: the services as `cm stack up`
 * starts them (libs/stack appServices), replica B beside A, on free ports.
 */
import { rmSync } from 'node:fs';
import { freePort } from '@cm/core';
import { appServices, stackDown, type AppService } from '@cm/stack';
import { openStore, type Store } from '@cm/store';

export interface StackPorts {
  natsPort: number;
  natsMonitorPort: number;
  clickhouseHttpPort: number;
  clickhouseTcpPort: number;
}

export interface TwoReplicas {
  /** The stack's own ports, to spread into stackUp's options. */
  ports: StackPorts;
  /** host:port of each replica's gRPC. */
  targets: Record<'a' | 'b', string>;
  /** Health (and /metrics) ports of the replicas and the recorder. */
  health: Record<'a' | 'b' | 'recorder', number>;
  /** As appServices made them: B still under the service's own name. */
  serviceA: AppService;
  recorder: AppService;
  serviceB: AppService;
  /** What stackUp starts: the recorder, A, and B as concept-service-b. */
  apps: AppService[];
}

/** Ports and services of two replicas writing to `database`; `env` adds a replica's own variables. */
export async function planTwoReplicas(opts: {
  bundleRoot: string;
  database: string;
  env?: (which: 'a' | 'b') => Record<string, string>;
}): Promise<TwoReplicas> {
  const ports: StackPorts = {
    natsPort: await freePort(),
    natsMonitorPort: await freePort(),
    clickhouseHttpPort: await freePort(),
    clickhouseTcpPort: await freePort(),
  };
  const grpc = { a: await freePort(), b: await freePort() };
  const health = { a: await freePort(), b: await freePort(), recorder: await freePort() };
  const replica = (which: 'a' | 'b'): AppService[] =>
    appServices({
      natsNodes: 1,
      natsPort: ports.natsPort,
      clickhouseHttpPort: ports.clickhouseHttpPort,
      clickhouse: { shards: 1, replicas: 1 },
      bundleDir: opts.bundleRoot,
      serviceHealthPort: health[which],
      recorderHealthPort: health.recorder,
      extraEnv: {
        CM_LOG_LEVEL: 'warn',
        ...opts.env?.(which),
        CM_CLICKHOUSE_DATABASE: opts.database,
        CM_GRPC_LISTEN: `127.0.0.1:${grpc[which]}`,
        CM_DISSECT_WORKERS: '1',
        CM_RECORDER_BATCH_MESSAGES: '5',
      },
    });
  const [serviceA, recorder] = replica('a');
  const [serviceB] = replica('b');
  return {
    ports,
    targets: { a: `127.0.0.1:${grpc.a}`, b: `127.0.0.1:${grpc.b}` },
    health,
    serviceA,
    recorder,
    serviceB,
    apps: [recorder, serviceA, { ...serviceB, name: 'concept-service-b' }],
  };
}

/** The stack's ClickHouse, database `database`. */
export function openReplicaStore(ports: StackPorts, database: string): Promise<Store> {
  return openStore({
    kind: 'server',
    url: `http://127.0.0.1:${ports.clickhouseHttpPort}`,
    user: 'default',
    password: '',
    database,
  });
}

/** Close the store, stop the stack, remove the bundles and the test's folder. */
export async function tearDownReplicas(opts: {
  store: Store | undefined;
  stackDir: string;
  bundles: { cleanup(): void } | undefined;
  dir: string;
}): Promise<void> {
  await opts.store?.close();
  await stackDown(opts.stackDir);
  opts.bundles?.cleanup();
  rmSync(opts.dir, { recursive: true, force: true });
}
