import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join, resolve } from 'node:path';
import { CmError, freePort } from '@cm/core';
import { startService, stopService } from './process';
import { startClickHouse, type ManagedServer } from './servers';

/**
 * A ClickHouse cluster on 127.0.0.1 for tests and for trying scale-out (`cm stack up
 * --clickhouse-shards S --clickhouse-replicas R`): one ZooKeeper (Debian's zookeeper package) and
 * S x R clickhouse-server processes, each with the cluster's remote_servers, its own shard/replica
 * macros and an interserver port for replication. Every process is a recorded background service.
 */
export const ZOOKEEPER_SERVICE = 'zookeeper';
/** The cluster's name in remote_servers: what CM_CLICKHOUSE_CLUSTER names. */
export const LOCAL_CLICKHOUSE_CLUSTER = 'cm_cluster';

const ZOOKEEPER_JAR = '/usr/share/java/zookeeper.jar';
/** slf4j's simple binding (Debian's libslf4j-java, a dependency of zookeeper): the server's log lines go to its log file. */
const SLF4J_SIMPLE_JAR = '/usr/share/java/slf4j-simple.jar';

/**
 * ZooKeeper serves sessions: its `srvr` four-letter word reports a mode. (`ruok` answers `imok` as
 * soon as the port is open, before the server takes sessions; ClickHouse 18.16 connecting then
 * fails its handshake, and that server's DDL worker crashes.)
 */
export function zookeeperOk(port: number): Promise<boolean> {
  return new Promise((resolveOk) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let answer = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolveOk(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('srvr'));
    socket.on('data', (d) => (answer += d.toString()));
    socket.on('end', () => done(/^Mode: (standalone|leader|follower)$/m.test(answer)));
  });
}

export async function startZooKeeper(opts: { dir: string; port: number }): Promise<ManagedServer> {
  if (!existsSync(ZOOKEEPER_JAR)) {
    throw new CmError('NOT_FOUND', 'ZooKeeper is not installed', {
      context: { tried: ZOOKEEPER_JAR },
      hint: 'install it with `apt-get install zookeeper` (tools/stack/install.sh does)',
    });
  }
  const stackDir = resolve(opts.dir);
  const dir = join(stackDir, ZOOKEEPER_SERVICE);
  mkdirSync(join(dir, 'data'), { recursive: true });
  const cfg = join(dir, 'zoo.cfg');
  writeFileSync(
    cfg,
    [
      'tickTime=2000',
      `dataDir=${join(dir, 'data')}`,
      `clientPort=${opts.port}`,
      'clientPortAddress=127.0.0.1',
      'admin.enableServer=false',
      '4lw.commands.whitelist=srvr,ruok,mntr',
      '',
    ].join('\n'),
  );
  // the jar's manifest carries its class path; the standalone server needs no other script
  const svc = await startService(stackDir, {
    name: ZOOKEEPER_SERVICE,
    command: 'java',
    args: [
      '-Xmx256m',
      '-cp',
      `${ZOOKEEPER_JAR}:${SLF4J_SIMPLE_JAR}`,
      'org.apache.zookeeper.server.ZooKeeperServerMain',
      cfg,
    ],
    cwd: dir,
    health: () => zookeeperOk(opts.port),
    startTimeoutMs: 60_000,
  });
  return {
    ...svc,
    url: `127.0.0.1:${opts.port}`,
    stop: async () => void (await stopService(stackDir, ZOOKEEPER_SERVICE)),
  };
}

export interface ClickHouseNodePorts {
  httpPort: number;
  tcpPort: number;
  interserverPort: number;
}

export interface ClickHouseClusterOptions {
  dir: string;
  zookeeperPort: number;
  /** nodes[shard][replica] */
  nodes: ClickHouseNodePorts[][];
}

export interface ClickHouseCluster {
  cluster: string;
  zookeeper: ManagedServer;
  /** nodes[shard][replica] */
  nodes: ManagedServer[][];
  /** Start node (shard, replica) again after it was stopped (same config and data). */
  restartNode(shard: number, replica: number): Promise<ManagedServer>;
  stop(): Promise<void>;
}

