/**
 * The one way an engine is built from the validated configuration: the concept service, `cm serve`,
 * `cm train`, `cm demo` and the benches all come through here, so CM_DISSECT_METHOD, CM_ALERT_* and
 * CM_ALERT_WEBHOOK_URL act the same in a service run and in an all-in-one run. Defaults live in
 * libs/config; this module only maps settings onto engine options.
 */
import type { CmConfig } from '@cm/config';
import type { RunRecord } from '@cm/contracts';
import { join } from 'node:path';
import { resolvePath } from '@cm/config';
import { FileBaselineStore, type BaselineStore } from './baselines';
import { rulesFromConfig, webhookFromConfig, withWebhook, type CollapseRulesConfig } from '@cm/alerts';
import { DissectPool, type DissectOptions } from '@cm/dissect';
import { BundleDirectory, type LoadBundleOptions } from '@cm/probe';
import { ConceptEngine, type BundleSource, type LayerDissector } from './engine';
import { createLocalMonitor, type LocalMonitor } from './local';
import type { RunStateStore } from './run-state';
import type { RecordSink, RecordStore } from './sink';
import { runIsStored, type Store } from '@cm/store';

/** What a caller may replace; everything else comes from the configuration. */
export interface EngineOverrides {
  /** Default: the bundle directory CM_BUNDLE_DIR. */
  bundles?: BundleSource;
  /** Default: a DissectPool of `workers` threads, owned (and closed) by the built engine. */
  dissector?: LayerDissector;
  /** Default: CM_DISSECT_WORKERS. */
  workers?: number;
  /** Default: in this process (MemoryRunStateStore); the concept service passes the JetStream KV bucket. */
  stateStore?: RunStateStore;
  /**
   * Default: files under <CM_HOME>/baselines; the concept service passes the JetStream KV bucket its
   * replicas share (@cm/bus openBaselineKv), so a run has one baseline whichever replica serves it.
   */
  baselines?: BaselineStore;
  /** Default: CM_SERVICE_RUN_IDLE_MS. */
  runIdleMs?: number;
  /** Whether a run id was used before (ConceptEngineOptions.runExists); the service asks JetStream. */
  runExists?: (runId: string) => Promise<boolean>;
  /** ConceptEngineOptions.onLayerDissected (metrics). */
  onLayerDissected?: (seconds: number, neurons: number) => void;
  /** ConceptEngineOptions.onAbandoned: where the services write a run gone idle. */
  onAbandoned?: (record: RunRecord) => void;
}

/** The engine settings the configuration decides (for callers that build engines themselves). */
export interface EngineSettings {
  alertRules: CollapseRulesConfig;
  dissectOptions: Omit<DissectOptions, 'previousTop1'>;
  /** Random-init baselines of the learned-concept figure: files under <CM_HOME>/baselines (baselines.ts). */
  baselines: BaselineStore;
}

export function engineSettingsFromConfig(cfg: CmConfig): EngineSettings {
  return {
    alertRules: rulesFromConfig(cfg.alerts),
    dissectOptions: { method: cfg.dissect.method, topImages: cfg.dissect.topImages },
    baselines: new FileBaselineStore(join(resolvePath(cfg.home), 'baselines')),
  };
}

/**
 * With a wpmi / soft_wpmi method, bundles keep P where its softmax goes (softmaxed in place on the
 * first dissection): P and its softmax cost one D x S array in the service (issue 15).
 */
function bundleOptionsFor(cfg: CmConfig, workers: number): LoadBundleOptions {
  const likelihood = cfg.dissect.method === 'soft_wpmi' || cfg.dissect.method === 'wpmi';
  return likelihood ? { softmaxInPlace: { slots: workers } } : {};
}

export interface ConfiguredEngine {
  engine: ConceptEngine;
  /** `base` with the configured alert webhook (CM_ALERT_WEBHOOK_URL) after it, when one is set. */
  withAlertDelivery(base: RecordSink): RecordSink;
  /** Stop the engine's timer and the worker pool it owns. */
  close(): Promise<void>;
}

export function engineFromConfig(cfg: CmConfig, overrides: EngineOverrides = {}): ConfiguredEngine {
  const pool = overrides.dissector
    ? undefined
    : new DissectPool({ workers: overrides.workers ?? cfg.dissect.workers });
  const engine = new ConceptEngine({
    bundles:
      overrides.bundles ??
      new BundleDirectory(
        resolvePath(cfg.bundles.dir),
        bundleOptionsFor(cfg, overrides.workers ?? cfg.dissect.workers),
      ),
    dissector: overrides.dissector ?? (pool as DissectPool),
    ...engineSettingsFromConfig(cfg),
    ...(overrides.baselines ? { baselines: overrides.baselines } : {}),
    stateStore: overrides.stateStore,
    runIdleMs: overrides.runIdleMs ?? cfg.service.runIdleMs,
    runExists: overrides.runExists,
    onLayerDissected: overrides.onLayerDissected,
    onAbandoned: overrides.onAbandoned,
  });
  const notifier = webhookFromConfig(cfg.alerts);
  return {
    engine,
    withAlertDelivery: (base) => (notifier ? withWebhook(base, notifier) : base),
    async close() {
      engine.close();
      await pool?.close();
    },
  };
}

export interface LocalMonitorOverrides {
  /** Where records go (the embedded chDB store normally); when it can be queried, its runs table says which run ids are used. */
  store: RecordStore & Partial<Pick<Store, 'query'>>;
  bundles?: BundleSource;
  dissector?: LayerDissector;
  /** Default: CM_DISSECT_WORKERS. `cm train` passes 1 so the other core keeps training. */
  workers?: number;
  /** Replace the store sink (tests). */
  sink?: RecordSink;
}

/** The all-in-one Monitor (engine + store in this process), configured as the concept service is. */
export function localMonitorFromConfig(cfg: CmConfig, overrides: LocalMonitorOverrides): LocalMonitor {
  return createLocalMonitor({
    bundles: overrides.bundles ?? new BundleDirectory(resolvePath(cfg.bundles.dir)),
    store: overrides.store,
    workers: overrides.workers ?? cfg.dissect.workers,
    dissector: overrides.dissector,
    sink: overrides.sink,
    webhook: webhookFromConfig(cfg.alerts),
    runExists: storedRunCheck(overrides.store),
    ...engineSettingsFromConfig(cfg),
  });
}

/** The store's runs table as ConceptEngineOptions.runExists, for a store that can be queried. */
export function storedRunCheck(
  store: RecordStore & Partial<Pick<Store, 'query'>>,
): ((runId: string) => Promise<boolean>) | undefined {
  const query = store.query?.bind(store);
  return query ? (runId) => runIsStored({ query }, runId) : undefined;
}
