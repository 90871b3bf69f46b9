import { createServer, type Server } from 'node:http';
import { connectBus, type Bus } from '@cm/bus';
import { loadConfig, type CmConfig } from '@cm/config';
import { createLogger, errorMessage, setLogFormat, setLogLevel } from '@cm/core';
import { openStore, describeTarget, storeTargetFromString, type Store } from '@cm/store';
import { RecorderConsumer } from './recorder';

/**
 * The recorder process: NATS JetStream -> ClickHouse. Configuration from the environment
 * (CM_NATS_URL, CM_CLICKHOUSE_URL, CM_CLICKHOUSE_DATABASE, CM_RECORDER_HEALTH_PORT,
 * CM_RECORDER_BATCH_MESSAGES, CM_RECORDER_ACK_WAIT_MS). GET /healthz answers 200 while NATS is
 * connected and the last insert succeeded, else 503. SIGTERM/SIGINT: stop pulling, write and ack
 * what is buffered, exit 0.
 */
const log = createLogger('recorder');

export interface RunningRecorder {
  recorder: RecorderConsumer;
  healthPort: number;
  stop(): Promise<void>;
}

export async function startRecorder(config: CmConfig): Promise<RunningRecorder> {
  const bus: Bus = await connectBus({ url: config.nats.url, user: config.nats.user, password: config.nats.password, name: 'cm-recorder' });
  let store: Store | undefined;
  try {
    // the recorder writes to a ClickHouse server; the embedded chDB store is the all-in-one mode's
    store = await openStore(storeTargetFromString(config.clickhouse.url, config.clickhouse));
    await store.migrate();
    await bus.ensureStream(config.nats.replicas);
    log.info('store ready', { store: describeTarget(store.target), version: store.serverVersion, features: store.features });
  } catch (e) {
    await store?.close();
    await bus.close();
    throw e;
  }
  const recorder = new RecorderConsumer({
    js: bus.js,
    jsm: bus.jsm,
    store,
    batchMessages: config.recorder.batchMessages,
    ackWaitMs: config.recorder.ackWaitMs,
    logger: log,
  });
  await recorder.start();

  const server: Server = createServer((req, res) => {
    if (req.url?.split('?')[0] !== '/healthz') {
      res.writeHead(404).end();
      return;
    }
    const natsUp = !bus.nc.isClosed();
    const ok = natsUp && recorder.healthy();
    res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: ok ? 'ok' : 'unhealthy', nats: natsUp ? 'connected' : 'closed', ...recorder.stats }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.recorder.healthPort, '127.0.0.1', () => resolve());
  });
  log.info('health endpoint', { url: `http://127.0.0.1:${config.recorder.healthPort}/healthz` });

  const activeStore = store;
  return {
    recorder,
    healthPort: config.recorder.healthPort,
    stop: async () => {
      await recorder.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await bus.close(); // drains: the last acks reach the server
      await activeStore.close();
    },
  };
}

async function main(): Promise<void> {
  const config = loadConfig();
  setLogLevel(config.log.level);
  setLogFormat(config.log.format);
  const running = await startRecorder(config);
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { signal });
    running.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error('unclean stop', { error: errorMessage(e) });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

if (require.main === module) {
  main().catch((e: unknown) => {
    log.error(`recorder failed to start: ${errorMessage(e)}`);
    process.exit(1);
  });
}
