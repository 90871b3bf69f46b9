/**
 * `cm serve`'s core: the concept service's gRPC endpoint (the same server and session code) with
 * the engine writing straight into a store (normally the embedded chDB one): no NATS, no ClickHouse
 * server, like Jaeger's all-in-one. A checkpoint is acknowledged once its records are in the store.
 * Run state is kept in this process (MemoryRunStateStore): a trainer that reconnects to the same
 * process carries its run on; after a restart a resumed run starts its label-switch and alert
 * history afresh (the labels themselves are in the store).
 */
import {
  CmError,
  createLogger,
  errorMessage,
  startHealthServer,
  withTimeout,
  type HealthServer,
  type Logger,
} from '@cm/core';
import type { CmConfig } from '@cm/config';
import type { Store } from '@cm/store';
import {
  engineFromConfig,
  storedRunCheck,
  storeSink,
  type BundleSource,
  type ConceptEngine,
  type RecordStore,
} from '@cm/engine';
import { metricsResponse } from '@cm/metrics';
import { instrumentService } from './metrics';
import { createConceptServer, type ConceptServer } from './server';
import type { CheckpointInfo } from './session';

export interface AllInOneOptions {
  config: CmConfig;
  /** Where records go; the caller opens (and migrates) it and closes it after stop(). Queried for used run ids. */
  store: RecordStore & { query?: Store['query'] };
  /** host:port to listen on (port 0 picks one). Default CM_GRPC_LISTEN. */
  listen?: string;
  /** HTTP GET /healthz on 127.0.0.1:<port> (0 picks one); false: none. Default CM_SERVICE_HEALTH_PORT. */
  healthPort?: number | false;
  /** Default: CM_BUNDLE_DIR. */
  bundles?: BundleSource;
  /** Dissection worker threads. Default CM_DISSECT_WORKERS. */
  workers?: number;
  log?: Logger;
  onCheckpoint?: (info: CheckpointInfo) => void;
}

export interface AllInOneServer {
  /** host:port trainers connect to. */
  grpcAddress: string;
  grpcPort: number;
  healthPort?: number;
  server: ConceptServer;
  engine: ConceptEngine;
  /** Drain streams (ack what was received), stop the server and the dissection workers. */
  stop(): Promise<void>;
}

export async function startAllInOne(opts: AllInOneOptions): Promise<AllInOneServer> {
  const cfg = opts.config;
  const log = opts.log ?? createLogger('serve');
  let streams = (): number => 0;
  const instruments = instrumentService('cm-serve', () => streams());
  const built = engineFromConfig(cfg, {
    bundles: opts.bundles,
    workers: opts.workers,
    // cm serve keeps run state in memory: after a restart the store's runs table says which ids are used
    runExists: storedRunCheck(opts.store),
    onLayerDissected: instruments.onLayerDissected,
    onAbandoned: (record) =>
      void sink.write([record]).catch((e: unknown) =>
        log.warn(`could not record run ${record.runId} as abandoned: ${errorMessage(e)}`, {
          runId: record.runId,
        }),
      ),
  });
  const query = opts.store.query?.bind(opts.store);
  const sink = built.withAlertDelivery(instruments.timed(storeSink(opts.store)));
  const server = createConceptServer({
    engine: built.engine,
    sink,
    observer: instruments.observer,
    // health is a real query of the store, bounded in time
    ready: query
      ? async () => void (await withTimeout(query('SELECT 1 AS ok'), 2000, 'the store'))
      : undefined,
    maxMessageBytes: cfg.grpc.maxMessageBytes,
    maxCheckpointBytes: cfg.grpc.maxCheckpointBytes,
    maxBufferedBytes: cfg.grpc.maxBufferedBytes,
    log,
    onCheckpoint: opts.onCheckpoint,
  });
  streams = () => server.activeStreams;
  const listen = opts.listen ?? cfg.grpc.listen;
  let grpcPort: number;
  try {
    grpcPort = await server.listen(listen);
  } catch (e) {
    await built.close();
    throw e;
  }
  const healthPort = opts.healthPort === undefined ? cfg.service.healthPort : opts.healthPort;
  let health: HealthServer | undefined;
  if (healthPort !== false) {
    try {
      health = await startHealthServer(
        healthPort,
        async () => {
          const h = await server.health();
          return { ...h, ok: h.status === 'SERVING' };
        },
        '127.0.0.1',
        () => metricsResponse(instruments.metrics.registry),
      );
    } catch (e) {
      await server.stop(0);
      await built.close();
      throw new CmError(
        'UNAVAILABLE',
        `cannot serve /healthz on 127.0.0.1:${healthPort}: ${errorMessage(e)}`,
        {
          context: { healthPort },
          cause: e,
          hint: 'another process holds the port: pick another with --health-port (0 picks a free one)',
        },
      );
    }
  }
  return {
    grpcAddress: `${listen.replace(/:\d+$/, '')}:${grpcPort}`,
    grpcPort,
    healthPort: health?.port,
    server,
    engine: built.engine,
    async stop() {
      await server.stop();
      await health?.close();
      await built.close();
    },
  };
}
