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
  CheckpointResult,
  CmRecord,
  CollapseRunState,
  LayerSnapshotRecord,
  MonitoredLayer,
  PersistedRunState,
  RunCarry,
  RunRecord,
  RunSpec,
} from '@cm/contracts';
import { configDefaults } from '@cm/config';
import { CollapseDetector, rulesFromConfig, type CollapseRulesConfig } from '@cm/alerts';
import {
  poolLayer,
  type ConceptSpace,
  type DissectOptions,
  type LayerDissection,
  type Matrix,
} from '@cm/dissect';
import { checkpointRecord, checkpointResult, labelRow, labelsRecords, snapshotRecord } from './records';
import { sameRunSpec, validateCheckpoint, validateRunSpec } from './validate';
import { runSetup } from './setup';
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
}

/** sha1 of a checkpoint's layers (names, shapes, pooling, values): tells a resend from other content. */
function activationsDigest(cp: CheckpointData): string {
  const h = createHash('sha1');
  for (const l of cp.layers ?? []) {
    h.update(`${l.layer}|${l.shape.join('x')}|${l.pooling ?? ''}|`);
    h.update(new Uint8Array(l.data.buffer, l.data.byteOffset, l.data.byteLength));
  }
  return h.digest('hex');
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
  private readonly evictionTimer?: NodeJS.Timeout;

  constructor(private readonly opts: ConceptEngineOptions) {
    this.now = opts.now ?? (() => new Date());
    this.clockMs = opts.clockMs ?? (() => Date.now());
    this.replayCache = opts.replayCache ?? 8;
    this.resendDepth = opts.resendDepth ?? 4;
    this.runIdleMs = opts.runIdleMs ?? DEFAULT_RUN_IDLE_MS;
    this.store = opts.stateStore ?? new MemoryRunStateStore();
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
  async processCheckpoint(runId: string, cp: CheckpointData): Promise<ProcessedCheckpoint> {
    const run = this.runs.get(runId) ?? (await this.held(runId)) ?? this.state(runId);
    run.busy++;
    run.lastActiveMs = this.clockMs();
    const task = run.queue.then(() => this.process(run, cp));
    run.queue = task.catch(() => undefined);
    try {
      return await task;
    } finally {
      run.busy--;
      run.lastActiveMs = this.clockMs();
    }
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

  private async process(run: RunState, cp: CheckpointData): Promise<ProcessedCheckpoint> {
    const runId = run.spec.runId;
    const digest = activationsDigest(cp);
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
      const { processed } = await this.compute(run, cp, resent.before, this.detectorAt(runId, resent.before));
      return this.remember(run, { ...processed, replayed: true }, digest);
    }
    const before = run.current;
    const { processed, after } = await this.compute(run, cp, before, run.detector);
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

  /** Dissect a checkpoint starting from `base`, observing its snapshots with `detector`. */
  private async compute(
    run: RunState,
    cp: CheckpointData,
    base: RunCarry,
    detector: SnapshotObserver,
  ): Promise<{ processed: ProcessedCheckpoint; after: RunCarry }> {
    const runId = run.spec.runId;
    validateCheckpoint(runId, run.declared, run.space.probeScores.rows, cp);
    const time = this.now().toISOString();
    // Dissect in the declared order so records come out in a stable order.
    const ordered = run.spec.layers.map((decl) => cp.layers.find((l) => l.layer === decl.name)!);
    const dissections = await Promise.all(
      ordered.map((layer) => {
        const q: Matrix =
          layer.shape.length === 2
            ? { rows: layer.shape[0], cols: layer.shape[1], data: layer.data }
            : poolLayer({ shape: layer.shape, data: layer.data }, layer.pooling ?? 'avg');
        const t0 = performance.now();
        return this.opts.dissector
          .dissect(run.space, q, { ...this.opts.dissectOptions, previousTop1: base.top1[layer.layer] })
          .then((d) => {
            this.opts.onLayerDissected?.((performance.now() - t0) / 1000, q.cols);
            return d;
          });
      }),
    );
    const labels: CmRecord[] = [];
    const snapshots: LayerSnapshotRecord[] = [];
    ordered.forEach((layer, i) => {
      const d = dissections[i];
      labels.push(...labelsRecords(runId, layer.layer, cp.step, d.labels.map(labelRow), time));
      snapshots.push(snapshotRecord(runId, layer.layer, cp.step, d, time));
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
