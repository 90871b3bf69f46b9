/**
 * The concept service process: `npx tsx apps/concept-service/src/main.ts`.
 * Configuration from the environment (libs/config): CM_GRPC_LISTEN, CM_NATS_URL, CM_BUNDLE_DIR,
 * CM_DISSECT_WORKERS, CM_SERVICE_HEALTH_PORT (HTTP GET /healthz), CM_GRPC_MAX_MESSAGE_BYTES,
 * CM_SERVICE_MAX_CHECKPOINT_BYTES, CM_SERVICE_RUN_IDLE_MS, CM_RUN_STATE_TTL_HOURS. SIGTERM/SIGINT:
 * drain streams (ack what was received), stop.
 *
 * Per-run state (previous top-1 per layer, collapse-detector history and open episodes) is saved to
 * the JetStream KV bucket CM_RUN_STATE_V1 after every checkpoint, before its ack: a restarted
 * service, or another replica behind the same load balancer, carries a reconnecting run on.
 * Random-init baselines of the learned-concept figure live in the KV bucket CM_BASELINES_V1, shared
 * the same way: each initialisation is kept there as it is dissected, so a run has one baseline
 * whichever replica dissects it, and a replica that dies mid-baseline leaves what it did.
 */
import {
  createLogger,
  errorMessage,
  runService,
  setLogFormat,
  setLogLevel,
  startHealthServer,
  type HealthServer,
} from '@cm/core';
import { loadConfig, type CmConfig } from '@cm/config';
import { connectBus, openBaselineKv, openRunStateKv } from '@cm/bus';
import { engineFromConfig, type ConceptEngine } from '@cm/engine';
import { busSink, createConceptServer, instrumentService, type ConceptServer } from '@cm/concept-server';
import { metricsResponse } from '@cm/metrics';

const log = createLogger('concept-service');
/** A health check answers within this, whatever a frozen NATS does. */
const HEALTH_TIMEOUT_MS = 2000;

export interface RunningService {
  grpcPort: number;
  healthPort?: number;
  server: ConceptServer;
  engine: ConceptEngine;
  stop(): Promise<void>;
}

/** Start the service from a configuration (main() and tests). */
export async function startConceptService(cfg: CmConfig): Promise<RunningService> {
  // Labels travel in the compact columnar form (libs/contracts label-columns): a third of the bytes, and the
  // recorder parses it 4-5x faster than the row form, which it still accepts.
  const bus = await connectBus({
    url: cfg.nats.url,
    user: cfg.nats.user,
    password: cfg.nats.password,
    name: 'concept-service',
    labelEncoding: 'columns',
  });
  await bus.ensureStream(cfg.nats.replicas);
  const stateStore = await openRunStateKv(bus, {
    replicas: cfg.nats.replicas,
    ttlMs: cfg.service.runStateTtlHours * 3600 * 1000,
  });
  const baselines = await openBaselineKv(bus, { replicas: cfg.nats.replicas });
  // a run id is used while its state is saved, and after that while its run record is in the stream
  let streams = (): number => 0;
  const instruments = instrumentService('concept-service', () => streams());
  const built = engineFromConfig(cfg, {
    stateStore,
    baselines,
    runExists: (runId) => bus.runRecordPublished(runId),
    onLayerDissected: instruments.onLayerDissected,
    // a run with no stream for CM_SERVICE_RUN_IDLE_MS is recorded as abandoned (a resume revives it)
    onAbandoned: (record) => {
      log.info(`run ${record.runId} abandoned: no stream for ${cfg.service.runIdleMs} ms`, {
        runId: record.runId,
      });
      sink.write([record]).catch((e: unknown) =>
        log.warn(`could not record run ${record.runId} as abandoned: ${errorMessage(e)}`, {
          runId: record.runId,
        }),
      );
    },
  });
  const engine = built.engine;
  // With CM_ALERT_WEBHOOK_URL set, alerts are POSTed after they are durable in JetStream.
  const sink = built.withAlertDelivery(instruments.timed(busSink(bus)));
  const server = createConceptServer({
    engine,
    sink,
    observer: instruments.observer,
    maxMessageBytes: cfg.grpc.maxMessageBytes,
    maxCheckpointBytes: cfg.grpc.maxCheckpointBytes,
    maxBufferedBytes: cfg.grpc.maxBufferedBytes,
    // a real JetStream round trip with a timeout: the connection flag stays "connected" while
    // nats-server is frozen or has lost JetStream, and every RunStart would then be refused
    ready: async () => {
      const probe = await bus.probe(HEALTH_TIMEOUT_MS);
      if (!probe.ok) throw new Error(`NATS JetStream at ${cfg.nats.url} does not answer: ${probe.detail}`);
    },
    log,
  });
  streams = () => server.activeStreams;
  const grpcPort = await server.listen(cfg.grpc.listen);
  let health: HealthServer | undefined;
  if (cfg.service.healthPort) {
    health = await startHealthServer(
      cfg.service.healthPort,
      async () => {
        const h = await server.health();
        return { ...h, ok: h.status === 'SERVING' };
      },
      '127.0.0.1',
      () => metricsResponse(instruments.metrics.registry),
    );
  }
  log.info(`listening on ${cfg.grpc.listen.replace(/:\d+$/, '')}:${grpcPort}`, {
    nats: cfg.nats.url,
    bundles: cfg.bundles.dir,
    workers: cfg.dissect.workers,
    healthPort: cfg.service.healthPort,
  });
  return {
    grpcPort,
    healthPort: cfg.service.healthPort,
    server,
    engine,
    async stop() {
      await server.stop();
      await health?.close();
      await built.close();
      await bus.close();
    },
  };
}

if (require.main === module) {
  runService(log, async () => {
    const cfg = loadConfig();
    setLogLevel(cfg.log.level);
    setLogFormat(cfg.log.format);
    return startConceptService(cfg);
  });
}
