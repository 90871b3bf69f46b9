import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CmError, errorMessage } from '@cm/core';
import { httpOk, isAlive, readPid, startService, stopService } from './process';
import { CLICKHOUSE_SERVICE, NATS_SERVICE, startClickHouse, startNats } from './servers';

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
  clickhouseHttpPort: number;
  clickhouseTcpPort: number;
  apps?: AppService[];
}

interface StackState {
  startedAt: string;
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
  start(): Promise<{ pid: number }>;
}

function stackUnits(opts: StackOptions, dir: string): StackUnit[] {
  const units: StackUnit[] = [
    {
      name: NATS_SERVICE,
      health: `http://127.0.0.1:${opts.natsMonitorPort}/healthz`,
      start: () => startNats({ dir, port: opts.natsPort, monitorPort: opts.natsMonitorPort }),
    },
    {
      name: CLICKHOUSE_SERVICE,
      health: `http://127.0.0.1:${opts.clickhouseHttpPort}/ping`,
      start: () =>
        startClickHouse({ dir, httpPort: opts.clickhouseHttpPort, tcpPort: opts.clickhouseTcpPort }),
    },
  ];
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
  const healthy = running ? await httpOk(health).catch(() => false) : false;
  return { name, pid, running, healthy, health };
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
  const state: StackState = { startedAt: previous?.startedAt ?? new Date().toISOString(), services: [] };
  const save = (): void => writeFileSync(join(dir, STATE_FILE), JSON.stringify(state, null, 2));
  const startedNow: string[] = [];
  const out: StackUpEntry[] = [];
  try {
    for (const unit of stackUnits(opts, dir)) {
      const before = await unitStatus(dir, unit.name, unit.health);
      let action: StackAction = 'kept';
      if (!before.healthy) {
        if (before.running) await stopService(dir, unit.name);
        const svc = await unit.start();
        startedNow.push(unit.name);
        action = before.running ? 'restarted' : 'started';
        log(`${unit.name} ${action} (pid ${svc.pid})`);
      } else {
        log(`${unit.name} already running and healthy (pid ${before.pid}): kept`);
      }
      state.services.push({ name: unit.name, health: unit.health });
      save();
      out.push({ ...(await unitStatus(dir, unit.name, unit.health)), action });
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
