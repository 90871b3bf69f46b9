/**
 * All-in-one mode: the Monitor a trainer gets when everything runs in one process (the laptop and
 * the demo, like Jaeger's all-in-one). The same engine and dissection as the concept service, no
 * gRPC and no NATS: records go straight into a store, normally the embedded chDB one.
 */
import { CmError } from '@cm/core';
import type {
  CheckpointData,
  CheckpointResult,
  Monitor,
  RandomInitBaseline,
  RunSpec,
  StartOptions,
} from '@cm/contracts';
import { withWebhook, type CollapseRulesConfig, type WebhookNotifier } from '@cm/alerts';
import { DissectPool, type DissectOptions } from '@cm/dissect';
import { ConceptEngine, type BundleSource, type LayerDissector } from './engine';
import { storeSink, type RecordSink, type RecordStore } from './sink';
import type { BaselineStore } from './baselines';

export interface LocalMonitorOptions {
  bundles: BundleSource;
  store: RecordStore;
  /** Dissection worker threads (ignored when `dissector` is given). */
  workers?: number;
  /** Use this dissector instead of a worker pool owned by the monitor. */
  dissector?: LayerDissector;
  alertRules?: CollapseRulesConfig;
  dissectOptions?: Omit<DissectOptions, 'previousTop1'>;
  /** Replace the store sink (tests). */
  sink?: RecordSink;
  /** POST alerts to a webhook once they are stored (CM_ALERT_WEBHOOK_URL). */
  webhook?: WebhookNotifier;
  /** Whether a run id was used before (ConceptEngineOptions.runExists). */
  runExists?: (runId: string) => Promise<boolean>;
  /** Random-init baselines of the learned-concept figure (ConceptEngineOptions.baselines). */
  baselines?: BaselineStore;
}

export interface LocalMonitor extends Monitor {
  readonly engine: ConceptEngine;
  baselineWanted(): Promise<boolean>;
  sendBaseline(baseline: RandomInitBaseline): Promise<void>;
}

export function createLocalMonitor(opts: LocalMonitorOptions): LocalMonitor {
  const pool = opts.dissector ? undefined : new DissectPool({ workers: opts.workers ?? 1 });
  const dissector: LayerDissector = opts.dissector ?? (pool as DissectPool);
  const engine = new ConceptEngine({
    bundles: opts.bundles,
    dissector,
    alertRules: opts.alertRules,
    dissectOptions: opts.dissectOptions,
    runExists: opts.runExists,
    baselines: opts.baselines,
  });
  const stored = opts.sink ?? storeSink(opts.store);
  const sink: RecordSink = opts.webhook ? withWebhook(stored, opts.webhook) : stored;
  let runId: string | undefined;

  const current = (): string => {
    if (runId === undefined)
      throw new CmError('NOT_FOUND', 'no run started on this monitor', { hint: 'call startRun first' });
    return runId;
  };

  return {
    engine,
    async startRun(spec: RunSpec, options: StartOptions = {}): Promise<void> {
      if (runId !== undefined && runId !== spec.runId) {
        throw new CmError(
          'INVALID_ARGUMENT',
          `this monitor is running ${runId}; end it before starting ${spec.runId}`,
          {
            context: { runId, next: spec.runId },
          },
        );
      }
      const started = await engine.startRun(spec, { resume: options.resume });
      await sink.write(started.records);
      runId = spec.runId;
    },
    async sendCheckpoint(cp: CheckpointData): Promise<CheckpointResult> {
      const processed = await engine.processCheckpoint(current(), cp);
      await sink.write(processed.records);
      return processed.result;
    },
    async baselineWanted(): Promise<boolean> {
      return engine.baselineWanted(current());
    },
    async sendBaseline(baseline: RandomInitBaseline): Promise<void> {
      await engine.processBaseline(current(), baseline);
    },
    async endRun(status): Promise<void> {
      const record = await engine.endRun(current(), status);
      await sink.write([record]);
      runId = undefined;
    },
    async close(): Promise<void> {
      engine.close();
      await pool?.close();
    },
  };
}
