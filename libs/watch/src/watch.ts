/**
 * `watch(model, options)`: monitor any tfjs training loop in three lines.
 *
 *   const watcher = await watch(model, { probe: 'path/to/bundle', every: 100 });
 *   for (...) { ...train one step...; await watcher.step(step, { loss }); }
 *   await watcher.close();
 *
 * At step 0 and every `every` steps the probe images go through the model (inside tf.tidy, batch
 * by batch, so no tensor outlives the probe), each monitored layer is pooled to [images, channels]
 * and the checkpoint is handed to a Monitor: the all-in-one engine writing into the embedded chDB
 * store (default), a concept service or `cm serve` (`target: 'host:port'`), or one you pass. Sending
 * runs in the background, at most `maxInFlight` checkpoints at a time; the delivery policy of the
 * client bounds how long training can wait. The time spent inside the watcher is in `stats`.
 */
import { existsSync, statSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import type { CheckpointResult, Monitor, MonitoredLayer, RunSpec } from '@cm/contracts';
import { CmError, errorMessage, invalidArgument } from '@cm/core';
import { loadConfig, resolvePath, type CmConfig } from '@cm/config';
import { BundleRegistry, localMonitorFromConfig } from '@cm/engine';
import { createMonitorClient, type DeliveryPolicy } from '@cm/monitor-client';
import { BundleDirectory, loadBundle, type ProbeBundle } from '@cm/probe';
import { openStore, startReaderEndpoint, type Store } from '@cm/store';
import { selectLayers } from './layers';
import { Prober } from './prober';
import { sendRandomInitBaseline } from './baseline';

/** Probe images already in memory (bundleId must name a bundle the monitor knows). */
export interface ProbeImages {
  bundleId: string;
  images: Uint8Array;
  imageShape: [number, number, number, number];
}

/** A bundle folder, a bundle id (looked up in the bundle directory), a loaded bundle, or images. */
export type ProbeSource = string | ProbeBundle | ProbeImages;

export interface WatchOptions {
  probe: ProbeSource;
  /** Layer names or kinds (all, blocks, conv, dense, logits). Default: every conv block output and the logits. */
  layers?: readonly string[];
  /** Probe every N steps (and at step 0). Default 100. */
  every?: number;
  /** host:port of a concept service or `cm serve`. Absent (and no `monitor`): all-in-one into the embedded store. */
  target?: string;
  /** All-in-one: the chDB store folder. Default CM_CHDB_PATH ($CM_HOME/store). */
  store?: string;
  /** Where bundle ids are looked up. Default CM_BUNDLE_DIR ($CM_HOME/bundles). */
  bundleDir?: string;
  /** Use this Monitor (not closed by the watcher). */
  monitor?: Monitor;
  /** With `target`: 'wait' (default: training waits for the service) or 'drop' (waits at most maxBlockMs). */
  policy?: DeliveryPolicy;
  maxBlockMs?: number;
  runId?: string;
  paradigm?: string;
  /** Default: the model's name. */
  modelName?: string;
  tags?: Record<string, string>;
  /** Checkpoints being sent before step() waits for the oldest. Default 2. */
  maxInFlight?: number;
  /** Probe batch size. Default 200. */
  batchSize?: number;
  /**
   * When the run cannot start (service unreachable, unknown bundle): false (default) makes watch()
   * reject with the reason; true logs a warning and the watcher does nothing.
   */
  allowUnmonitored?: boolean;
  /**
   * Continue the run if its id is already known to the service or store (a resumed training job).
   * Without it, a known run id is refused (ALREADY_EXISTS): a second run never mixes into the first.
   */
  resume?: boolean;
  /** Dissection threads of the all-in-one engine. Default 1 (the other cores keep training). */
  workers?: number;
  /** Configuration (environment by default). */
  config?: CmConfig;
  onWarning?: (message: string) => void;
  onCheckpoint?: (step: number, result: CheckpointResult) => void;
  /**
   * Random initialisations K of the learned-concept baseline (docs/dissect.md, "Learned concepts"):
   * sent once per architecture and probe bundle, before the first checkpoint, when the monitor
   * takes them and has none yet. Default DEFAULT_RANDOM_INITS (8); 0: none (learned figures stay null).
   */
  randomInits?: number;
  /**
   * Build random initialisation k of the model (same architecture, new weights). Default: the model
   * rebuilt from its topology with unseeded initializers (freshlyInitialised).
   */
  randomInit?: (index: number) => tf.LayersModel | Promise<tf.LayersModel>;
}

export interface CheckpointOutcome {
  step: number;
  result?: CheckpointResult;
  /**
   * 'ok' | 'dropped' (policy drop, a full spool, or spooled and never delivered) | 'spooled'
   * (policy spool: went to disk while the service was away and was delivered later, its result
   * unseen) | 'failed' (error, message in `error`)
   */
  status: 'ok' | 'dropped' | 'spooled' | 'failed';
  error?: string;
}

export interface WatchStats {
  /** False when the run could not start and allowUnmonitored let training go on. */
  monitored: boolean;
  checkpoints: number;
  acknowledged: number;
  dropped: number;
  /** Delivered late from the spool (policy spool). */
  spooled: number;
  failed: number;
  /** Forward passes over the probe images and pooling. */
  probeSeconds: number;
  /** Everything the watcher cost the caller: run start, step()/checkpoint() calls, close(). */
  seconds: number;
  /** Since watch() was called. */
  elapsedSeconds: number;
  /** seconds / elapsedSeconds. */
  overhead: number;
}

const now = () => performance.now() / 1000;
const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));

