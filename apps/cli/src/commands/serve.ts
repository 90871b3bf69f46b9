/**
 * `cm serve`: the all-in-one server. The concept service's gRPC endpoint with the engine writing
 * straight into the embedded chDB store (no NATS, no ClickHouse server), for trainers in other
 * processes or languages (the Python SDK, `watch()` with a target). SIGINT/SIGTERM: drain the
 * streams (ack what was received), close the store, exit 0.
 */
import type { Command } from 'commander';
import { createLogger, invalidArgument, type Logger } from '@cm/core';
import { loadConfig, resolvePath } from '@cm/config';
import { startAllInOne } from '@cm/concept-server';
import { BundleDirectory } from '@cm/probe';
import {
  describePolicy,
  openStore,
  retentionEnabled,
  scheduleLabelThinning,
  startReaderEndpoint,
  type ThinningSchedule,
} from '@cm/store';
import { startUiServer } from '@cm/ui';

const log = createLogger('serve');

export interface ServeFlags {
  listen?: string;
  store?: string;
  ui: boolean;
  uiPort: string;
  healthPort?: string;
  workers?: string;
}

function parsePort(value: string, flag: string, allowZero: boolean): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1) || n > 65535)
    throw invalidArgument(
      `${flag} must be a port number${allowZero ? ' (0 picks a free one)' : ''}, got '${value}'`,
    );
  return n;
}

function waitForSignal(): Promise<string> {
  return new Promise((resolve) => {
    const onInt = () => done('SIGINT');
    const onTerm = () => done('SIGTERM');
    const done = (signal: string) => {
      process.removeListener('SIGINT', onInt);
      process.removeListener('SIGTERM', onTerm);
      resolve(signal);
    };
    process.once('SIGINT', onInt);
    process.once('SIGTERM', onTerm);
  });
}

export async function runServe(
  flags: ServeFlags,
  out: (line: string) => void,
  logger: Logger = log,
): Promise<void> {
  const config = loadConfig(process.env, {
    'grpc.listen': flags.listen,
    chdbPath: flags.store,
    'dissect.workers': flags.workers,
  });
  const healthPort =
    flags.healthPort === undefined ? undefined : parsePort(flags.healthPort, '--health-port', true);
  const uiPort = flags.ui ? parsePort(flags.uiPort, '--ui-port', true) : undefined;
  const storePath = resolvePath(config.chdbPath);
  const bundles = resolvePath(config.bundles.dir);
  const store = await openStore({ kind: 'chdb', path: storePath, database: config.clickhouse.database });
  let stopServer: (() => Promise<void>) | undefined;
  let stopUi: (() => Promise<void>) | undefined;
  let stopReader: (() => Promise<void>) | undefined;
  let thinning: ThinningSchedule | undefined;
  try {
    await store.migrate();
    // label retention (CM_LABELS_*; off by default): this process writes the folder, so it thins it
    thinning = scheduleLabelThinning(store, config.retention, {
      intervalMs: config.retention.intervalMinutes * 60_000,
      log: logger.child('retention'),
    });
    // chDB lets one process open the folder: `cm sql`, `cm runs`, `cm ui` in another shell read
    // through this endpoint while the server writes (libs/store reader-endpoint).
    stopReader = (await startReaderEndpoint(store, { writer: 'cm serve' })).close;
    const running = await startAllInOne({ config, store, healthPort, log: logger });
    stopServer = running.stop;
    out(`cm serve: gRPC ${running.grpcAddress} (trainers: target "${running.grpcAddress}")`);
    out(`  store:   ${storePath} (embedded chDB, database ${config.clickhouse.database})`);
    out(`  bundles: ${bundles}`);
    if (running.healthPort !== undefined) out(`  health:  http://127.0.0.1:${running.healthPort}/healthz`);
    if (retentionEnabled(config.retention))
      out(
        `  retention: ${describePolicy(config.retention)} (a pass every ${config.retention.intervalMinutes} min)`,
      );
    if (uiPort !== undefined) {
      const host = running.grpcAddress.startsWith('0.0.0.0') ? '0.0.0.0' : '127.0.0.1';
      const ui = await startUiServer({
        store,
        bundles: new BundleDirectory(bundles),
        host,
        port: uiPort,
        log: logger.child('ui'),
      });
      stopUi = ui.close;
      out(`  web view: ${ui.url}`);
    }
    out('  stop with Ctrl-C (SIGINT) or SIGTERM: streams are drained, received checkpoints acknowledged');
    const signal = await waitForSignal();
    logger.info('stopping', { signal });
  } finally {
    try {
      await stopUi?.();
      await stopServer?.();
      await thinning?.stop();
      await stopReader?.();
    } finally {
      await store.close();
    }
  }
  out('cm serve: stopped');
  // Everything is closed, so the process should end by itself. Once, on a loaded CI machine, it
  // did not within 30 s after a SIGTERM: should a handle still hold the event loop, name it and
  // exit instead of hanging (unref: this timer alone keeps nothing alive).
  setTimeout(() => {
    logger.warn(
      `cm serve: still running 5 s after it stopped; open: ${process.getActiveResourcesInfo().join(', ')}`,
    );
    process.exit(process.exitCode ?? 0);
  }, 5000).unref();
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description(
      'all-in-one server: the concept service gRPC endpoint writing into the embedded store (no NATS, no ClickHouse)',
    )
    .option('--listen <host:port>', 'gRPC address to listen on (default CM_GRPC_LISTEN, 127.0.0.1:50051)')
    .option('--store <dir>', 'embedded chDB store folder (default CM_CHDB_PATH, $CM_HOME/store)')
    .option(
      '--health-port <port>',
      'HTTP GET /healthz port on 127.0.0.1 (default CM_SERVICE_HEALTH_PORT; 0 picks one)',
    )
    .option('--workers <n>', 'dissection worker threads (default CM_DISSECT_WORKERS)')
    .option('--ui-port <port>', 'web view port', '6060')
    .option('--no-ui', 'do not serve the web view')
    .action((flags: ServeFlags) => runServe(flags, (line) => process.stdout.write(line + '\n')));
}
