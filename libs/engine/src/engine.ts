/**
 * The concept engine: the part of the concept service that knows no network. It registers runs
 * (validating the bundle and the declared layers), validates each checkpoint, pools raw tensors,
 * dissects every layer (through a `LayerDissector`, normally a worker pool), keeps per-run state
 * (previous top-1 concepts for label switches, the collapse detector) and returns the records to
 * publish plus the trainer-facing result. Writing the records is the caller's job (a RecordSink):
 * the gRPC service publishes to JetStream, the all-in-one monitor inserts into chDB.
 *
 * Idempotency: a checkpoint resent after a reconnect returns the records it produced the first time
 * (same content, same times, hence the same Nats-Msg-Ids), from a small per-run cache; the
 * detector and switch state are not advanced twice.
 *
 * Durability: what a run carries between checkpoints (previous top-1 per layer, the detector's
 * state) is saved through a RunStateStore after each checkpoint, before the caller acks it. A run
 * this engine does not hold in memory (a restart, another replica, an evicted idle run) is loaded
 * from the store on RunStart or on its next checkpoint, and carries on as if never interrupted. The
 * store also keeps the state before each of the last few steps, so a checkpoint resent after a
 * restart (processed, never acknowledged) is recomputed from the same starting point.
 */
import { createHash } from 'node:crypto';
import { CmError, invalidArgument, isCmError, notFound } from '@cm/core';
import type {
  AlertRecord,
  CheckpointData,
  LayerActivations,
  CheckpointResult,
  CmRecord,
  CollapseRunState,
  LayerSnapshotRecord,
  MonitoredLayer,
  PersistedRunState,
  RandomInitBaseline,
  RunCarry,
  RunRecord,
  RunSpec,
} from '@cm/contracts';
import { MAX_BASELINE_INITS } from '@cm/contracts';
import { configDefaults } from '@cm/config';
import { CollapseDetector, rulesFromConfig, type CollapseRulesConfig } from '@cm/alerts';
import {
  learnedConceptShare,
  neuronEvidence,
  poolLayer,
  PoolingStream,
  randomInitLayer,
  SharedBufferPool,
  type ConceptSpace,
  type DissectOptions,
  type LayerDissection,
  type Matrix,
  type RandomInitLayer,
} from '@cm/dissect';
import { baselineKey, MemoryBaselineStore, type BaselineStore, type StoredBaseline } from './baselines';
import { checkpointRecord, checkpointResult, labelRow, labelsRecords, snapshotRecord } from './records';
import {
  assertFinite,
  finiteAfterPooling,
  hasNonFinite,
  sameRunSpec,
  validateCheckpoint,
  validateLayerHeader,
  validateLayerShape,
  validateRunSpec,
} from './validate';
import { runSetup } from './setup';
import { CheckpointInProgress } from './checkpoint-in-progress';
import { DEFAULT_RUN_IDLE_MS, MemoryRunStateStore, type RunStateStore } from './run-state';

/** What the engine needs of a probe bundle. */
export interface EngineBundle {
  id: string;
  space: ConceptSpace;
  /** A bundle's manifest (ProbeBundle has one): where P came from, for the run's setup. */
  manifest?: { source: { kind: string; model?: string } };
}

/** Where bundles come from (BundleDirectory from @cm/probe fits). */
export interface BundleSource {
  get(id: string): EngineBundle | Promise<EngineBundle>;
}

export type LayerResult = LayerDissection & { top1: Int32Array };

/** DissectPool from @cm/dissect (worker threads) or `inlineDissector` (dissectLayer in this thread). */
export interface LayerDissector {
  dissect(space: ConceptSpace, activations: Matrix, opts: DissectOptions): Promise<LayerResult>;
  /** Optional warm-up: compute (and cache) the interpretability threshold of a layer width. */
  calibrate?(
    space: ConceptSpace,
    width: number,
    method?: DissectOptions['method'],
    params?: DissectOptions['params'],
  ): Promise<number>;
}

/** The collapse detector as the engine uses it (CollapseDetector from @cm/alerts fits). */
export interface SnapshotObserver {
  observe(snapshot: LayerSnapshotRecord): AlertRecord[];
  /** With both of these the detector's state survives restarts (saved with the run state). */
  exportState?(runId: string): CollapseRunState;
  importState?(runId: string, state: CollapseRunState): void;
}

export interface ConceptEngineOptions {
  bundles: BundleSource;
  dissector: LayerDissector;
  /** Collapse rules; a detector is created per run. Defaults to the configuration defaults. */
  alertRules?: CollapseRulesConfig;
  /** Replace the detector (tests). */
  detectorFactory?: (runId: string) => SnapshotObserver;
  /** Similarity method, parameters, top-k... passed to every dissection (previousTop1 is the engine's). */
  dissectOptions?: Omit<DissectOptions, 'previousTop1'>;
  /** Clock for record times (tests). */
  now?: () => Date;
  /** Processed checkpoints kept per run to answer resends identically. */
  replayCache?: number;
  /** Where run state is saved after each checkpoint. Default: in this process (MemoryRunStateStore). */
  stateStore?: RunStateStore;
  /**
   * Steps whose starting state is saved too, so a checkpoint resent after a restart is recomputed
   * identically (a trainer has at most a few processed-but-unacknowledged checkpoints). Default 4.
   */
  resendDepth?: number;
  /**
   * Drop a run from memory after this long without a checkpoint or an open stream (its state stays
   * in the store). Default 1 hour; 0 or Infinity: never. Checked every min(runIdleMs, 1 min).
   */
  runIdleMs?: number;
  /** Clock in ms for idle eviction (tests). */
  clockMs?: () => number;
  /**
   * Whether a run id was ever used, beyond the saved states (which go when a run ends): the
   * concept service asks JetStream for the run's record, all-in-one mode asks its store. A new
   * run under a used id is refused (ALREADY_EXISTS) unless it asks to resume.
   */
  runExists?: (runId: string) => Promise<boolean>;
  /**
   * Told of each run evicted for idleness (no stream, no checkpoint for runIdleMs) with its run
   * record marked `abandoned`: the services write it, so a run whose trainer died does not stay
   * `running` forever. In-process monitors leave it unset (their trainer is the process itself).
   */
  onAbandoned?: (record: RunRecord) => void;
  /** Told how long each layer's dissection took (metrics; the shell wires it to libs/metrics). */
  onLayerDissected?: (seconds: number, neurons: number) => void;
  /**
   * Where random-init baselines of the learned-concept figure are kept, per (bundle, architecture,
   * method) (baselines.ts). Default: in this engine's memory.
   */
  baselines?: BaselineStore;
}

