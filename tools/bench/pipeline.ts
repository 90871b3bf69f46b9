/**
 * The back half of the real pipeline the end-to-end benches measure: nats-server (JetStream) and
 * clickhouse-server on free 127.0.0.1 ports, the store's schema migrated into `database`, and the
 * recorder as its own process (apps/recorder/src/main.ts), healthy before this returns. The bench
 * puts its concept service in front (in process, or as its own process with startNodeApp) and
 * waits for a checkpoint's rows with rowsQueryable.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { CmError, freePort, waitFor } from '@cm/core';
import { startClickHouse, startNats, type ManagedServer } from '@cm/stack';
import { openStore, sqlString, type Store } from '@cm/store';

const ROOT = resolve(__dirname, '../..');

export interface BenchPipeline {
  nats: ManagedServer;
  clickhouse: ManagedServer;
  /** The ClickHouse store of `database`, migrated. */
  store: Store;
  recorder: ChildProcess;
  /**
   * Resolves once `neurons` label rows of (runId, step) are counted in ClickHouse (polled every
   * pollMs); throws when they are not there after timeoutMs.
   */
  rowsQueryable(
    runId: string,
    step: number,
    neurons: number,
    timeoutMs: number,
    pollMs: number,
  ): Promise<void>;
  /** Stops the recorder, closes the store, stops both servers (the bench's own dir stays). */
  stop(): Promise<void>;
}

/**
 * A node app of this repository (`script` relative to the root) run through tsx, at log level warn
 * unless env says otherwise; its stderr is piped when env sets CM_LOG_FORMAT=json (the caller
 * reads the log), else passed on.
 */
export function startNodeApp(script: string, env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', resolve(ROOT, script)], {
    cwd: ROOT,
    env: { ...process.env, CM_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', env.CM_LOG_FORMAT === 'json' ? 'pipe' : 'inherit'],
  });
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
}

/** Waits until http://127.0.0.1:port/healthz answers 200; throws naming `what` after timeoutMs. */
export async function waitHealthy(what: string, port: number, timeoutMs = 60_000): Promise<void> {
  const ok = await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, timeoutMs, 200);
  if (!ok)
    throw new CmError('UNAVAILABLE', `${what} not healthy on port ${port} after ${timeoutMs} ms`, {
      context: { port },
      hint: 'its log went to this terminal (stderr)',
    });
}

/** Starts the pipeline with its servers under `dir` (the caller makes and removes dir). */
export async function startBenchPipeline(opts: { dir: string; database: string }): Promise<BenchPipeline> {
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async (): Promise<void> => {
    for (const stop of stops.splice(0).reverse()) await stop();
  };
  try {
    const nats = await startNats({
      dir: join(opts.dir, 'nats'),
      port: await freePort(),
      monitorPort: await freePort(),
    });
    stops.push(() => nats.stop());
    const clickhouse = await startClickHouse({
      dir: join(opts.dir, 'ch'),
      httpPort: await freePort(),
      tcpPort: await freePort(),
    });
    stops.push(() => clickhouse.stop());
    const store = await openStore({
      kind: 'server',
      url: clickhouse.url,
      user: 'default',
      password: '',
      database: opts.database,
    });
    stops.push(() => store.close());
    await store.migrate();
    const recorderHealth = await freePort();
    const recorder = startNodeApp('apps/recorder/src/main.ts', {
      CM_NATS_URL: nats.url,
      CM_CLICKHOUSE_URL: clickhouse.url,
      CM_CLICKHOUSE_DATABASE: opts.database,
      CM_RECORDER_HEALTH_PORT: String(recorderHealth),
    });
    stops.push(() => stopChild(recorder));
    await waitHealthy('recorder', recorderHealth);
    return {
      nats,
      clickhouse,
      store,
      recorder,
      async rowsQueryable(runId, step, neurons, timeoutMs, pollMs) {
        const sql = `SELECT count() AS n FROM neuron_labels WHERE run_id = ${sqlString(runId)} AND step = ${step}`;
        let seen = 0;
        const ok = await waitFor(
          async () => {
            const [row] = await store.query<{ n: string | number }>(sql);
            seen = Number(row.n);
            return seen >= neurons;
          },
          timeoutMs,
          pollMs,
        );
        if (!ok)
          throw new CmError(
            'TIMEOUT',
            `run ${runId} step ${step}: ${seen} of ${neurons} label rows in ClickHouse after ${timeoutMs} ms`,
            { context: { runId, step, neurons, seen }, hint: 'the recorder log (stderr) says why' },
          );
      },
      stop: stopAll,
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
