import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CmError, errorMessage, waitFor } from '@cm/core';
import {
  clickHouseClusterNodeXml,
  clickHouseClusterPorts,
  clickHouseNodeService,
  startZooKeeper,
  zookeeperOk,
  ZOOKEEPER_SERVICE,
  type ClickHouseClusterOptions,
} from './clickhouse-cluster';
import { httpOk, isAlive, readPid, startService, stopService } from './process';
import {
  CLICKHOUSE_SERVICE,
  NATS_SERVICE,
  natsClusterPorts,
  natsNodeService,
  startClickHouse,
  startNats,
  startNatsCluster,
  type NatsClusterOptions,
} from './servers';

/**
 * The local stack behind `cm stack up | down | status`: nats-server (JetStream on),
 * clickhouse-server, and the project's own services (concept service, recorder) as plain
 * background processes on 127.0.0.1, with their state under one folder.
 */
export interface AppService {
  name: string;
  /** TypeScript entry point, run with `node --import tsx`. */
  entry: string;
  env: NodeJS.ProcessEnv;
  healthPort: number;
}

export interface StackOptions {
  dir: string;
  natsPort: number;
  natsMonitorPort: number;
  /** 1 (default): one nats-server; 3 or more: a JetStream cluster on consecutive ports from these. */
  natsNodes?: number;
  natsRoutePort?: number;
  clickhouseHttpPort: number;
  clickhouseTcpPort: number;
  /**
   * 1 x 1 (default): one clickhouse-server. More: ZooKeeper and shards x replicas nodes (remote_servers
   * cluster `cm_cluster`) on consecutive ports from the HTTP, TCP and interserver ports.
   */
  clickhouseShards?: number;
  clickhouseReplicas?: number;
  clickhouseInterserverPort?: number;
  zookeeperPort?: number;
  apps?: AppService[];
}

/** The ClickHouse layout of a stack: shards x replicas (1 x 1: one server, no cluster). */
export interface ClickHouseLayout {
  shards: number;
  replicas: number;
}

const isCluster = (l: ClickHouseLayout): boolean => l.shards * l.replicas > 1;

interface StackState {
  startedAt: string;
  /** nats-server nodes this stack was brought up with (a later `up` or `restart` keeps them). */
  natsNodes?: number;
  /** ClickHouse layout this stack was brought up with (absent: 1 x 1). */
  clickhouse?: ClickHouseLayout;
  services: { name: string; health: string }[];
}

export interface ServiceStatus {
  name: string;
  pid?: number;
  running: boolean;
  healthy: boolean;
  health: string;
}

const STATE_FILE = 'stack.json';

/** What `stackUp` did with one service. */
export type StackAction = 'kept' | 'started' | 'restarted';

export interface StackUpEntry extends ServiceStatus {
  action: StackAction;
}

/** One service of the stack: its name, health URL and how to start it. */
interface StackUnit {
  name: string;
  health: string;
  /** `alsoStarted`: other units this start brought up with it (the nodes of a cluster start together). */
  start(): Promise<{ pid: number; alsoStarted?: string[] }>;
}

function natsUnits(opts: StackOptions, dir: string): StackUnit[] {
  const nodes = opts.natsNodes ?? 1;
  if (nodes === 1) {
    return [
      {
        name: NATS_SERVICE,
        health: `http://127.0.0.1:${opts.natsMonitorPort}/healthz`,
        start: () => startNats({ dir, port: opts.natsPort, monitorPort: opts.natsMonitorPort }),
      },
    ];
  }
  const cluster: NatsClusterOptions = {
    dir,
    ...natsClusterPorts(nodes, { ...opts, natsRoutePort: opts.natsRoutePort ?? 6222 }),
  };
  // One unit per node for status and restarts; starting the first unit starts every node that is
  // not healthy at once (a lone node has no JetStream until its peers are back), the others then
  // find their node running.
  return cluster.clientPorts.map((_, i) => ({
    name: natsNodeService(i),
    health: `http://127.0.0.1:${cluster.monitorPorts[i]}/healthz`,
    start: async () => {
      const down: number[] = [];
      for (let j = 0; j < nodes; j++) {
        const st = await unitStatus(
          dir,
          natsNodeService(j),
          `http://127.0.0.1:${cluster.monitorPorts[j]}/healthz`,
        );
        if (!st.healthy) down.push(j);
      }
      if (!down.includes(i)) down.push(i);
      for (const j of down) await stopService(dir, natsNodeService(j));
      const started = await startNatsCluster(cluster, down);
      return { pid: started.nodes[i].pid, alsoStarted: down.filter((j) => j !== i).map(natsNodeService) };
    },
  }));
}

