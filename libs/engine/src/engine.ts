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
 */
import { CmError, invalidArgument, isCmError, notFound } from '@cm/core';
import type { AlertRecord, CheckpointData, CheckpointResult, CmRecord, LayerSnapshotRecord, MonitoredLayer, RunRecord, RunSpec } from '@cm/contracts';
import { CollapseDetector, rulesFromConfig, type CollapseRulesConfig } from '@cm/alerts';
import { poolLayer, type ConceptSpace, type DissectOptions, type LayerDissection, type Matrix } from '@cm/dissect';
import { checkpointRecord, checkpointResult, labelRow, labelsRecords, snapshotRecord } from './records';
import { sameRunSpec, validateCheckpoint, validateRunSpec } from './validate';

/** What the engine needs of a probe bundle. */
export interface EngineBundle {
  id: string;
  space: ConceptSpace;
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
  calibrate?(space: ConceptSpace, width: number, method?: DissectOptions['method'], params?: DissectOptions['params']): Promise<number>;
}

/** The collapse detector as the engine uses it (CollapseDetector from @cm/alerts fits). */
export interface SnapshotObserver {
  observe(snapshot: LayerSnapshotRecord): AlertRecord[];
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
  previousTop1: Map<string, Int32Array>;
  detector: SnapshotObserver;
  lastStep: number;
  recent: Map<number, ProcessedCheckpoint>;
  /** Checkpoints of a run are processed one after the other (switches need the previous one). */
  queue: Promise<unknown>;
}

export const DEFAULT_ALERT_RULES: CollapseRulesConfig = rulesFromConfig({
  diversityDropRatio: 0.5,
  diversityFloor: 0.05,
  dominanceShare: 0.6,
  window: 5,
  hysteresis: 2,
});

export class ConceptEngine {
  private readonly runs = new Map<string, RunState>();
  private readonly now: () => Date;
  private readonly replayCache: number;

  constructor(private readonly opts: ConceptEngineOptions) {
    this.now = opts.now ?? (() => new Date());
    this.replayCache = opts.replayCache ?? 8;
  }

  /**
   * Register a run. A second start of a known run with the same spec (a reconnect) resumes it;
   * with a different spec it is an error. Unknown bundle -> NOT_FOUND.
   */
  async startRun(spec: RunSpec): Promise<StartedRun> {
    validateRunSpec(spec);
    const known = this.runs.get(spec.runId);
    if (known) {
      if (!sameRunSpec(known.spec, spec)) {
        throw invalidArgument(
          `run ${spec.runId} is already running with a different bundle, model or layers`,
          { runId: spec.runId },
          'use a new run id for a new run',
        );
      }
      return { records: [], probeImages: known.space.probeScores.rows, resumed: true };
    }
    const bundle = await this.loadBundle(spec);
    const time = this.now().toISOString();
    const record: RunRecord = {
      kind: 'run',
      runId: spec.runId,
      model: spec.model,
      paradigm: spec.paradigm,
      bundleId: spec.bundleId,
      layers: spec.layers.map((l) => ({ name: l.name, width: l.width })),
      tags: { ...spec.tags },
      status: 'running',
      startedAt: time,
      time,
    };
    this.runs.set(spec.runId, {
      spec: { ...spec, layers: spec.layers.map((l) => ({ ...l })), tags: { ...spec.tags } },
      record,
      space: bundle.space,
      declared: new Map(spec.layers.map((l) => [l.name, l])),
      previousTop1: new Map(),
      detector: this.opts.detectorFactory?.(spec.runId) ?? new CollapseDetector(this.opts.alertRules ?? DEFAULT_ALERT_RULES),
      lastStep: -1,
      recent: new Map(),
      queue: Promise.resolve(),
    });
    // Calibrating a layer width's threshold is the slow part of a first dissection (cached per
    // bundle and width by @cm/dissect): start it now, while the trainer computes its first checkpoint.
    const { calibrate } = this.opts.dissector;
    if (calibrate && this.opts.dissectOptions?.threshold === undefined) {
      for (const width of new Set(spec.layers.map((l) => l.width))) {
        calibrate.call(this.opts.dissector, bundle.space, width, this.opts.dissectOptions?.method, this.opts.dissectOptions?.params).catch(() => undefined);
      }
    }
    return { records: [record], probeImages: bundle.space.probeScores.rows, resumed: false };
  }