export const clickHouseNodeService = (shard: number, replica: number): string =>
  `clickhouse-s${shard + 1}r${replica + 1}`;

/** The config.xml elements of one cluster node (ClickHouse 18.16 and current servers read them alike). */
export function clickHouseClusterNodeXml(
  opts: ClickHouseClusterOptions,
  shard: number,
  replica: number,
): string {
  const shards = opts.nodes
    .map(
      (replicas) =>
        `<shard><internal_replication>true</internal_replication>${replicas
          .map((r) => `<replica><host>127.0.0.1</host><port>${r.tcpPort}</port></replica>`)
          .join('')}</shard>`,
    )
    .join('');
  const me = opts.nodes[shard][replica];
  return `
  <zookeeper><node><host>127.0.0.1</host><port>${opts.zookeeperPort}</port></node></zookeeper>
  <remote_servers><${LOCAL_CLICKHOUSE_CLUSTER}>${shards}</${LOCAL_CLICKHOUSE_CLUSTER}></remote_servers>
  <macros><shard>${shard + 1}</shard><replica>r${replica + 1}</replica></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <interserver_http_port>${me.interserverPort}</interserver_http_port>`;
}

export async function startClickHouseCluster(opts: ClickHouseClusterOptions): Promise<ClickHouseCluster> {
  const dir = resolve(opts.dir);
  const zookeeper = await startZooKeeper({ dir, port: opts.zookeeperPort });
  const startNode = (s: number, r: number): Promise<ManagedServer> =>
    startClickHouse({
      dir,
      name: clickHouseNodeService(s, r),
      httpPort: opts.nodes[s][r].httpPort,
      tcpPort: opts.nodes[s][r].tcpPort,
      extraConfig: clickHouseClusterNodeXml(opts, s, r),
    });
  const stopAll = async (): Promise<void> => {
    // the nodes at once (each waits for its own clean exit), then ZooKeeper, which they use to the end
    await Promise.all(
      opts.nodes.flatMap((replicas, s) =>
        replicas.map((_, r) => stopService(dir, clickHouseNodeService(s, r))),
      ),
    );
    await zookeeper.stop();
  };
  let nodes: ManagedServer[][];
  try {
    nodes = await Promise.all(
      opts.nodes.map((replicas, s) => Promise.all(replicas.map((_, r) => startNode(s, r)))),
    );
  } catch (e) {
    await stopAll();
    throw e;
  }
  return {
    cluster: LOCAL_CLICKHOUSE_CLUSTER,
    zookeeper,
    nodes,
    restartNode: async (s, r) => (nodes[s][r] = await startNode(s, r)),
    stop: stopAll,
  };
}

/**
 * The ports of an S x R cluster on consecutive ports: node k = shard * replicas + replica takes
 * httpPort + k, tcpPort + k and interserverPort + k (as natsClusterPorts does for NATS).
 */
export function clickHouseClusterPorts(
  shards: number,
  replicas: number,
  base: { httpPort: number; tcpPort: number; interserverPort: number },
): ClickHouseNodePorts[][] {
  return Array.from({ length: shards }, (_, s) =>
    Array.from({ length: replicas }, (_, r) => {
      const k = s * replicas + r;
      return {
        httpPort: base.httpPort + k,
        tcpPort: base.tcpPort + k,
        interserverPort: base.interserverPort + k,
      };
    }),
  );
}

/** The ports of an S x R cluster, each a free 127.0.0.1 port of its own (tests: no run of ports needed). */
export async function freeClickHouseClusterPorts(
  shards: number,
  replicas: number,
): Promise<ClickHouseNodePorts[][]> {
  const nodes: ClickHouseNodePorts[][] = [];
  for (let s = 0; s < shards; s++) {
    const row: ClickHouseNodePorts[] = [];
    for (let r = 0; r < replicas; r++)
      row.push({ httpPort: await freePort(), tcpPort: await freePort(), interserverPort: await freePort() });
    nodes.push(row);
  }
  return nodes;
}