function isProbeImages(p: ProbeSource): p is ProbeImages {
  return typeof p === 'object' && 'bundleId' in p;
}

/** A bundle by folder or id; ids are looked up in `bundleDir` when no folder of that name exists. */
export function openProbe(source: string, bundleDir: string): ProbeBundle {
  if (existsSync(source) && statSync(source).isDirectory()) return loadBundle(source);
  if (/^[0-9a-f]{16}$/.test(source)) return new BundleDirectory(bundleDir).get(source) as ProbeBundle;
  throw invalidArgument(
    `probe bundle '${source}' is neither a bundle folder nor a bundle id`,
    { probe: source, bundleDir },
    'pass the folder `cm probe build`/`cm probe make` wrote, or the 16-hex id of a bundle in the bundle directory',
  );
}

export class Watcher {
  readonly outcomes: CheckpointOutcome[] = [];
  private readonly pending: Promise<void>[] = [];
  private readonly taken = new Set<number>();
  private probeSeconds = 0;
  private seconds: number;
  private closed = false;

  constructor(
    readonly runId: string,
    readonly layers: MonitoredLayer[],
    readonly every: number,
    private readonly prober: Prober,
    private readonly monitor: Monitor | undefined,
    private readonly opts: {
      maxInFlight: number;
      startedAt: number;
      startSeconds: number;
      release: () => Promise<void>;
      onWarning?: (message: string) => void;
      onCheckpoint?: (step: number, result: CheckpointResult) => void;
    },
  ) {
    this.seconds = opts.startSeconds;
  }

  /** Whether step() probes at this step (step 0 and every `every` steps). */
  due(step: number): boolean {
    return step % this.every === 0;
  }

  /** Call after every training step: probes and sends at step 0 and every `every` steps; true when it did. */
  async step(step: number, metrics: Record<string, number> = {}): Promise<boolean> {
    if (!Number.isInteger(step) || step < 0)
      throw invalidArgument(`step must be a non-negative integer, got ${step}`);
    if (!this.due(step)) return false;
    await this.checkpoint(step, metrics);
    return true;
  }

