import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CmError, waitFor } from '@cm/core';
import { httpOk, readPid, startService, stopService, type RunningService } from './process';

/** nats-server and clickhouse-server as local processes: their config files and health checks. */

export interface NatsOptions {
  dir: string;
  port: number;
  monitorPort: number;
  user?: string;
  password?: string;
}

export interface ClickHouseOptions {
  dir: string;
  httpPort: number;
  tcpPort: number;
  /** Service name and sub-folder (default `clickhouse`; the nodes of a cluster have their own). */
  name?: string;
  /** More config.xml elements: a cluster node's ZooKeeper, remote_servers, macros, interserver port. */
  extraConfig?: string;
}

export interface ManagedServer extends RunningService {
  url: string;
  stop(): Promise<void>;
}

export function findBinary(name: string, candidates: string[]): string {
  for (const c of candidates) {
    try {
      execFileSync(c, ['--help'], { stdio: 'ignore', timeout: 5000 });
      return c;
    } catch (e) {
      // clickhouse-server --help exits non-zero but exists; treat "exists" as found
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return c;
    }
  }
  throw new CmError('NOT_FOUND', `${name} is not installed`, {
    context: { tried: candidates },
    hint: 'install it with `bash tools/stack/install.sh` (Debian/Ubuntu, apt)',
  });
}

export const NATS_SERVICE = 'nats';
export const CLICKHOUSE_SERVICE = 'clickhouse';

export async function startNats(opts: NatsOptions): Promise<ManagedServer> {
  const bin = findBinary('nats-server', ['nats-server', '/usr/sbin/nats-server', '/usr/bin/nats-server']);
  const dir = resolve(opts.dir);
  const storeDir = join(dir, 'nats-data');
  mkdirSync(storeDir, { recursive: true });
  const args = [
    '-a',
    '127.0.0.1',
    '-p',
    String(opts.port),
    '-m',
    String(opts.monitorPort),
    '-js',
    '-sd',
    storeDir,
  ];
  if (opts.user) args.push('--user', opts.user, '--pass', opts.password ?? '');
  const svc = await startService(dir, {
    name: NATS_SERVICE,
    command: bin,
    args,
    health: () => httpOk(`http://127.0.0.1:${opts.monitorPort}/healthz?js-enabled-only=true`),
  });
  return {
    ...svc,
    url: `nats://127.0.0.1:${opts.port}`,
    stop: async () => void (await stopService(dir, NATS_SERVICE)),
  };
}

/**
 * clickhouse-server's config. Written for 18.16 (Debian's package; `<yandex>` root, which current
 * servers still accept) so one file serves every version we start locally.
 */
export function clickHouseConfigXml(
  dir: string,
  httpPort: number,
  tcpPort: number,
  extraConfig = '',
): string {
  return `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>${dir}/logs/server.log</log><errorlog>${dir}/logs/error.log</errorlog><size>10M</size><count>2</count></logger>
  <http_port>${httpPort}</http_port>
  <tcp_port>${tcpPort}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <max_connections>256</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <mark_cache_size>268435456</mark_cache_size>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <user_files_path>${dir}/user_files/</user_files_path>
  <format_schema_path>${dir}/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>${extraConfig}
</yandex>
`;
}

const USERS_XML = `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage><load_balancing>random</load_balancing></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`;

export async function startClickHouse(opts: ClickHouseOptions): Promise<ManagedServer> {
  const bin = findBinary('clickhouse-server', [
    'clickhouse-server',
    '/usr/sbin/clickhouse-server',
    '/usr/bin/clickhouse-server',
  ]);
  const name = opts.name ?? CLICKHOUSE_SERVICE;
  const dir = resolve(opts.dir, name);
  for (const sub of ['data', 'tmp', 'user_files', 'format_schemas', 'logs'])
    mkdirSync(join(dir, sub), { recursive: true });
  writeFileSync(
    join(dir, 'config.xml'),
    clickHouseConfigXml(dir, opts.httpPort, opts.tcpPort, opts.extraConfig),
  );
  writeFileSync(join(dir, 'users.xml'), USERS_XML);
  const stackDir = resolve(opts.dir);
  const svc = await startService(stackDir, {
    name,
    command: bin,
    args: [`--config-file=${join(dir, 'config.xml')}`],
    cwd: dir,
    health: () => httpOk(`http://127.0.0.1:${opts.httpPort}/ping`, (b) => b.startsWith('Ok')),
    startTimeoutMs: 60_000,
  });
  return {
    ...svc,
    url: `http://127.0.0.1:${opts.httpPort}`,
    stop: async () => void (await stopService(stackDir, name)),
  };
}

/** A NATS cluster with JetStream on 127.0.0.1: one nats-server process per node. */
export interface NatsClusterOptions {
  dir: string;
  /** Client, monitoring and route port of each node (same length: the number of nodes, 3 or more). */
  clientPorts: number[];
  monitorPorts: number[];
  routePorts: number[];
  clusterName?: string;
}

export interface NatsCluster {
  /** Every node's client URL, comma-separated: what CM_NATS_URL takes for a cluster. */
  url: string;
  nodes: ManagedServer[];
  /** Start node `i` again after it was stopped or killed (same config, same JetStream store). */
  restartNode(i: number): Promise<ManagedServer>;
  stop(): Promise<void>;
}

