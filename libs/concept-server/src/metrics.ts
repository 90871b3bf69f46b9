import type { RecordSink } from '@cm/engine';
import { conceptServiceMetrics, serviceRegistry, type ConceptServiceMetrics } from '@cm/metrics';
import type { SessionObserver } from './session';

/**
 * Prometheus metrics of a concept server (the service and `cm serve` alike): the registry, and
 * the hooks that feed it — the sessions' observer, the engine's per-layer timing and a sink
 * wrapper that times each write. `activeStreams` is read at scrape time (the server is made after).
 */
export interface ServiceInstrumentation {
  metrics: ConceptServiceMetrics;
  observer: SessionObserver;
  onLayerDissected(seconds: number): void;
  timed(sink: RecordSink): RecordSink;
}

export function instrumentService(service: string, activeStreams: () => number): ServiceInstrumentation {
  const metrics = conceptServiceMetrics(serviceRegistry(service), activeStreams);
  return {
    metrics,
    observer: {
      checkpointReceived: (bytes) => {
        metrics.checkpointsReceived.inc();
        metrics.activationBytes.inc(bytes);
      },
      checkpointAcked: () => metrics.checkpointsAcked.inc(),
      streamRefused: (code) => metrics.refusals.inc({ code }),
    },
    onLayerDissected: (seconds) => metrics.dissectionSeconds.observe(seconds),
    timed: (sink) => ({
      async write(records) {
        const end = metrics.publishSeconds.startTimer();
        try {
          await sink.write(records);
        } finally {
          end();
        }
      },
    }),
  };
}
