import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CmError, waitFor } from '@cm/core';

/**
 * Background processes with recorded process ids: the shell of the local stack. A service is
 * started detached (it outlives `cm stack up`), its pid goes to <dir>/<name>.pid, its output to
 * <dir>/<name>.log, and it counts as up once its health check answers.
 */
export interface ServiceSpec {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Resolves true once the service answers. */
  health: () => Promise<boolean>;
  startTimeoutMs?: number;
}

export interface RunningService {
  name: string;
  pid: number;
  logFile: string;
}

export function pidFile(dir: string, name: string): string {
  return join(dir, `${name}.pid`);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function readPid(dir: string, name: string): number | undefined {
  const f = pidFile(dir, name);
  if (!existsSync(f)) return undefined;
  const pid = Number(readFileSync(f, 'utf8').trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

export async function startService(dir: string, spec: ServiceSpec): Promise<RunningService> {
  mkdirSync(dir, { recursive: true });
  const existing = readPid(dir, spec.name);
  if (existing !== undefined && isAlive(existing)) {
    throw new CmError('INVALID_ARGUMENT', `${spec.name} is already running (pid ${existing})`, {
      context: { service: spec.name, pid: existing },
      hint: 'run `cm stack down` first, or `cm stack status`',
    });
  }
  const logFile = join(dir, `${spec.name}.log`);
  const fd = openSync(logFile, 'a');
  let child;
  try {
    child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.env ?? process.env,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
  } finally {
    closeSync(fd);
  }
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  child.unref();
  const pid = child.pid;
  if (pid === undefined) {
    const err = await spawnError;
    throw new CmError('UNAVAILABLE', `cannot start ${spec.name}: ${err.message}`, {
      context: { service: spec.name, command: spec.command },
      hint: 'install it with `bash tools/stack/install.sh`',
    });
  }
  writeFileSync(pidFile(dir, spec.name), String(pid));
  let exited = false;
  child.once('exit', () => (exited = true));
  const ok = await waitFor(async () => {
    if (exited) throw new Error('exited');
    return spec.health();
  }, spec.startTimeoutMs ?? 30_000);
  if (!ok || exited) {
    await stopService(dir, spec.name);
    const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '';
    throw new CmError('UNAVAILABLE', `${spec.name} did not become healthy${exited ? ' (it exited)' : ''}`, {
      context: { service: spec.name, logFile, logTail: tail },
      hint: `see ${logFile}`,
    });
  }
  return { name: spec.name, pid, logFile };
}

/** Stop a recorded service: SIGTERM, then SIGKILL after `graceMs`. Returns whether it was running. */
export async function stopService(dir: string, name: string, graceMs = 10_000): Promise<boolean> {
  const pid = readPid(dir, name);
  if (pid === undefined) return false;
  const wasAlive = isAlive(pid);
  if (wasAlive) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
    const gone = await waitFor(async () => !isAlive(pid), graceMs, 50);
    if (!gone) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await waitFor(async () => !isAlive(pid), 5_000, 50);
    }
  }
  rmSync(pidFile(dir, name), { force: true });
  return wasAlive;
}

export async function httpOk(url: string, expect?: (body: string) => boolean): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  if (!res.ok) return false;
  return expect ? expect(await res.text()) : true;
}