export const natsNodeService = (i: number): string => `${NATS_SERVICE}-${i + 1}`;

/** nats-server's config of one cluster node: its own store, routes to every other node. */
export function natsClusterNodeConfig(opts: NatsClusterOptions, i: number, storeDir: string): string {
  const routes = opts.routePorts
    .filter((_, j) => j !== i)
    .map((p) => `nats-route://127.0.0.1:${p}`)
    .join(', ');
  return [
    `server_name: ${natsNodeService(i)}`,
    `listen: 127.0.0.1:${opts.clientPorts[i]}`,
    `http: 127.0.0.1:${opts.monitorPorts[i]}`,
    `jetstream { store_dir: "${storeDir}" }`,
    `cluster {`,
    `  name: ${opts.clusterName ?? 'cm'}`,
    `  listen: 127.0.0.1:${opts.routePorts[i]}`,
    `  routes: [${routes}]`,
    `}`,
    '',
  ].join('\n');
}

/**
 * Start a JetStream cluster (`cm stack up --nats-cluster N`, and the tests of replicated streams).
 * Every node is a recorded background service (`nats-1`, `nats-2`, ... in `dir`); the call returns
 * once every node answers its health check and the cluster has a JetStream meta leader. `only`
 * starts just those nodes (the others run already: `cm stack up` mending one dead node).
 */
export async function startNatsCluster(opts: NatsClusterOptions, only?: number[]): Promise<NatsCluster> {
  const n = opts.clientPorts.length;
  if (n < 3 || opts.monitorPorts.length !== n || opts.routePorts.length !== n) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `a NATS JetStream cluster needs 3 or more nodes with a port of each kind each`,
      {
        context: {
          clientPorts: opts.clientPorts,
          monitorPorts: opts.monitorPorts,
          routePorts: opts.routePorts,
        },
      },
    );
  }
  const bin = findBinary('nats-server', ['nats-server', '/usr/sbin/nats-server', '/usr/bin/nats-server']);
  const dir = resolve(opts.dir);
  const managed = (i: number, svc: RunningService): ManagedServer => ({
    ...svc,
    url: `nats://127.0.0.1:${opts.clientPorts[i]}`,
    stop: async () => void (await stopService(dir, natsNodeService(i))),
  });
  const startNode = async (i: number): Promise<ManagedServer> => {
    const storeDir = join(dir, `${natsNodeService(i)}-data`);
    mkdirSync(storeDir, { recursive: true });
    const conf = join(dir, `${natsNodeService(i)}.conf`);
    writeFileSync(conf, natsClusterNodeConfig(opts, i, storeDir));
    const svc = await startService(dir, {
      name: natsNodeService(i),
      command: bin,
      args: ['-c', conf],
      health: () => httpOk(`http://127.0.0.1:${opts.monitorPorts[i]}/healthz?js-enabled-only=true`),
      startTimeoutMs: 60_000,
    });
    return managed(i, svc);
  };
  const which = only ?? opts.clientPorts.map((_, i) => i);
  const stopStarted = async (): Promise<void> => {
    for (const i of which) await stopService(dir, natsNodeService(i));
  };
  try {
    // all at once: a node waits for its peers' routes before its JetStream is ready
    await Promise.all(which.map((i) => startNode(i)));
  } catch (e) {
    await stopStarted();
    throw e;
  }
  // healthz answers per node; JetStream requests need the cluster's meta leader, elected a moment later
  const metaLeader = (body: string): boolean =>
    Boolean((JSON.parse(body) as { meta_cluster?: { leader?: string } }).meta_cluster?.leader);
  const elected = await waitFor(
    async () => httpOk(`http://127.0.0.1:${opts.monitorPorts[which[0] ?? 0]}/jsz`, metaLeader),
    30_000,
    100,
  );
  if (!elected) {
    await stopStarted();
    throw new CmError('UNAVAILABLE', `the NATS cluster elected no JetStream meta leader within 30 s`, {
      context: { dir },
      hint: `see the nats-*.log files in ${dir}`,
    });
  }
  const nodeOf = (i: number): ManagedServer =>
    managed(i, {
      name: natsNodeService(i),
      pid: readPid(dir, natsNodeService(i)) ?? 0,
      logFile: join(dir, `${natsNodeService(i)}.log`),
    });
  const nodes = opts.clientPorts.map((_, i) => nodeOf(i));
  return {
    url: nodes.map((s) => s.url).join(','),
    nodes,
    restartNode: async (i) => (nodes[i] = await startNode(i)),
    stop: async () => {
      for (let i = 0; i < n; i++) await stopService(dir, natsNodeService(i));
    },
  };
}

/** The ports of an N-node local cluster: consecutive from the single-node ports (`cm stack up --nats-cluster N`). */
export function natsClusterPorts(
  nodes: number,
  base: { natsPort: number; natsMonitorPort: number; natsRoutePort: number },
): Pick<NatsClusterOptions, 'clientPorts' | 'monitorPorts' | 'routePorts'> {
  const range = (start: number): number[] => Array.from({ length: nodes }, (_, i) => start + i);
  return {
    clientPorts: range(base.natsPort),
    monitorPorts: range(base.natsMonitorPort),
    routePorts: range(base.natsRoutePort),
  };
}