  /** Probe and send now, whatever the step (the last step of a run). A step already sent is not sent twice. */
  async checkpoint(step: number, metrics: Record<string, number> = {}): Promise<void> {
    if (this.closed) throw invalidArgument(`watcher of run ${this.runId} is closed`);
    if (!this.monitor || this.taken.has(step)) return;
    this.taken.add(step);
    const t0 = now();
    try {
      const layers = this.prober.activations();
      this.probeSeconds += now() - t0;
      while (this.pending.length >= this.opts.maxInFlight) await this.pending.shift();
      const outcome: CheckpointOutcome = { step, status: 'ok' };
      this.outcomes.push(outcome);
      this.pending.push(
        this.monitor.sendCheckpoint({ step, layers, metrics: { ...metrics } }).then(
          (result) => {
            if (result) {
              outcome.result = result;
              this.opts.onCheckpoint?.(step, result);
            } else outcome.status = 'dropped';
          },
          (e: unknown) => {
            outcome.status = 'failed';
            outcome.error = errorMessage(e);
            this.opts.onWarning?.(`monitor: checkpoint ${step} failed: ${outcome.error}`);
          },
        ),
      );
      await yieldToEventLoop();
    } finally {
      this.seconds += now() - t0;
    }
  }

  get stats(): WatchStats {
    const elapsedSeconds = now() - this.opts.startedAt;
    const count = (s: CheckpointOutcome['status']) =>
      this.outcomes.filter((o) => o.status === s && (s !== 'ok' || o.result)).length;
    return {
      monitored: this.monitor !== undefined,
      checkpoints: this.outcomes.length,
      acknowledged: count('ok'),
      dropped: count('dropped'),
      spooled: count('spooled'),
      failed: count('failed'),
      probeSeconds: this.probeSeconds,
      seconds: this.seconds,
      elapsedSeconds,
      overhead: elapsedSeconds > 0 ? this.seconds / elapsedSeconds : 0,
    };
  }

  /** Wait for the checkpoints in flight, end the run ('completed' or 'failed') and release what watch() opened. */
  async close(status: 'completed' | 'failed' = 'completed'): Promise<WatchStats> {
    if (this.closed) return this.stats;
    this.closed = true;
    const t0 = now();
    try {
      await Promise.allSettled(this.pending);
      if (this.monitor) {
        try {
          await this.monitor.endRun(status);
        } catch (e) {
          this.opts.onWarning?.(`monitor: ending run ${this.runId} failed: ${errorMessage(e)}`);
        }
      }
    } finally {
      await this.opts.release();
      this.seconds += now() - t0;
      // A monitor that delivers late (policy spool) says which `undefined` answers were real drops.
      const late = this.monitor?.undeliveredSteps?.();
      if (late) {
        const dropped = new Set(late.dropped);
        const failed = new Map(late.failed.map((f) => [f.step, f.error]));
        for (const o of this.outcomes) {
          if (o.status !== 'dropped' || dropped.has(o.step)) continue;
          const error = failed.get(o.step);
          if (error !== undefined) {
            o.status = 'failed';
            o.error = error;
          } else o.status = 'spooled';
        }
      }
    }
    return this.stats;
  }
}