/** How a RunStart is meant (RunStart.resume and RunStart.start_token on the wire). */
export interface StartRunOptions {
  /** Continue the run if it exists (a reconnect, or `cm train --resume`); start it if not. */
  resume?: boolean;
  /**
   * Random per client start (not per connection): the same client repeating its RunStart after a
   * lost answer sends the same token, and continues the run it started instead of being refused.
   */
  startToken?: string;
}

export interface StartedRun {
  /** Records to write: the run record for a new run, nothing for a resumed one. */
  records: CmRecord[];
  probeImages: number;
  resumed: boolean;
}

/** How processCheckpoint may treat the checkpoint it is given. */
export interface ProcessCheckpointOptions {
  /**
   * The caller hands the activations over (the concept service: a received checkpoint is not read
   * again). The engine then replaces `cp.layers` by the pooled [D, N] layers as soon as they are
   * pooled, so that the raw tensors can be freed while the layers are dissected: at reference
   * scale the raw checkpoint is four times its pooled size (docs/dissect.md, "Memory").
   */
  release?: boolean;
}

/**
 * A checkpoint of a run being received (ConceptEngine.beginCheckpoint): `addLayer` starts a complete
 * layer's dissection, `finish(cp, options)` processes the checkpoint as processCheckpoint does
 * (same checks, same records) with those dissections, `abort()` discards them.
 */
export type ReceivingCheckpoint = CheckpointInProgress<
  TimedLayerResult,
  ProcessedCheckpoint,
  ProcessCheckpointOptions
>;

/** A layer's dissection with how long it took (reported through onLayerDissected once used). */
export interface TimedLayerResult {
  d: LayerResult;
  seconds: number;
}

export interface BeginCheckpointOptions {
  /**
   * Resolves once the caller's earlier work for the run is processed (the concept service: its
   * stream's earlier checkpoints). Early dissections start after it and after the run's queue.
   */
  after?: Promise<unknown>;
}

export interface ProcessedCheckpoint {
  step: number;
  /** [CheckpointRecord, LabelsRecord..., LayerSnapshotRecord..., AlertRecord...] */
  records: CmRecord[];
  result: CheckpointResult;
  /** True when this is the cached answer to a resent checkpoint. */
  replayed: boolean;
}

interface RunState {
  spec: RunSpec;
  record: RunRecord;
  space: ConceptSpace;
  declared: Map<string, MonitoredLayer>;
  /** State after `lastStep`: previous top-1 per layer, detector state. */
  current: RunCarry;
  /** The last `resendDepth` processed steps with the state before each (to recompute a resend). */
  history: PersistedRunState['recent'];
  detector: SnapshotObserver;
  lastStep: number;
  /** The last processed checkpoints with a digest of their activations (a resend must match it). */
  recent: Map<number, ProcessedCheckpoint & { digest: string }>;
  /** Checkpoints of a run are processed one after the other (switches need the previous one). */
  queue: Promise<unknown>;
  /** For idle eviction: last use, checkpoints queued or running, open streams (attach). */
  lastActiveMs: number;
  busy: number;
  streams: number;
  startToken?: string;
  /** Cache key of this run's random-init baseline (bundle, architecture, method). */
  baselineKey: string;
  /** The baseline, once complete (loaded from the BaselineStore or made from the run's own sendBaseline). */
  baseline?: StoredBaseline;
  /** Random initialisations received so far (or kept in the BaselineStore by another replica), by index, until all K are in. */
  pendingBaseline: Map<number, Record<string, RandomInitLayer>>;
  pendingInits?: number;
}

/** A raw layer pooled while its bytes arrive (ConceptEngine.poolingStream). */
export interface ReceivedLayerStream {
  /** The layer's next bytes, in offset order (split anywhere). */
  write(bytes: Uint8Array): void;
  /** Once every byte was written: the layer as poolReceivedLayer would return it. */
  finish(): LayerActivations;
}

/** A layer as the dissection reads it: D x N, on shared memory; `shape` and `pooling` as sent. */
interface PooledLayer {
  layer: string;
  shape: number[];
  pooling?: 'avg' | 'max';
  q: Matrix;
}

/**
 * sha1 of a checkpoint's pooled layers (names, shapes and pooling as sent, pooled values): tells a
 * resend from other content. The pooled values are what the dissection reads, so two checkpoints
 * with one digest get the same answer; hashing them instead of the raw tensor costs a quarter of
 * the time at H = W = 2.
 */
function activationsDigest(layers: readonly PooledLayer[]): string {
  const h = createHash('sha1');
  for (const l of layers) {
    h.update(`${l.layer}|${l.shape.join('x')}|${l.pooling ?? ''}|`);
    h.update(new Uint8Array(l.q.data.buffer, l.q.data.byteOffset, l.q.data.byteLength));
  }
  return h.digest('hex');
}

/** Layers dissected at once: one layer's labels (this thread) overlap the next one's kernel (the workers), and at most two N x S similarity matrices are alive. */
const LAYERS_IN_FLIGHT = 2;

/** fn over items, at most `limit` at once, results in item order. */
async function mapWindowed<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const lane = async (): Promise<void> => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        out[i] = await fn(items[i]);
      } catch (e) {
        failed = true; // the other lanes start nothing new
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}

/** The collapse rules at the configuration's defaults (libs/config holds the numbers). */
export const DEFAULT_ALERT_RULES: CollapseRulesConfig = rulesFromConfig(configDefaults().alerts);