/** The cluster's ports (and ZooKeeper's) from the stack's settings. */
export function stackClickHouseCluster(
  opts: Pick<
    StackOptions,
    'clickhouseHttpPort' | 'clickhouseTcpPort' | 'clickhouseInterserverPort' | 'zookeeperPort'
  >,
  layout: ClickHouseLayout,
  dir: string,
): ClickHouseClusterOptions {
  return {
    dir,
    zookeeperPort: opts.zookeeperPort ?? 2181,
    nodes: clickHouseClusterPorts(layout.shards, layout.replicas, {
      httpPort: opts.clickhouseHttpPort,
      tcpPort: opts.clickhouseTcpPort,
      interserverPort: opts.clickhouseInterserverPort ?? 9009,
    }),
  };
}

/** A health "URL" for ZooKeeper, which speaks no HTTP: unitStatus asks it `srvr` instead. */
const ZOOKEEPER_HEALTH = /^zookeeper:\/\/127\.0\.0\.1:(\d+)$/;

function clickHouseUnits(opts: StackOptions, layout: ClickHouseLayout, dir: string): StackUnit[] {
  if (!isCluster(layout)) {
    return [
      {
        name: CLICKHOUSE_SERVICE,
        health: `http://127.0.0.1:${opts.clickhouseHttpPort}/ping`,
        start: () =>
          startClickHouse({ dir, httpPort: opts.clickhouseHttpPort, tcpPort: opts.clickhouseTcpPort }),
      },
    ];
  }
  const cluster = stackClickHouseCluster(opts, layout, dir);
  // Unlike NATS nodes, each ClickHouse node starts alone: a restarted replica catches up from
  // ZooKeeper's log, so one dead node is mended without touching the others.
  return [
    {
      name: ZOOKEEPER_SERVICE,
      health: `zookeeper://127.0.0.1:${cluster.zookeeperPort}`,
      start: () => startZooKeeper({ dir, port: cluster.zookeeperPort }),
    },
    ...cluster.nodes.flatMap((replicas, s) =>
      replicas.map((node, r) => ({
        name: clickHouseNodeService(s, r),
        health: `http://127.0.0.1:${node.httpPort}/ping`,
        start: () =>
          startClickHouse({
            dir,
            name: clickHouseNodeService(s, r),
            httpPort: node.httpPort,
            tcpPort: node.tcpPort,
            extraConfig: clickHouseClusterNodeXml(cluster, s, r),
          }),
      })),
    ),
  ];
}

/** The layout asked for, else the recorded one, else 1 x 1. */
function layoutOf(opts: StackOptions, state: StackState | undefined): ClickHouseLayout {
  const recorded = state?.clickhouse ?? { shards: 1, replicas: 1 };
  return {
    shards: opts.clickhouseShards ?? recorded.shards,
    replicas: opts.clickhouseReplicas ?? recorded.replicas,
  };
}