/** Start monitoring `model`; resolves once the run is registered (or, with allowUnmonitored, refused). */
export async function watch(model: tf.LayersModel, options: WatchOptions): Promise<Watcher> {
  const startedAt = now();
  const every = options.every ?? 100;
  if (!Number.isInteger(every) || every < 1)
    throw invalidArgument(`every must be a positive integer, got ${every}`);
  const maxInFlight = options.maxInFlight ?? 2;
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1)
    throw invalidArgument(`maxInFlight must be a positive integer, got ${maxInFlight}`);
  if (
    options.randomInits !== undefined &&
    !(Number.isInteger(options.randomInits) && options.randomInits >= 0)
  )
    throw invalidArgument(`randomInits must be a non-negative integer, got ${options.randomInits}`);
  const cfg = options.config ?? loadConfig();
  const bundleDir = resolvePath(options.bundleDir ?? cfg.bundles.dir);
  const bundle =
    typeof options.probe === 'string'
      ? openProbe(options.probe, bundleDir)
      : isProbeImages(options.probe)
        ? undefined
        : options.probe;
  const probe: ProbeImages = bundle
    ? { bundleId: bundle.id, images: bundle.images, imageShape: bundle.imageShape }
    : (options.probe as ProbeImages);
  const layers = selectLayers(model, options.layers ?? ['all']);
  const prober = new Prober(model, layers, probe.images, probe.imageShape, options.batchSize);
  const modelName = options.modelName ?? model.name;
  const runId =
    options.runId ??
    `${modelName}-${new Date()
      .toISOString()
      .replace(/[-:.TZ]/g, '')
      .slice(0, 14)}`;
  const spec: RunSpec = {
    runId,
    model: modelName,
    paradigm: options.paradigm ?? 'standard',
    bundleId: probe.bundleId,
    layers,
    tags: options.tags ?? {},
  };

  // The monitor: given, a client of a service, or the all-in-one engine over the embedded store.
  let monitor: Monitor;
  let release: () => Promise<void> = async () => undefined;
  let where: string;
  if (options.monitor) {
    monitor = options.monitor;
    where = 'the given monitor';
  } else if (options.target) {
    const client = createMonitorClient({
      target: options.target,
      policy: options.policy,
      maxBlockMs: options.maxBlockMs,
    });
    monitor = client;
    release = () => client.close();
    where = `the concept service at ${options.target}`;
  } else {
    const storePath = resolvePath(options.store ?? cfg.chdbPath);
    const store: Store = await openStore({
      kind: 'chdb',
      path: storePath,
      database: cfg.clickhouse.database,
    });
    await store.migrate();
    // Other processes (`cm runs`, `cm sql`, `cm ui`) read the folder through this process meanwhile.
    const reader = await startReaderEndpoint(store, { writer: `watch() of ${runId}` });
    const bundles = new BundleRegistry(new BundleDirectory(bundleDir));
    if (bundle) bundles.add(bundle);
    const local = localMonitorFromConfig(cfg, { store, bundles, workers: options.workers ?? 1 });
    monitor = local;
    release = async () => {
      await local.close();
      await reader.close();
      await store.close();
    };
    where = `the embedded store ${storePath}`;
  }
  try {
    await monitor.startRun(spec, { resume: options.resume });
  } catch (e) {
    const message = `monitoring of run ${runId} could not start through ${where}: ${errorMessage(e)}`;
    if (!options.allowUnmonitored) {
      await release();
      throw new CmError('UNAVAILABLE', message, {
        context: { runId, bundleId: probe.bundleId },
        cause: e,
        hint: 'fix the cause above, or allow training unmonitored (allowUnmonitored: true, cm train --allow-unmonitored)',
      });
    }
    options.onWarning?.(`${message}; training goes on unmonitored`);
    await release();
    return new Watcher(runId, layers, every, prober, undefined, {
      maxInFlight,
      startedAt,
      startSeconds: now() - startedAt,
      release: async () => undefined,
    });
  }
  try {
    await sendRandomInitBaseline({
      monitor,
      model,
      layers,
      images: probe.images,
      imageShape: probe.imageShape,
      inits: options.randomInits,
      randomInit: options.randomInit,
      batchSize: options.batchSize,
    });
  } catch (e) {
    // the learned figure is then null for this run; the association figure and training go on
    options.onWarning?.(`run ${runId}: the random-init baseline was not sent: ${errorMessage(e)}`);
  }
  return new Watcher(runId, layers, every, prober, monitor, {
    maxInFlight,
    startedAt,
    startSeconds: now() - startedAt,
    release,
    onWarning: options.onWarning,
    onCheckpoint: options.onCheckpoint,
  });
}