export class ConceptEngine {
  private readonly runs = new Map<string, RunState>();
  /** Runs this engine recorded as abandoned (onAbandoned): a resume writes them running again. */
  private readonly abandoned = new Set<string>();
  /** Runs being loaded from the store, so concurrent calls share one load. */
  private readonly loading = new Map<string, Promise<RunState | undefined>>();
  private readonly now: () => Date;
  private readonly clockMs: () => number;
  private readonly replayCache: number;
  private readonly resendDepth: number;
  private readonly runIdleMs: number;
  private readonly store: RunStateStore;
  private readonly baselines: BaselineStore;
  private readonly evictionTimer?: NodeJS.Timeout;
  /** Pooled data poolReceivedLayer made (validated, finite): what a ReceivingCheckpoint may dissect early. */
  private readonly pooledOnArrival = new WeakSet<Float32Array>();
  /**
   * Where pooled layers live (D x N float32 on shared memory): reused across checkpoints instead of
   * allocated per layer and checkpoint, because a buffer the dissection workers read stays resident
   * until those idle threads garbage-collect (dissect's buffer-pool.ts; at reference scale 149 MiB
   * per checkpoint piled up). Given back by releaseLayers (the concept service: after the ack) or
   * by process() itself for layers only it refers to.
   */
  private readonly layerBuffers = new SharedBufferPool();
  /**
   * The views over layerBuffers handed out and not released, each with its buffer: a release goes
   * by the view, so that a stale view (released once, its buffer since taken by a later layer)
   * can never give back a buffer another checkpoint now holds.
   */
  private readonly layerViews = new WeakMap<Float32Array, SharedArrayBuffer>();

  constructor(private readonly opts: ConceptEngineOptions) {
    this.now = opts.now ?? (() => new Date());
    this.clockMs = opts.clockMs ?? (() => Date.now());
    this.replayCache = opts.replayCache ?? 8;
    this.resendDepth = opts.resendDepth ?? 4;
    this.runIdleMs = opts.runIdleMs ?? DEFAULT_RUN_IDLE_MS;
    this.store = opts.stateStore ?? new MemoryRunStateStore();
    this.baselines = opts.baselines ?? new MemoryBaselineStore();
    if (!Number.isInteger(this.resendDepth) || this.resendDepth < 0) {
      throw invalidArgument(`resendDepth must be a non-negative integer, got ${this.resendDepth}`);
    }
    if (!(this.runIdleMs >= 0)) throw invalidArgument(`runIdleMs must be >= 0, got ${this.runIdleMs}`);
    if (this.runIdleMs > 0 && Number.isFinite(this.runIdleMs)) {
      this.evictionTimer = setInterval(() => this.evictIdleRuns(), Math.min(this.runIdleMs, 60_000));
      this.evictionTimer.unref();
    }
  }

  /** Stop the eviction timer (the engine keeps working; idle runs just stay in memory). */
  close(): void {
    if (this.evictionTimer) clearInterval(this.evictionTimer);
  }

  /**
   * Register a run. A second start of a known run with the same spec (a reconnect) resumes it;
   * with a different spec it is an error. A run this engine does not hold but the state store does
   * (a restart, another replica) is resumed from the store. Unknown bundle -> NOT_FOUND.
   */
  async startRun(spec: RunSpec, options: StartRunOptions = {}): Promise<StartedRun> {
    validateRunSpec(spec);
    const runId = spec.runId;
    const taken = (how: string): CmError =>
      new CmError('ALREADY_EXISTS', `run ${runId} already exists (${how})`, {
        context: { runId },
        hint: 'resume it (RunStart.resume; cm train --resume), or start the new run under a new run id',
      });
    let run = this.runs.get(runId);
    if (run && run.busy === 0) {
      // The trainer may have been served by another replica since (it reconnected there, then
      // back here): the store is then ahead of memory, and memory must not win.
      const stored = await this.loadStored(runId);
      if (stored && stored.lastStep > run.lastStep) run = await this.adopt(stored);
    }
    if (!run) run = await this.held(runId);
    if (run) {
      const sameStart = options.startToken !== undefined && options.startToken === run.startToken;
      if (!options.resume && !sameStart) throw taken('it is running');
      if (!sameRunSpec(run.spec, spec)) {
        throw invalidArgument(
          `run ${runId} is already running with a different bundle, model or layers`,
          { runId },
          'use a new run id for a new run',
        );
      }
      run.lastActiveMs = this.clockMs();
      // a run this engine recorded as abandoned is running again: say so (same startedAt). Only
      // the engine that marked it knows; on another replica the run's end record settles it.
      const revived = this.abandoned.delete(runId);
      const records: CmRecord[] = revived
        ? [{ ...run.record, status: 'running', time: this.now().toISOString() }]
        : [];
      return { records, probeImages: run.space.probeScores.rows, resumed: true };
    }
    // no saved state: an ended run (or one whose state aged out) is still a used id
    if (!options.resume && this.opts.runExists && (await this.opts.runExists(runId)))
      throw taken('it ran before');
    const bundle = await this.loadBundle(spec);
    const time = this.now().toISOString();
    const record: RunRecord = {
      kind: 'run',
      runId,
      model: spec.model,
      paradigm: spec.paradigm,
      bundleId: spec.bundleId,
      layers: spec.layers.map((l) => ({ name: l.name, width: l.width })),
      tags: { ...spec.tags },
      status: 'running',
      startedAt: time,
      setup: runSetup(this.opts.dissectOptions, bundle),
      time,
    };
    const started = this.newRunState(
      {
        spec: { ...spec, layers: spec.layers.map((l) => ({ ...l })), tags: { ...spec.tags } },
        record,
        lastStep: -1,
        current: { top1: {} },
        recent: [],
        startToken: options.startToken,
      },
      bundle,
    );
    started.current = { top1: {}, detector: started.detector.exportState?.(runId) };
    // Saved at once: a trainer that reconnects to another replica before its first checkpoint
    // resumes this run there instead of starting it again.
    await this.saveState(started, this.persisted(started, -1, started.current, []));
    this.runs.set(runId, started);
    this.calibrate(spec, bundle);
    return { records: [record], probeImages: bundle.space.probeScores.rows, resumed: false };
  }

