/**
 * The pipeline's Prometheus metrics, named once (prom-client). Each service makes its own registry
 * with `processMetrics` (memory, CPU, event loop: prom-client's defaults) and the set it owns, and
 * serves `registry.metrics()` at GET /metrics beside /healthz (libs/core startHealthServer). The
 * services' logic does not import prom-client: it reports through small observer interfaces
 * (RecorderObserver, ...) and the shell wires those to the metrics here, the way OpenTelemetry
 * separates instrumentation from exporters.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export { Registry };

export const METRIC_PREFIX = 'cm_';

/** A registry with the process metrics (cm_process_*, cm_nodejs_*) and a `service` label on every series. */
export function serviceRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });
  // not among prom-client's defaults, and where a dissecting service's memory mostly is: the
  // SharedArrayBuffers of pooled layers and similarity matrices (docs/dissect.md, "Memory")
  new Gauge({
    name: `${METRIC_PREFIX}nodejs_array_buffers_bytes`,
    help: 'Bytes of ArrayBuffers and SharedArrayBuffers (Node Buffers included) alive in the process (process.memoryUsage().arrayBuffers)',
    registers: [registry],
    collect() {
      this.set(process.memoryUsage().arrayBuffers);
    },
  });
  return registry;
}

/** What `/metrics` answers: prom-client's text exposition format. */
export async function metricsResponse(registry: Registry): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}

/** Batch sizes in messages and insert times in seconds: buckets around what the recorder does. */
const BATCH_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500];
const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface RecorderMetrics {
  registry: Registry;
  messagesStored: Counter;
  messagesTerminated: Counter;
  redeliveries: Counter;
  rowsInserted: Counter<'table'>;
  failedInserts: Counter;
  batchMessages: Histogram;
  insertSeconds: Histogram;
  consumerPending: Gauge;
  consumerAckPending: Gauge;
}

/**
 * The recorder's metrics. `consumerInfo` is read at scrape time (a JetStream request), so the lag
 * is what the server says now, not what the recorder last saw.
 */
export function recorderMetrics(
  registry: Registry,
  consumerInfo: () => Promise<{ pending: number; ackPending: number }>,
): RecorderMetrics {
  const p = METRIC_PREFIX + 'recorder_';
  let last: Promise<{ pending: number; ackPending: number }> | undefined;
  // one JetStream request per scrape, shared by the two gauges
  const info = (): Promise<{ pending: number; ackPending: number }> => {
    last ??= consumerInfo().finally(() => setImmediate(() => (last = undefined)));
    return last;
  };
  return {
    registry,
    messagesStored: new Counter({
      name: `${p}messages_stored_total`,
      help: 'JetStream messages stored in ClickHouse and acknowledged',
      registers: [registry],
    }),
    messagesTerminated: new Counter({
      name: `${p}messages_terminated_total`,
      help: 'malformed messages terminated (never stored, never redelivered)',
      registers: [registry],
    }),
    redeliveries: new Counter({
      name: `${p}redeliveries_total`,
      help: 'messages received again after an earlier delivery (crash, nak or ack wait)',
      registers: [registry],
    }),
    rowsInserted: new Counter({
      name: `${p}rows_inserted_total`,
      help: 'rows inserted, by table',
      labelNames: ['table'],
      registers: [registry],
    }),
    failedInserts: new Counter({
      name: `${p}failed_inserts_total`,
      help: 'inserts that failed (their messages are redelivered)',
      registers: [registry],
    }),
    batchMessages: new Histogram({
      name: `${p}batch_messages`,
      help: 'messages per stored batch',
      buckets: BATCH_BUCKETS,
      registers: [registry],
    }),
    insertSeconds: new Histogram({
      name: `${p}insert_seconds`,
      help: 'time of one ClickHouse insert',
      buckets: SECONDS_BUCKETS,
      registers: [registry],
    }),
    consumerPending: new Gauge({
      name: `${p}consumer_pending_messages`,
      help: 'messages in the stream not yet delivered to the recorder (consumer lag)',
      registers: [registry],
      async collect() {
        // JetStream down: keep the last value rather than fail the whole scrape
        const now = await info().catch(() => undefined);
        if (now) this.set(now.pending);
      },
    }),
    consumerAckPending: new Gauge({
      name: `${p}consumer_ack_pending_messages`,
      help: 'messages delivered to the recorder and not yet acknowledged',
      registers: [registry],
      async collect() {
        const now = await info().catch(() => undefined);
        if (now) this.set(now.ackPending);
      },
    }),
  };
}

export interface ConceptServiceMetrics {
  registry: Registry;
  checkpointsReceived: Counter;
  checkpointsAcked: Counter;
  refusals: Counter<'code'>;
  activationBytes: Counter;
  dissectionSeconds: Histogram;
  publishSeconds: Histogram;
  openStreams: Gauge;
}

/**
 * The concept service's (and `cm serve`'s) metrics. `activeStreams` is read at scrape time.
 * `publishSeconds` is the sink's write: the JetStream publish until every PubAck (the service), the
 * store insert (`cm serve`).
 */
export function conceptServiceMetrics(
  registry: Registry,
  activeStreams: () => number,
): ConceptServiceMetrics {
  const p = METRIC_PREFIX + 'service_';
  return {
    registry,
    checkpointsReceived: new Counter({
      name: `${p}checkpoints_received_total`,
      help: 'checkpoints received whole (CheckpointEnd)',
      registers: [registry],
    }),
    checkpointsAcked: new Counter({
      name: `${p}checkpoints_acked_total`,
      help: 'checkpoints whose records are durable and acknowledged',
      registers: [registry],
    }),
    refusals: new Counter({
      name: `${p}refusals_total`,
      help: 'streams ended with an error status, by gRPC code',
      labelNames: ['code'],
      registers: [registry],
    }),
    activationBytes: new Counter({
      name: `${p}activation_bytes_total`,
      help: 'activation bytes received in whole checkpoints',
      registers: [registry],
    }),
    dissectionSeconds: new Histogram({
      name: `${p}dissection_seconds`,
      help: 'time to dissect one layer of one checkpoint',
      buckets: SECONDS_BUCKETS,
      registers: [registry],
    }),
    publishSeconds: new Histogram({
      name: `${p}publish_seconds`,
      help: "time to make one checkpoint's records durable (JetStream publish until acknowledged, or the store insert)",
      buckets: SECONDS_BUCKETS,
      registers: [registry],
    }),
    openStreams: new Gauge({
      name: `${p}open_streams`,
      help: 'trainer streams open now',
      registers: [registry],
      collect() {
        this.set(activeStreams());
      },
    }),
  };
}