function stackUnits(optsIn: StackOptions, dir: string): StackUnit[] {
  const state = readState(dir);
  const opts = { ...optsIn, natsNodes: optsIn.natsNodes ?? state?.natsNodes ?? 1 };
  const units: StackUnit[] = [...natsUnits(opts, dir), ...clickHouseUnits(opts, layoutOf(opts, state), dir)];
  for (const app of opts.apps ?? []) {
    const health = `http://127.0.0.1:${app.healthPort}/healthz`;
    units.push({
      name: app.name,
      health,
      start: () =>
        startService(dir, {
          name: app.name,
          command: process.execPath,
          args: ['--import', 'tsx', app.entry],
          env: app.env,
          health: () => httpOk(health),
          startTimeoutMs: 60_000,
        }),
    });
  }
  return units;
}

async function unitStatus(dir: string, name: string, health: string): Promise<ServiceStatus> {
  const pid = readPid(dir, name);
  const running = pid !== undefined && isAlive(pid);
  const zk = ZOOKEEPER_HEALTH.exec(health);
  const check = (): Promise<boolean> => (zk ? zookeeperOk(Number(zk[1])) : httpOk(health));
  const healthy = running ? await check().catch(() => false) : false;
  return { name, pid, running, healthy, health };
}

/**
 * The status to report for a unit `up` has just handled. A node that was just started can answer
 * its first health checks late or with a 503 while it catches up (a NATS node with the JetStream
 * meta leader a moment after the election, under load), so one started now is asked again for up
 * to 30 s before it is reported unhealthy; a kept unit is reported as it answers.
 */
async function settledStatus(dir: string, unit: StackUnit, action: StackAction): Promise<ServiceStatus> {
  let status = await unitStatus(dir, unit.name, unit.health);
  if (action === 'kept' || status.healthy) return status;
  await waitFor(
    async () => {
      status = await unitStatus(dir, unit.name, unit.health);
      return status.healthy || !status.running;
    },
    30_000,
    200,
  );
  return status;
}

/**
 * Bring the stack up, idempotently: a service that runs and answers its health check is kept as it
 * is (same pid), one that is recorded but dead is started, one that runs but does not answer is
 * stopped and started again. So `cm stack up` after one service died mends that service alone.
 * On a failure, only what this call started is stopped again; what was running before stays.
 */
export async function stackUp(
  opts: StackOptions,
  log: (line: string) => void = () => undefined,
): Promise<StackUpEntry[]> {
  const dir = resolve(opts.dir);
  mkdirSync(dir, { recursive: true });
  const previous = readState(dir);
  const natsNodes = opts.natsNodes ?? previous?.natsNodes ?? 1;
  if (previous?.natsNodes !== undefined && previous.natsNodes !== natsNodes && previous.services.length > 0) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `this stack runs ${previous.natsNodes} nats-server node(s); it cannot switch to ${natsNodes} while up`,
      { context: { dir, running: previous.natsNodes, asked: natsNodes }, hint: 'run `cm stack down` first' },
    );
  }
  const layout = layoutOf(opts, previous);
  const was = previous?.clickhouse ?? { shards: 1, replicas: 1 };
  if (
    previous !== undefined &&
    previous.services.length > 0 &&
    (was.shards !== layout.shards || was.replicas !== layout.replicas)
  ) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `this stack runs ClickHouse as ${was.shards} x ${was.replicas} (shards x replicas); it cannot switch to ${layout.shards} x ${layout.replicas} while up`,
      { context: { dir, running: was, asked: layout }, hint: 'run `cm stack down` first' },
    );
  }
  const state: StackState = {
    startedAt: previous?.startedAt ?? new Date().toISOString(),
    natsNodes,
    clickhouse: layout,
    services: [],
  };
  const save = (): void => writeFileSync(join(dir, STATE_FILE), JSON.stringify(state, null, 2));
  const startedNow: string[] = [];
  const out: StackUpEntry[] = [];
  try {
    const startedBySibling = new Map<string, StackAction>();
    const units = stackUnits(
      { ...opts, natsNodes, clickhouseShards: layout.shards, clickhouseReplicas: layout.replicas },
      dir,
    );
    for (const unit of units) {
      const before = await unitStatus(dir, unit.name, unit.health);
      let action: StackAction = startedBySibling.get(unit.name) ?? 'kept';
      if (startedBySibling.has(unit.name)) {
        log(`${unit.name} ${action} (pid ${before.pid})`);
      } else if (!before.healthy) {
        if (before.running) await stopService(dir, unit.name);
        const svc = await unit.start();
        startedNow.push(unit.name, ...(svc.alsoStarted ?? []));
        action = before.running ? 'restarted' : 'started';
        for (const other of svc.alsoStarted ?? []) startedBySibling.set(other, 'started');
        log(`${unit.name} ${action} (pid ${svc.pid})`);
      } else {
        log(`${unit.name} already running and healthy (pid ${before.pid}): kept`);
      }
      state.services.push({ name: unit.name, health: unit.health });
      save();
      out.push({ ...(await settledStatus(dir, unit, action)), action });
    }
  } catch (e) {
    log(
      `start failed: ${errorMessage(e)}; stopping what this call started (${startedNow.join(', ') || 'nothing'})`,
    );
    for (const name of startedNow.reverse()) await stopService(dir, name);
    throw e;
  }
  return out;
}

