import { connectBus, type Bus } from '@cm/bus';
import { loadConfig, type CmConfig } from '@cm/config';
import {
  createLogger,
  errorMessage,
  runService,
  setLogFormat,
  setLogLevel,
  startHealthServer,
  withTimeout,
} from '@cm/core';
import {
  openStore,
  describePolicy,
  describeTarget,
  retentionEnabled,
  scheduleLabelThinning,
  storeTargetFromString,
  type Store,
} from '@cm/store';
import { CONSUMERS, STREAM } from '@cm/contracts';
import { metricsResponse, recorderMetrics, serviceRegistry } from '@cm/metrics';
import { RecorderConsumer } from '@cm/recorder-consumer';

/**
 * The recorder process: NATS JetStream -> ClickHouse. Configuration from the environment
 * (CM_NATS_URL, CM_CLICKHOUSE_URL, CM_CLICKHOUSE_DATABASE, CM_RECORDER_HEALTH_PORT,
 * CM_RECORDER_BATCH_MESSAGES, CM_RECORDER_ACK_WAIT_MS). GET /healthz answers 200 while a JetStream
 * round trip and a ClickHouse query both answer within 2 s and the last insert succeeded, else 503. SIGTERM/SIGINT: stop pulling, write and ack
 * what is buffered, exit 0.
 */
const log = createLogger('recorder');
/** A health check answers within this, whatever a frozen NATS or ClickHouse does. */
const HEALTH_TIMEOUT_MS = 2000;

export interface RunningRecorder {
  recorder: RecorderConsumer;
  healthPort: number;
  stop(): Promise<void>;
}

export async function startRecorder(config: CmConfig): Promise<RunningRecorder> {
  const bus: Bus = await connectBus({
    url: config.nats.url,
    user: config.nats.user,
    password: config.nats.password,
    name: 'cm-recorder',
  });
  let store: Store | undefined;
  try {
    // the recorder writes to a ClickHouse server; the embedded chDB store is the all-in-one mode's
    store = await openStore(storeTargetFromString(config.clickhouse.url, config.clickhouse));
    await store.migrate();
    await bus.ensureStream(config.nats.replicas);
    log.info('store ready', {
      store: describeTarget(store.target),
      version: store.serverVersion,
      features: store.features,
    });
  } catch (e) {
    await store?.close();
    await bus.close();
    throw e;
  }
  const metrics = recorderMetrics(serviceRegistry('recorder'), async () => {
    const info = await bus.jsm.consumers.info(STREAM.name, CONSUMERS.recorder);
    return { pending: info.num_pending, ackPending: info.num_ack_pending };
  });
  const recorder = new RecorderConsumer({
    js: bus.js,
    jsm: bus.jsm,
    store,
    batchMessages: config.recorder.batchMessages,
    ackWaitMs: config.recorder.ackWaitMs,
    logger: log,
    observer: {
      batchStored: ({ messages, rows, insertSeconds }) => {
        metrics.messagesStored.inc(messages);
        metrics.batchMessages.observe(messages);
        metrics.insertSeconds.observe(insertSeconds);
        for (const [table, n] of Object.entries(rows)) metrics.rowsInserted.inc({ table }, n);
      },
      insertFailed: () => metrics.failedInserts.inc(),
      messageTerminated: () => metrics.messagesTerminated.inc(),
      messageRedelivered: () => metrics.redeliveries.inc(),
    },
  });
  await recorder.start();
  // label retention (CM_LABELS_*; off by default): a pass every CM_RETENTION_INTERVAL_MINUTES
  const thinning = scheduleLabelThinning(store, config.retention, {
    intervalMs: config.retention.intervalMinutes * 60_000,
    log: log.child('retention'),
  });
  if (retentionEnabled(config.retention))
    log.info(`label retention: ${describePolicy(config.retention)}`, { ...config.retention });

  // Each check is a real round trip with a timeout: JetStream (can the recorder fetch?) and
  // ClickHouse (can it insert?), besides the consumer's own state (did the last insert fail?).
  const healthStore = store;
  const health = await startHealthServer(
    config.recorder.healthPort,
    async () => {
      const [nats, clickhouse] = await Promise.all([
        bus.probe(HEALTH_TIMEOUT_MS),
        withTimeout(healthStore.query('SELECT 1 AS ok'), HEALTH_TIMEOUT_MS, 'ClickHouse SELECT 1').then(
          () => 'ok',
          (e: unknown) => errorMessage(e),
        ),
      ]);
      return {
        ok: nats.ok && clickhouse === 'ok' && recorder.healthy(),
        nats: nats.ok ? 'connected' : 'unreachable',
        jetstream: nats.detail,
        clickhouse,
        ...recorder.stats,
      };
    },
    '127.0.0.1',
    () => metricsResponse(metrics.registry),
  );
  log.info('health and metrics endpoints', {
    health: `http://127.0.0.1:${config.recorder.healthPort}/healthz`,
    metrics: `http://127.0.0.1:${config.recorder.healthPort}/metrics`,
  });

  const activeStore = store;
  return {
    recorder,
    healthPort: config.recorder.healthPort,
    stop: async () => {
      await recorder.stop();
      await thinning.stop();
      await health.close();
      await bus.close(); // drains: the last acks reach the server
      await activeStore.close();
    },
  };
}

if (require.main === module) {
  runService(log, async () => {
    const config = loadConfig();
    setLogLevel(config.log.level);
    setLogFormat(config.log.format);
    return startRecorder(config);
  });
}