  hasRun(runId: string): boolean {
    return this.runs.has(runId);
  }

  /** Run ids held in memory. */
  heldRuns(): string[] {
    return [...this.runs.keys()];
  }

  /** Probe images D of a run's bundle (the first dimension of every activation block). */
  probeImages(runId: string): number {
    return this.state(runId).space.probeScores.rows;
  }

  declaredLayer(runId: string, layer: string): MonitoredLayer | undefined {
    return this.state(runId).declared.get(layer);
  }

  /**
   * An open stream uses the run: it is not evicted while attached. Returns the release function
   * (idempotent). Call after startRun.
   */
  attach(runId: string): () => void {
    const run = this.state(runId);
    run.streams++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      run.streams--;
      run.lastActiveMs = this.clockMs();
    };
  }

  /**
   * Drop runs idle for longer than runIdleMs (no open stream, nothing queued) from memory; their
   * state stays in the store and a later RunStart or checkpoint loads it. Returns the dropped ids.
   * Runs on a timer; public for tests and for callers with their own schedule.
   */
  evictIdleRuns(nowMs: number = this.clockMs()): string[] {
    const evicted: string[] = [];
    if (!(this.runIdleMs > 0) || !Number.isFinite(this.runIdleMs)) return evicted;
    for (const [runId, run] of this.runs) {
      if (run.streams === 0 && run.busy === 0 && nowMs - run.lastActiveMs > this.runIdleMs) {
        this.runs.delete(runId);
        evicted.push(runId);
        if (this.opts.onAbandoned) {
          const time = this.now().toISOString();
          this.abandoned.add(runId);
          this.opts.onAbandoned({ ...run.record, status: 'abandoned', endedAt: time, time });
        }
      }
    }
    return evicted;
  }

  /**
   * Validate, pool and dissect one checkpoint. Steps must increase within a run; a step already
   * processed is answered from the cache, or recomputed from its saved starting state after a
   * restart (`replayed`). A run not held in memory is loaded from the state store.
   */
  async processCheckpoint(
    runId: string,
    cp: CheckpointData,
    options: ProcessCheckpointOptions = {},
  ): Promise<ProcessedCheckpoint> {
    return this.processWith(runId, cp, options, undefined);
  }

  private async processWith(
    runId: string,
    cp: CheckpointData,
    options: ProcessCheckpointOptions,
    early: ReceivingCheckpoint | undefined,
  ): Promise<ProcessedCheckpoint> {
    const run = this.runs.get(runId) ?? (await this.held(runId)) ?? this.state(runId);
    run.busy++;
    run.lastActiveMs = this.clockMs();
    const task = run.queue.then(() => this.process(run, cp, options.release === true, early));
    run.queue = task.catch(() => undefined);
    try {
      return await task;
    } finally {
      run.busy--;
      run.lastActiveMs = this.clockMs();
    }
  }

  /**
   * One received layer of a run's checkpoint pooled to D x N on shared memory: what
   * processCheckpoint then reads in place. A receiver that calls this as each layer arrives holds
   * one raw layer at a time instead of the raw checkpoint, and pools while the rest arrives (the
   * concept service does). A layer that would be refused (undeclared, a wrong shape, a NaN / Inf)
   * comes back as it was, so that processCheckpoint refuses the checkpoint where and as it always
   * did (after its end, counted as received).
   */
  poolReceivedLayer(runId: string, step: number, layer: LayerActivations): LayerActivations {
    const run = this.state(runId);
    const decl = run.declared.get(layer.layer);
    if (!decl) return layer;
    try {
      validateLayerShape(runId, step, decl, run.space.probeScores.rows, layer);
    } catch {
      return layer;
    }
    if (!finiteAfterPooling(layer) && hasNonFinite(layer.data)) return layer;
    const q = poolLayer({ shape: layer.shape, data: layer.data }, layer.pooling ?? 'avg', {
      shared: true,
      buffers: this.layerBuffers,
    });
    if (q.data !== layer.data) this.outOfPool(q.data);
    if (finiteAfterPooling(layer) && hasNonFinite(q.data)) {
      this.giveBack(q.data);
      return layer;
    }
    this.pooledOnArrival.add(q.data);
    return { layer: layer.layer, shape: [q.rows, q.cols], data: q.data };
  }

  /**
   * poolReceivedLayer for a raw [D, H, W, C] float32 or float16 layer whose bytes are still arriving: the
   * bytes, given in order to `write`, are pooled as they come (dissect's PoolingStream, the same
   * float32 bits as poolLayer), so the raw tensor is never held; `finish` then returns what
   * poolReceivedLayer would have. Undefined for a layer this cannot take so (not declared, not
   * [D, H, W, C] of the declared width, not avg / max): the receiver assembles it and calls
   * poolReceivedLayer. A layer with a NaN / Inf comes back from `finish` as a stand-in for the
   * raw tensor, its first non-finite value at its place and zeros elsewhere, so that the checks
   * that refuse it (which name the first non-finite value) refuse it where and as before.
   */
  poolingStream(
    runId: string,
    step: number,
    header: Pick<LayerActivations, 'layer' | 'shape' | 'pooling'> & {
      /** How the bytes hold the values (default float32; float16 is widened as it arrives). */
      dtype?: 'float32' | 'float16';
    },
  ): ReceivedLayerStream | undefined {
    const run = this.state(runId);
    const decl = run.declared.get(header.layer);
    const mode = header.pooling ?? 'avg';
    if (!decl || header.shape.length !== 4 || (mode !== 'avg' && mode !== 'max')) return undefined;
    try {
      validateLayerHeader(runId, step, decl, run.space.probeScores.rows, header.layer, header.shape);
    } catch {
      return undefined;
    }
    const shape = [...header.shape];
    const pooling = new PoolingStream(shape, mode, {
      shared: true,
      buffers: this.layerBuffers,
      dtype: header.dtype ?? 'float32',
    });
    return {
      write: (bytes) => pooling.write(bytes),
      finish: () => {
        const bad = pooling.nonFinite;
        if (bad) {
          const data = new Float32Array(shape.reduce((a, n) => a * n, 1));
          data[bad.index] = bad.value;
          return { layer: header.layer, shape, data, pooling: header.pooling };
        }
        const q = pooling.finish();
        this.outOfPool(q.data);
        this.pooledOnArrival.add(q.data);
        return { layer: header.layer, shape: [q.rows, q.cols], data: q.data };
      },
    };
  }

  /**
   * The layers of a processed checkpoint (`cp.layers` after processCheckpoint with `release`, or
   * the layers a receiver got from poolReceivedLayer / poolingStream) are no longer read by anyone:
   * their buffers may be reused for a later checkpoint. Call it only once the checkpoint is over
   * (its dissections done and its records published); a layer whose buffer is not this engine's
   * is ignored, and so is a second release.
   */
  releaseLayers(layers: readonly Pick<LayerActivations, 'data'>[]): void {
    for (const l of layers) this.giveBack(l.data);
  }

  /** A pooled layer's data, on a buffer of layerBuffers: noted so that releaseLayers can give it back once. */
  private outOfPool(data: Float32Array): Float32Array {
    if (data.buffer instanceof SharedArrayBuffer && this.layerBuffers.isTaken(data.buffer))
      this.layerViews.set(data, data.buffer);
    return data;
  }

  private giveBack(data: Float32Array): void {
    const buffer = this.layerViews.get(data);
    if (!buffer) return;
    this.layerViews.delete(data);
    // the view goes too: a reused buffer gets a new view, never an old one marked as checked
    this.pooledOnArrival.delete(data);
    this.layerBuffers.give(buffer);
  }

  /**
   * A checkpoint of a started run begins to arrive: each layer given to `addLayer` (as
   * poolReceivedLayer returned it) is dissected at once, at most LAYERS_IN_FLIGHT at a time, from
   * the state the run's earlier checkpoints leave; `finish` then processes the checkpoint exactly
   * as processCheckpoint would, and acknowledges nothing early (checkpoint-in-progress.ts).
   */
  beginCheckpoint(runId: string, step: number, options: BeginCheckpointOptions = {}): ReceivingCheckpoint {
    const run = this.state(runId);
    const D = run.space.probeScores.rows;
    return new CheckpointInProgress(
      runId,
      step,
      {
        dissectable: (layer) => {
          const decl = run.declared.get(layer.layer);
          const [rows, cols] = layer.shape;
          const ok =
            decl !== undefined &&
            layer.shape.length === 2 &&
            rows === D &&
            cols === decl.width &&
            this.pooledOnArrival.has(layer.data);
          return ok ? { rows, cols, data: layer.data } : undefined;
        },
        startingState: () => run.current,
        dissect: (_layer, q, previousTop1) => this.dissectLayer(run, q, previousTop1),
        process: (cp, processOptions, progress) => this.processWith(runId, cp, processOptions, progress),
      },
      Promise.all([options.after, run.queue]),
      LAYERS_IN_FLIGHT,
    );
  }

  /**
   * Close a run and delete its saved state; returns the final run record to write. A run not held
   * in memory is loaded from the store first. Unknown run -> NOT_FOUND.
   */
  async endRun(runId: string, status: 'completed' | 'failed'): Promise<RunRecord> {
    const run = this.runs.get(runId) ?? (await this.held(runId)) ?? this.state(runId);
    try {
      await this.store.delete(runId);
    } catch (e) {
      throw unavailable(`run ${runId}: could not delete the saved run state`, runId, e);
    }
    this.runs.delete(runId);
    const time = this.now().toISOString();
    return { ...run.record, status, endedAt: time, time };
  }

  private async process(
    run: RunState,
    cp: CheckpointData,
    release: boolean,
    early: ReceivingCheckpoint | undefined,
  ): Promise<ProcessedCheckpoint> {
    const layers = this.pooled(run, cp);
    // without `release` the caller never sees the buffers pooled here: they go back once the
    // checkpoint is processed (not after a failure: a worker task may still be reading one)
    const internal = release ? [] : layers.filter((l) => !cp.layers.some((x) => x.data === l.q.data));
    if (release)
      cp.layers = layers.map((l) => ({ layer: l.layer, shape: [l.q.rows, l.q.cols], data: l.q.data }));
    const processed = await this.processPooled(run, cp, layers, early);
    this.releaseLayers(internal.map((l) => l.q));
    return processed;
  }

  private async processPooled(
    run: RunState,
    cp: CheckpointData,
    layers: PooledLayer[],
    early: ReceivingCheckpoint | undefined,
  ): Promise<ProcessedCheckpoint> {
    const runId = run.spec.runId;
    const digest = activationsDigest(layers);
    // a run adopted after a restart (or from another replica) finds its baseline in the store here
    await this.lookUpBaseline(run);
    const cached = run.recent.get(cp.step);
    if (cached) {
      // a resend is answered as before; other activations under a processed step would be dropped
      // silently by that answer, so they are refused instead
      if (cached.digest !== digest) {
        throw invalidArgument(
          `run ${runId}: step ${cp.step} was already processed with other activations`,
          { runId, step: cp.step },
          'send each step once (a resend must be the same checkpoint); use a new step or a new run id',
        );
      }
      const { digest: _digest, ...answer } = cached;
      return { ...answer, replayed: true };
    }
    if (Number.isInteger(cp.step) && cp.step <= run.lastStep) {
      const resent = run.history.find((h) => h.step === cp.step);
      if (!resent) {
        throw invalidArgument(
          `run ${runId}: checkpoint step ${cp.step} is not after the last processed step ${run.lastStep}`,
          { runId, step: cp.step, lastStep: run.lastStep },
          'steps must increase within a run',
        );
      }
      // Processed before a restart but never acknowledged: recompute it from the state it started
      // from (same labels, switches and alerts; new times), leaving the run's state where it is.
      const { processed } = await this.compute(
        run,
        cp,
        layers,
        resent.before,
        this.detectorAt(runId, resent.before),
        early,
      );
      return this.remember(run, { ...processed, replayed: true }, digest);
    }
    const before = run.current;
    const { processed, after } = await this.compute(run, cp, layers, before, run.detector, early);
    const history = [...run.history, { step: cp.step, before }].slice(
      this.resendDepth === 0 ? run.history.length + 1 : -this.resendDepth,
    );
    try {
      // Durable before the caller acks: an acknowledged checkpoint is never lost to a restart.
      await this.saveState(run, this.persisted(run, cp.step, after, history));
    } catch (e) {
      // Nothing is committed: the detector goes back to where it was, a resend recomputes.
      if (before.detector && run.detector.importState) run.detector.importState(runId, before.detector);
      throw e;
    }
    // Commit state only once everything succeeded: a failed checkpoint leaves the run as it was.
    run.current = after;
    run.history = history;
    run.lastStep = cp.step;
    return this.remember(run, processed, digest);
  }

  /**
   * Validate a checkpoint and pool its layers, in the declared order (records come out in a stable
   * order), each into shared memory where the dissection workers read it without a copy.
   */
  private pooled(run: RunState, cp: CheckpointData): PooledLayer[] {
    const runId = run.spec.runId;
    validateCheckpoint(runId, run.declared, run.space.probeScores.rows, cp, { finiteAfterPooling: true });
    return run.spec.layers.map((decl) => {
      const layer = cp.layers.find((l) => l.layer === decl.name)!;
      const q = poolLayer({ shape: layer.shape, data: layer.data }, layer.pooling ?? 'avg', {
        shared: true,
        buffers: this.layerBuffers,
      });
      if (q.data !== layer.data) this.outOfPool(q.data);
      // NaN / Inf left to this check by validateCheckpoint: the raw tensor is read only to name the value
      if (finiteAfterPooling(layer) && hasNonFinite(q.data)) assertFinite(runId, cp.step, layer);
      return { layer: layer.layer, shape: [...layer.shape], pooling: layer.pooling, q };
    });
  }

  /** Dissect a checkpoint's pooled layers starting from `base`, observing its snapshots with `detector`. */
  private async compute(
    run: RunState,
    cp: CheckpointData,
    ordered: readonly PooledLayer[],
    base: RunCarry,
    detector: SnapshotObserver,
    early?: ReceivingCheckpoint,
  ): Promise<{ processed: ProcessedCheckpoint; after: RunCarry }> {
    const runId = run.spec.runId;
    const time = this.now().toISOString();
    const dissections = await mapWindowed(ordered, LAYERS_IN_FLIGHT, async ({ layer, q }) => {
      const dissect = (): Promise<TimedLayerResult> => this.dissectLayer(run, q, base.top1[layer]);
      // a layer dissected while the checkpoint arrived is used when it read these values from `base`
      const { d, seconds } = await (early ? early.dissection(layer, q, base, dissect) : dissect());
      // counted once per layer of a processed checkpoint (not for the early work a refusal discards)
      this.opts.onLayerDissected?.(seconds, q.cols);
      return d;
    });
    const labels: CmRecord[] = [];
    const snapshots: LayerSnapshotRecord[] = [];
    ordered.forEach((layer, i) => {
      const d = dissections[i];
      const previous = base.top1[layer.layer];
      const previousConcept = (n: number): string =>
        previous && previous[n] >= 0 ? (run.space.concepts[previous[n]] ?? '') : '';
      const rows = d.labels.map((l) => labelRow(l, previousConcept(l.neuron)));
      labels.push(...labelsRecords(runId, layer.layer, cp.step, rows, time));
      snapshots.push(snapshotRecord(runId, layer.layer, cp.step, d, time, this.learned(run, layer.layer, d)));
    });
    const alerts = snapshots.flatMap((s) => detector.observe(s));
    const top1: Record<string, Int32Array> = {};
    ordered.forEach((layer, i) => (top1[layer.layer] = dissections[i].top1));
    return {
      processed: {
        step: cp.step,
        records: [
          checkpointRecord(runId, cp.step, cp.metrics ?? {}, time),
          ...labels,
          ...snapshots,
          ...alerts,
        ],
        result: checkpointResult(cp.step, snapshots, alerts),
        replayed: false,
      },
      after: { top1, detector: detector.exportState?.(runId) },
    };
  }

  private async dissectLayer(
    run: RunState,
    q: Matrix,
    previousTop1: Int32Array | undefined,
  ): Promise<TimedLayerResult> {
    const t0 = performance.now();
    const d = await this.opts.dissector.dissect(run.space, q, { ...this.opts.dissectOptions, previousTop1 });
    return { d, seconds: (performance.now() - t0) / 1000 };
  }

  /** The learned-concept figure of a dissected layer, or null while the run has no baseline for it. */
  private learned(
    run: RunState,
    layer: string,
    d: LayerDissection,
  ): { learnedFraction: number; learnedChance: number } | null {
    const inits = run.baseline?.layers[layer];
    if (!inits || inits.length === 0 || !d.evidence) return null;
    const r = learnedConceptShare(neuronEvidence(d), inits);
    return { learnedFraction: r.learnedFraction, learnedChance: r.chanceFraction };
  }

  /**
   * Look the run's baseline up in the BaselineStore while it has none: another replica (or another
   * run of the architecture) may have completed it since the last look.
   */
  private async lookUpBaseline(run: RunState): Promise<void> {
    if (run.baseline) return;
    run.baseline = await this.baselines.load(run.baselineKey);
  }

  /**
   * Whether the run's architecture still lacks a random-init baseline on its bundle (Monitor.
   * baselineWanted): false once one is cached or all of this run's initialisations are in.
   */
  async baselineWanted(runId: string): Promise<boolean> {
    const run = this.runs.get(runId) ?? (await this.held(runId)) ?? this.state(runId);
    await this.lookUpBaseline(run);
    return !run.baseline;
  }

  /**
   * One random initialisation of the run's model (Monitor.sendBaseline): its layers are dissected
   * like a checkpoint's (with each concept's ceiling) but recorded nowhere; when all K are in, the
   * baseline is saved under the run's key and every later checkpoint (of this run and of later runs
   * of the architecture) gets its learned figure. A baseline already known is not recomputed: the
   * initialisation is ignored (`complete: true`).
   */
  async processBaseline(runId: string, baseline: RandomInitBaseline): Promise<{ complete: boolean }> {
    const run = this.runs.get(runId) ?? (await this.held(runId)) ?? this.state(runId);
    run.busy++;
    run.lastActiveMs = this.clockMs();
    const task = run.queue.then(() => this.addBaseline(run, baseline));
    run.queue = task.catch(() => undefined);
    try {
      return await task;
    } finally {
      run.busy--;
      run.lastActiveMs = this.clockMs();
    }
  }

  private async addBaseline(run: RunState, b: RandomInitBaseline): Promise<{ complete: boolean }> {
    const runId = run.spec.runId;
    await this.lookUpBaseline(run);
    if (run.baseline) return { complete: true };
    const inits = run.pendingInits ?? b.inits;
    if (!Number.isInteger(b.inits) || b.inits < 1 || b.inits > MAX_BASELINE_INITS || b.inits !== inits)
      throw invalidArgument(
        `run ${runId}: a random-init baseline has 1 to ${MAX_BASELINE_INITS} initialisations, the same in every one sent; got ${b.inits}${b.inits !== inits ? ` after ${inits}` : ''}`,
        { runId, inits: b.inits },
      );
    if (!Number.isInteger(b.index) || b.index < 0 || b.index >= inits)
      throw invalidArgument(`run ${runId}: random init index must be 0..${inits - 1}, got ${b.index}`, {
        runId,
        index: b.index,
      });
    const missing = run.spec.layers.filter((decl) => !(b.layers ?? []).some((l) => l.layer === decl.name));
    if (missing.length > 0)
      throw invalidArgument(
        `run ${runId}: random init ${b.index} lacks layer(s) ${missing.map((l) => l.name).join(', ')}`,
        { runId, index: b.index },
        'send every declared layer of the freshly initialised model',
      );
    try {
      validateCheckpoint(runId, run.declared, run.space.probeScores.rows, {
        step: 0,
        layers: b.layers,
        metrics: {},
      });
    } catch (e) {
      // the same checks as a checkpoint's; the message names the initialisation, not a step
      if (isCmError(e))
        throw new CmError(
          e.code,
          e.message.replace(`run ${runId} step 0`, `run ${runId} random init ${b.index}`),
          {
            context: { ...e.context, index: b.index },
            hint: e.hint,
            cause: e,
          },
        );
      throw e;
    }
    const layers: Record<string, RandomInitLayer> = {};
    for (const decl of run.spec.layers) {
      const layer = b.layers.find((l) => l.layer === decl.name)!;
      const q: Matrix =
        layer.shape.length === 2
          ? { rows: layer.shape[0], cols: layer.shape[1], data: layer.data }
          : poolLayer({ shape: layer.shape, data: layer.data }, layer.pooling ?? 'avg');
      const d = await this.opts.dissector.dissect(run.space, q, {
        ...this.opts.dissectOptions,
        conceptCeiling: true,
      });
      if (!d.evidence?.conceptCeiling) return { complete: false }; // a dissector without evidence (test doubles)
      layers[decl.name] = randomInitLayer(d);
    }
    run.pendingInits = inits;
    run.pendingBaseline.set(b.index, layers);
    const key = run.baselineKey;
    try {
      // durable before the ack: a replica the trainer fails over to needs only the inits after it
      await this.baselines.saveInit(key, b.index, layers);
      const missing = Array.from({ length: inits }, (_, i) => i).filter((i) => !run.pendingBaseline.has(i));
      if (missing.length > 0) {
        const kept = await this.baselines.loadInits(
          key,
          missing,
          run.spec.layers.map((decl) => decl.name),
        );
        for (const [index, init] of kept) run.pendingBaseline.set(index, init);
      }
      if (run.pendingBaseline.size < inits) return { complete: false };
      const stored: StoredBaseline = {
        key,
        bundleId: run.spec.bundleId,
        model: run.spec.model,
        inits,
        layers: Object.fromEntries(
          run.spec.layers.map((decl) => [
            decl.name,
            [...run.pendingBaseline.entries()].sort(([a], [c]) => a - c).map(([, l]) => l[decl.name]),
          ]),
        ),
      };
      // the first complete baseline saved stays: every replica's learned figures use that one
      run.baseline = await this.baselines.save(stored);
    } catch (e) {
      throw new CmError(
        'UNAVAILABLE',
        `run ${runId}: could not keep the random-init baseline: ${e instanceof Error ? e.message : String(e)}`,
        {
          context: { runId },
          cause: e,
          hint: 'check the baseline store: the JetStream bucket (concept service) or <CM_HOME>/baselines (all-in-one)',
        },
      );
    }
    run.pendingBaseline.clear();
    return { complete: true };
  }

  private remember(run: RunState, processed: ProcessedCheckpoint, digest: string): ProcessedCheckpoint {
    run.recent.set(processed.step, { ...processed, replayed: false, digest });
    for (const step of run.recent.keys()) {
      if (run.recent.size <= this.replayCache) break;
      run.recent.delete(step);
    }
    return processed;
  }

  /** A detector in the state `base` was saved with (one that cannot be restored observes nothing). */
  private detectorAt(runId: string, base: RunCarry): SnapshotObserver {
    const detector = this.newDetector(runId);
    if (base.detector && detector.importState) {
      detector.importState(runId, base.detector);
      return detector;
    }
    return { observe: () => [] };
  }

  private newDetector(runId: string): SnapshotObserver {
    return (
      this.opts.detectorFactory?.(runId) ?? new CollapseDetector(this.opts.alertRules ?? DEFAULT_ALERT_RULES)
    );
  }

  private newRunState(saved: PersistedRunState, bundle: EngineBundle): RunState {
    const runId = saved.spec.runId;
    const detector = this.newDetector(runId);
    if (saved.current.detector && detector.importState) detector.importState(runId, saved.current.detector);
    return {
      spec: saved.spec,
      record: saved.record,
      space: bundle.space,
      declared: new Map(saved.spec.layers.map((l) => [l.name, l])),
      current: saved.current,
      history: saved.recent,
      detector,
      lastStep: saved.lastStep,
      recent: new Map(),
      queue: Promise.resolve(),
      lastActiveMs: this.clockMs(),
      busy: 0,
      streams: 0,
      startToken: saved.startToken,
      baselineKey: baselineKey(saved.spec, this.opts.dissectOptions),
      pendingBaseline: new Map(),
    };
  }

  private persisted(
    run: RunState,
    lastStep: number,
    current: RunCarry,
    recent: PersistedRunState['recent'],
  ): PersistedRunState {
    return { spec: run.spec, record: run.record, lastStep, current, recent, startToken: run.startToken };
  }

  /** The run from memory, else from the store (loaded once even when asked concurrently). */
  private async held(runId: string): Promise<RunState | undefined> {
    const inMemory = this.runs.get(runId);
    if (inMemory) return inMemory;
    let pending = this.loading.get(runId);
    if (!pending) {
      pending = (async () => {
        const stored = await this.loadStored(runId);
        return stored && this.adopt(stored);
      })().finally(() => this.loading.delete(runId));
      this.loading.set(runId, pending);
    }
    return pending;
  }

  /** Hold a stored state in memory (replacing a stale copy), after checking it fits its bundle. */
  private async adopt(stored: PersistedRunState): Promise<RunState> {
    const runId = stored.spec.runId;
    const corrupt = (what: string, cause?: unknown): CmError =>
      new CmError('CORRUPT', `saved state of run ${runId}: ${what}`, {
        context: { runId },
        cause,
        hint: 'delete the run state (bucket CM_RUN_STATE_V1) to restart the run without its history',
      });
    try {
      validateRunSpec(stored.spec);
    } catch (e) {
      throw corrupt(e instanceof Error ? e.message : String(e), e);
    }
    const bundle = await this.loadBundle(stored.spec);
    const widths = new Map(stored.spec.layers.map((l) => [l.name, l.width]));
    for (const carry of [stored.current, ...stored.recent.map((r) => r.before)]) {
      for (const [layer, top1] of Object.entries(carry.top1)) {
        if (widths.get(layer) !== top1.length)
          throw corrupt(
            `previous top-1 of layer ${layer} has ${top1.length} neurons, the run declares ${widths.get(layer) ?? 'no such layer'}`,
          );
      }
    }
    let run: RunState;
    try {
      run = this.newRunState(stored, bundle);
    } catch (e) {
      throw isCmError(e) && e.code === 'CORRUPT' ? e : corrupt(e instanceof Error ? e.message : String(e), e);
    }
    this.runs.set(runId, run);
    this.calibrate(stored.spec, bundle);
    return run;
  }

  private async loadStored(runId: string): Promise<PersistedRunState | undefined> {
    try {
      return await this.store.load(runId);
    } catch (e) {
      if (isCmError(e) && e.code === 'CORRUPT') throw e;
      throw unavailable(`run ${runId}: could not load the saved run state`, runId, e);
    }
  }

  private async saveState(run: RunState, state: PersistedRunState): Promise<void> {
    try {
      await this.store.save(run.spec.runId, state);
    } catch (e) {
      if (isCmError(e) && e.code === 'RESOURCE_EXHAUSTED') throw e;
      throw unavailable(`run ${run.spec.runId}: could not save the run state`, run.spec.runId, e);
    }
  }

  /**
   * Calibrating a layer width's threshold is the slow part of a first dissection (cached per bundle
   * and width by @cm/dissect): start it now, while the trainer computes its first checkpoint.
   */
  private calibrate(spec: RunSpec, bundle: EngineBundle): void {
    const { calibrate } = this.opts.dissector;
    if (calibrate && this.opts.dissectOptions?.threshold === undefined) {
      for (const width of new Set(spec.layers.map((l) => l.width))) {
        calibrate
          .call(
            this.opts.dissector,
            bundle.space,
            width,
            this.opts.dissectOptions?.method,
            this.opts.dissectOptions?.params,
          )
          .catch(() => undefined);
      }
    }
  }

  private state(runId: string): RunState {
    const run = this.runs.get(runId);
    if (!run)
      throw notFound(
        `run ${runId} is not started on this concept service`,
        { runId },
        'send RunStart (startRun) first',
      );
    return run;
  }

  private async loadBundle(spec: RunSpec): Promise<EngineBundle> {
    try {
      return await this.opts.bundles.get(spec.bundleId);
    } catch (e) {
      // What goes back to a trainer names the id and the remedy, not the server's folders or the
      // other bundles it holds (the full error stays in the cause, for the service log).
      if (isCmError(e) && e.code === 'NOT_FOUND') {
        throw new CmError(
          'NOT_FOUND',
          `run ${spec.runId}: probe bundle ${spec.bundleId} is not on this concept service`,
          {
            context: { runId: spec.runId, bundleId: spec.bundleId },
            hint: 'add the bundle folder to the service bundle directory (CM_BUNDLE_DIR; cm probe make/build --root there), or use a bundle it has',
            cause: e,
          },
        );
      }
      if (isCmError(e) && (e.code === 'CORRUPT' || e.code === 'INVALID_ARGUMENT')) {
        throw new CmError(e.code, `run ${spec.runId}: probe bundle ${spec.bundleId}: ${e.message}`, {
          context: { runId: spec.runId, bundleId: spec.bundleId },
          hint: e.hint ?? 'build it with `cm probe build` into the service bundle folder',
          cause: e,
        });
      }
      throw e;
    }
  }
}

function unavailable(message: string, runId: string, cause: unknown): CmError {
  return new CmError('UNAVAILABLE', `${message}: ${cause instanceof Error ? cause.message : String(cause)}`, {
    context: { runId },
    cause,
    hint: 'the run state store (NATS key-value bucket) is unreachable; the client resends unacknowledged checkpoints',
  });
}