/**
 * Restart one service of a running stack (`cm stack restart NAME`): stop it by its recorded pid and
 * start it with the same settings; the others keep running.
 */
export async function stackRestart(
  opts: StackOptions,
  name: string,
  log: (line: string) => void = () => undefined,
): Promise<StackUpEntry> {
  const dir = resolve(opts.dir);
  const units = stackUnits(opts, dir);
  const unit = units.find((u) => u.name === name);
  if (!unit) {
    throw new CmError('NOT_FOUND', `no service named ${name} in the stack`, {
      context: { service: name, services: units.map((u) => u.name) },
      hint: `one of: ${units.map((u) => u.name).join(', ')}`,
    });
  }
  const wasRunning = await stopService(dir, name);
  const svc = await unit.start();
  log(`${name} ${wasRunning ? 'restarted' : 'started'} (pid ${svc.pid})`);
  const state = readState(dir) ?? { startedAt: new Date().toISOString(), services: [] };
  if (!state.services.some((s) => s.name === name)) state.services.push({ name, health: unit.health });
  writeFileSync(join(dir, STATE_FILE), JSON.stringify(state, null, 2));
  return { ...(await unitStatus(dir, name, unit.health)), action: wasRunning ? 'restarted' : 'started' };
}

/** The ClickHouse layout the stack in `dir` was last brought up with (undefined: never up). */
export function recordedClickHouseLayout(dir: string): ClickHouseLayout | undefined {
  const state = readState(resolve(dir));
  return state ? (state.clickhouse ?? { shards: 1, replicas: 1 }) : undefined;
}

/** How many nats-server nodes the stack in `dir` was last brought up with (undefined: never up). */
export function recordedNatsNodes(dir: string): number | undefined {
  return readState(resolve(dir))?.natsNodes;
}

function readState(dir: string): StackState | undefined {
  const f = join(dir, STATE_FILE);
  return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as StackState) : undefined;
}

/** Stop every recorded service, apps first (they drain into the servers). Returns the names stopped. */
export async function stackDown(dirIn: string): Promise<string[]> {
  const dir = resolve(dirIn);
  const state = readState(dir);
  const names = state ? state.services.map((s) => s.name).reverse() : [];
  for (const n of [NATS_SERVICE, CLICKHOUSE_SERVICE]) if (!names.includes(n)) names.push(n);
  const stopped: string[] = [];
  for (const name of names) if (await stopService(dir, name)) stopped.push(name);
  if (state) writeFileSync(join(dir, STATE_FILE), JSON.stringify({ ...state, services: [] }, null, 2));
  return stopped;
}

export async function stackStatus(dirIn: string): Promise<ServiceStatus[]> {
  const dir = resolve(dirIn);
  const state = readState(dir);
  if (!state) return [];
  const out: ServiceStatus[] = [];
  for (const s of state.services) out.push(await unitStatus(dir, s.name, s.health));
  return out;
}
