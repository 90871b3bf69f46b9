import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { errorMessage } from '@cm/core';
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

export async function stackUp(
  opts: StackOptions,
  log: (line: string) => void = () => undefined,
): Promise<ServiceStatus[]> {
  const dir = resolve(opts.dir);
  mkdirSync(dir, { recursive: true });
  const state: StackState = { startedAt: new Date().toISOString(), services: [] };
  const save = (): void => writeFileSync(join(dir, STATE_FILE), JSON.stringify(state, null, 2));
  try {
    const nats = await startNats({ dir, port: opts.natsPort, monitorPort: opts.natsMonitorPort });
    state.services.push({ name: NATS_SERVICE, health: `http://127.0.0.1:${opts.natsMonitorPort}/healthz` });
    save();
    log(`nats-server up: ${nats.url} (pid ${nats.pid})`);
    const ch = await startClickHouse({
      dir,
      httpPort: opts.clickhouseHttpPort,
      tcpPort: opts.clickhouseTcpPort,
    });
    state.services.push({ name: CLICKHOUSE_SERVICE, health: `${ch.url}/ping` });
    save();
    log(`clickhouse-server up: ${ch.url} (pid ${ch.pid})`);
    for (const app of opts.apps ?? []) {
      const health = `http://127.0.0.1:${app.healthPort}/healthz`;
      const svc = await startService(dir, {
        name: app.name,
        command: process.execPath,
        args: ['--import', 'tsx', app.entry],
        env: app.env,
        health: () => httpOk(health),
        startTimeoutMs: 60_000,
      });
      state.services.push({ name: app.name, health });
      save();
      log(`${app.name} up (pid ${svc.pid})`);
    }
  } catch (e) {
    log(`start failed: ${errorMessage(e)}; stopping what was started`);
    await stackDown(dir);
    throw e;
  }
  return stackStatus(dir);
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
  for (const s of state.services) {
    const pid = readPid(dir, s.name);
    const running = pid !== undefined && isAlive(pid);
    let healthy = false;
    if (running) healthy = await httpOk(s.health).catch(() => false);
    out.push({ name: s.name, pid, running, healthy, health: s.health });
  }
  return out;
}
