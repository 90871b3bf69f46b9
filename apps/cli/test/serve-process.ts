import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const CM = join(__dirname, '..', 'bin', 'cm.js');

export interface ServeProcess {
  /** host:port printed by `cm serve` (trainers' target). */
  target: string;
  healthUrl: string;
  child: ChildProcess;
  output(): string;
  /** SIGTERM (or `signal`), then the exit code and everything it printed. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/**
 * `cm serve` as a user starts it (a subprocess), on a free port of 127.0.0.1 (port 0: the server
 * picks one and prints it) with /healthz on another, without the web view unless `--ui-port` is
 * in `args`; resolves once it printed its address and
 * answers /healthz. Stopped by its pid only.
 */
export async function startServe(
  env: NodeJS.ProcessEnv,
  args: string[] = [],
  timeoutMs = 60_000,
): Promise<ServeProcess> {
  const child = spawn(
    process.execPath,
    [
      CM,
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--health-port',
      '0',
      ...(args.includes('--ui-port') ? [] : ['--no-ui']),
      ...args,
    ],
    { env: { ...process.env, CM_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + timeoutMs;
  let target: string | undefined;
  let healthUrl: string | undefined;
  while (!target || !healthUrl) {
    target = /cm serve: gRPC (\S+)/.exec(stdout)?.[1];
    healthUrl = /health: +(\S+)/.exec(stdout)?.[1];
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`cm serve did not start (exit ${child.exitCode}):\n${stdout}\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    target,
    healthUrl,
    child,
    output: () => stdout + stderr,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const code = await exited;
      clearTimeout(timer);
      return { code, stdout, stderr };
    },
  };
}