  hasRun(runId: string): boolean {
    return this.runs.has(runId);
  }

  /** Probe images D of a run's bundle (the first dimension of every activation block). */
  probeImages(runId: string): number {
    return this.state(runId).space.probeScores.rows;
  }

  declaredLayer(runId: string, layer: string): MonitoredLayer | undefined {
    return this.state(runId).declared.get(layer);
  }

  /**
   * Validate, pool and dissect one checkpoint. Steps must increase within a run; a step already
   * processed and still cached is answered from the cache (`replayed`).
   */
  processCheckpoint(runId: string, cp: CheckpointData): Promise<ProcessedCheckpoint> {
    const run = this.state(runId);
    const task = run.queue.then(() => this.process(run, cp));
    run.queue = task.catch(() => undefined);
    return task;
  }

  /** Close a run; returns the final run record to write. Unknown run -> NOT_FOUND. */
  endRun(runId: string, status: 'completed' | 'failed'): RunRecord {
    const run = this.state(runId);
    this.runs.delete(runId);
    const time = this.now().toISOString();
    return { ...run.record, status, endedAt: time, time };
  }

  private async process(run: RunState, cp: CheckpointData): Promise<ProcessedCheckpoint> {
    const runId = run.spec.runId;
    const cached = run.recent.get(cp.step);
    if (cached) return { ...cached, replayed: true };
    if (Number.isInteger(cp.step) && cp.step <= run.lastStep) {
      throw invalidArgument(
        `run ${runId}: checkpoint step ${cp.step} is not after the last processed step ${run.lastStep}`,
        { runId, step: cp.step, lastStep: run.lastStep },
        'steps must increase within a run',
      );
    }
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
        return this.opts.dissector.dissect(run.space, q, { ...this.opts.dissectOptions, previousTop1: run.previousTop1.get(layer.layer) });
      }),
    );
    const labels: CmRecord[] = [];
    const snapshots: LayerSnapshotRecord[] = [];
    ordered.forEach((layer, i) => {
      const d = dissections[i];
      labels.push(...labelsRecords(runId, layer.layer, cp.step, d.labels.map(labelRow), time));
      snapshots.push(snapshotRecord(runId, layer.layer, cp.step, d, time));
    });
    const alerts = snapshots.flatMap((s) => run.detector.observe(s));
    // Commit state only once everything succeeded: a failed checkpoint leaves the run as it was.
    ordered.forEach((layer, i) => run.previousTop1.set(layer.layer, dissections[i].top1));
    run.lastStep = cp.step;
    const processed: ProcessedCheckpoint = {
      step: cp.step,
      records: [checkpointRecord(runId, cp.step, cp.metrics ?? {}, time), ...labels, ...snapshots, ...alerts],
      result: checkpointResult(cp.step, snapshots, alerts),
      replayed: false,
    };
    run.recent.set(cp.step, processed);
    for (const step of run.recent.keys()) {
      if (run.recent.size <= this.replayCache) break;
      run.recent.delete(step);
    }
    return processed;
  }

  private state(runId: string): RunState {
    const run = this.runs.get(runId);
    if (!run) throw notFound(`run ${runId} is not started on this concept service`, { runId }, 'send RunStart (startRun) first');
    return run;
  }

  private async loadBundle(spec: RunSpec): Promise<EngineBundle> {
    try {
      return await this.opts.bundles.get(spec.bundleId);
    } catch (e) {
      if (isCmError(e) && (e.code === 'NOT_FOUND' || e.code === 'CORRUPT' || e.code === 'INVALID_ARGUMENT')) {
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
