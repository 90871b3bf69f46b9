/**
 * One trainer stream (one run, or one reconnect of a run). Reassembles activation chunks into
 * layer tensors (@cm/protocol's LayerAssembly), hands complete checkpoints to the engine, writes
 * the records to the sink and acks each checkpoint once the sink (JetStream) has them. Anything
 * wrong ends this stream, and only this stream, with a gRPC status naming the problem.
 *
 * Flow control: while the run is being registered, or while `maxInFlight` checkpoints are being
 * dissected/published, the session pauses reading; HTTP/2 flow control then holds the trainer's
 * writes (its write() returns false), which is how backpressure reaches the training loop.
 * Memory: every layer's buffer is taken from the server-wide MemoryBudget before it is allocated
 * and given back once its checkpoint is processed; a layer that does not fit pauses the stream the
 * same way until other streams release memory (the message that needed it waits, parked, with the
 * ones behind it).
 */
import * as grpc from '@grpc/grpc-js';
import { CmError, invalidArgument, logLevelEnabled, notFound, type Logger } from '@cm/core';
import type { CheckpointData, LayerActivations } from '@cm/contracts';
import {
  validateLayerHeader,
  type ConceptEngine,
  type ReceivedLayerStream,
  type ReceivingCheckpoint,
  type RecordSink,
} from '@cm/engine';
import {
  LayerAssembly,
  layerHeldBytes,
  resultToWire,
  runStartFromWire,
  validateChunkHeader,
  type ServiceMessage,
  type TrainerMessage,
  type WireActivationChunk,
  type WireCheckpointEnd,
  type WireRandomInitEnd,
  type WireRunStart,
} from '@cm/protocol';
import { toGrpcStatus } from './status';
import type { MemoryBudget } from './memory-budget';

/** Set by the wrapped deserializer when bytes are not a TrainerMessage. */
export interface MalformedMessage {
  malformed: string;
}

export interface SessionOptions {
  engine: ConceptEngine;
  sink: RecordSink;
  log: Logger;
  /** Largest single message the server accepts (reported to the client in RunAccepted). */
  maxMessageBytes: number;
  /** Bound on one checkpoint's activation bytes (all layers). */
  maxCheckpointBytes: number;
  /** Checkpoints dissected/published concurrently before the session stops reading. */
  maxInFlight: number;
  /** The server-wide bound on assembled and queued activation bytes (shared by all sessions). */
  budget?: MemoryBudget;
  onCheckpoint?: (info: CheckpointInfo) => void;
  /** Told of what arrives and how streams end (metrics; see libs/metrics). */
  observer?: SessionObserver;
}

/** What a session reports as it works: the seam its metrics hang on, free of any metrics library. */
export interface SessionObserver {
  /** A checkpoint fully received (CheckpointEnd), with its activation bytes. */
  checkpointReceived(bytes: number): void;
  /** A checkpoint's records are durable and its ack is sent. */
  checkpointAcked(info: CheckpointInfo): void;
  /** A stream ended with an error status (gRPC code name: INVALID_ARGUMENT, UNAVAILABLE, ...). */
  streamRefused(code: string): void;
}

export interface CheckpointInfo {
  runId: string;
  step: number;
  layers: number;
  bytes: number;
  records: number;
  receiveMs: number;
  /** Dissection and publication, from the checkpoint's end to its ack. */
  processMs: number;
  /** Of processMs, writing the records to the sink (JetStream). */
  publishMs: number;
  replayed: boolean;
}

/**
 * At debug level (CM_LOG_LEVEL=debug): the process's memory at each stage of a checkpoint (first
 * chunk, each layer received, end, dissected, published + acked), in MiB: what issue 15's buffer
 * measurements were taken from (`bench:reference-scale -- --memory-trace` prints them).
 */
function logMemory(log: Logger, stage: string, ctx: Record<string, unknown>): void {
  if (!logLevelEnabled('debug')) return; // memoryUsage() reads /proc: not paid at info level
  const m = process.memoryUsage();
  const mib = (v: number): number => Math.round(v / 2 ** 20);
  log.debug(`memory ${stage}`, {
    ...ctx,
    rssMiB: mib(m.rss),
    heapUsedMiB: mib(m.heapUsed),
    externalMiB: mib(m.external),
    arrayBuffersMiB: mib(m.arrayBuffers),
  });
}

type Call = grpc.ServerDuplexStream<TrainerMessage | MalformedMessage, ServiceMessage>;

export class StreamSession {
  private runId?: string;
  private closed = false;
  private step?: number;
  private firstChunkAt = 0;
  private checkpointBytes = 0;
  /** Budget bytes the checkpoint being assembled holds (released once it is processed). */
  private checkpointHeld = 0;
  /** Of checkpointHeld, what no layer uses yet (the checkpoint's reservation). */
  private reserved = 0;
  /**
   * What the next checkpoint is expected to need: the last one's bytes, at first the declared
   * layers pooled ([D, width] float32 each). Reserved whole at its first layer, so a stream does
   * not stop halfway through a checkpoint holding memory others wait for.
   */
  private checkpointEstimate = 0;
  /** Messages received while waiting for budget, replayed in order once it is granted. */
  private parked: (TrainerMessage | MalformedMessage)[] = [];
  private waitingForBudget = false;
  private readonly assembling = new Map<string, LayerAssembly>();
  /**
   * Of the layers being assembled, the raw [D, H, W, C] ones (float32 or float16) the engine pools as their
   * chunks arrive (engine.poolingStream): their raw tensor is never held (issue 15).
   */
  private readonly poolingAsReceived = new Map<string, ReceivedLayerStream>();
  private readonly complete = new Map<string, LayerActivations>();
  /**
   * The checkpoint being received: its complete layers are dissected while the rest arrives. Kept
   * in `receiving` until its processing starts, so that a stream ending first aborts it.
   */
  private current?: ReceivingCheckpoint;
  private readonly receiving = new Set<ReceivingCheckpoint>();
  /**
   * A random initialisation is also sent as step 0 and only its end tells it from a checkpoint:
   * once this stream has sent one, its step-0 chunks are not dissected early (they would be
   * dissected as checkpoint layers, then thrown away).
   */
  private sentRandomInit = false;
  private inFlight = 0;
  private pauses = 0;
  private halfClosed = false;
  private draining = false;
  /** Acks are written in checkpoint order. */
  private tail: Promise<void> = Promise.resolve();
  /** Resolves once this stream is over (ended, failed or cancelled). */
  readonly done: Promise<void>;
  private resolveDone: () => void = () => undefined;

  constructor(
    private readonly call: Call,
    private readonly opts: SessionOptions,
  ) {
    this.done = new Promise<void>((resolve) => (this.resolveDone = resolve));
    call.on('data', (m: TrainerMessage | MalformedMessage) => this.onMessage(m));
    call.on('end', () => this.onHalfClose());
    call.on('cancelled', () => this.abandon('cancelled by the client'));
    call.on('error', () => this.abandon('stream error'));
  }

  private onMessage(m: TrainerMessage | MalformedMessage): void {
    if (this.closed) return;
    if (this.waitingForBudget) {
      this.parked.push(m);
      return;
    }
    try {
      if ('malformed' in m) throw invalidArgument(`malformed TrainerMessage: ${m.malformed}`);
      if ('runStart' in m && m.runStart) this.onRunStart(m.runStart);
      else if ('chunk' in m && m.chunk) this.onChunk(m.chunk);
      else if ('checkpointEnd' in m && m.checkpointEnd) this.onCheckpointEnd(m.checkpointEnd);
      else if ('randomInitEnd' in m && m.randomInitEnd) this.onRandomInitEnd(m.randomInitEnd);
      else if ('runEnd' in m && m.runEnd)
        this.onRunEnd(m.runEnd.status === 'RUN_STATUS_FAILED' ? 'failed' : 'completed');
      else
        throw invalidArgument(
          'TrainerMessage carries none of run_start, chunk, checkpoint_end, random_init_end, run_end',
        );
    } catch (e) {
      this.fail(e, this.step);
    }
  }

  private onRunStart(m: WireRunStart): void {
    if (this.runId !== undefined)
      throw invalidArgument(`stream already carries run ${this.runId}; open a new stream for another run`);
    const badKind = m.layers.find(
      (l) =>
        l.kind !== 'LAYER_KIND_CONV' && l.kind !== 'LAYER_KIND_DENSE' && l.kind !== 'LAYER_KIND_UNSPECIFIED',
    );
    if (badKind)
      throw invalidArgument(
        `run ${m.runId}: layer ${badKind.name} has kind ${String(badKind.kind)}; expected conv or dense`,
      );
    const spec = runStartFromWire(m);
    this.runId = spec.runId;
    // Hold the stream until the run is registered: its chunks are validated against the run.
    this.pause();
    this.enqueue(async () => {
      try {
        const started = await this.opts.engine.startRun(spec, {
          resume: m.resume,
          startToken: m.startToken || undefined,
        });
        this.checkpointEstimate = spec.layers.reduce((sum, l) => sum + l.width * started.probeImages * 4, 0);
        // While this stream is open the run stays in memory (idle eviction skips it).
        const release = this.opts.engine.attach(spec.runId);
        void this.done.then(release);
        await this.writeToSink(started.records);
        this.opts.log.info(
          `run ${spec.runId} ${started.resumed ? 'resumed' : m.resume ? 'resumed on a fresh service' : 'started'}`,
          {
            runId: spec.runId,
            bundleId: spec.bundleId,
            layers: spec.layers.length,
          },
        );
        // whether the trainer should send random initialisations (the learned-concept baseline)
        const baselineWanted = await this.opts.engine.baselineWanted(spec.runId).catch(() => false);
        this.send({
          runAccepted: {
            runId: spec.runId,
            probeImages: started.probeImages,
            maxMessageBytes: this.opts.maxMessageBytes,
            baselineWanted,
          },
        });
      } finally {
        this.resume();
      }
    }, undefined);
  }

  private onChunk(c: WireActivationChunk): void {
    const runId = this.requireRun();
    if (this.step === undefined) {
      this.step = c.step;
      this.firstChunkAt = performance.now();
      logMemory(this.opts.log, 'first chunk', { runId, step: c.step });
      if (c.step !== 0 || !this.sentRandomInit) {
        // after this stream's earlier work: a layer's dissection starts from the state it leaves
        this.current = this.opts.engine.beginCheckpoint(runId, c.step, { after: this.tail });
        this.receiving.add(this.current);
      }
    } else if (c.step !== this.step) {
      throw invalidArgument(
        `run ${runId}: chunk of step ${c.step} arrived before checkpoint ${this.step} ended`,
        { runId, step: this.step },
      );
    }
    const where = `run ${runId} step ${c.step} layer ${c.layer}`;
    let a = this.assembling.get(c.layer);
    if (!a) {
      if (this.complete.has(c.layer))
        throw invalidArgument(`${where}: layer sent twice in one checkpoint`, { runId, layer: c.layer });
      const decl = this.opts.engine.declaredLayer(runId, c.layer);
      if (!decl)
        throw invalidArgument(`${where}: layer was not declared at run start`, { runId, layer: c.layer });
      validateLayerHeader(runId, c.step, decl, this.opts.engine.probeImages(runId), c.layer, c.shape);
      const expected = validateChunkHeader(c, where);
      if (this.checkpointBytes + expected > this.opts.maxCheckpointBytes) {
        throw new CmError(
          'RESOURCE_EXHAUSTED',
          `${where}: checkpoint exceeds the service's bound of ${this.opts.maxCheckpointBytes} bytes`,
          {
            context: { runId, step: c.step },
            hint: 'send pooled [D, N] activations or raise CM_SERVICE_MAX_CHECKPOINT_BYTES',
          },
        );
      }
      if (!this.takeBudget(c, layerHeldBytes(expected, c.dtype), where)) return;
      this.checkpointBytes += expected;
      // float16 too: widened value by value as it arrives, so neither the wire bytes nor the
      // float32 copy of a raw layer is ever allocated (3x its wire size before)
      const streamed = this.opts.engine.poolingStream(runId, c.step, {
        layer: c.layer,
        shape: c.shape,
        pooling: c.pooling === 'POOLING_MAX' ? 'max' : 'avg',
        dtype: c.dtype === 'DTYPE_FLOAT16' ? 'float16' : 'float32',
      });
      if (streamed) this.poolingAsReceived.set(c.layer, streamed);
      a = new LayerAssembly(c, streamed && ((bytes) => streamed.write(bytes)));
      this.assembling.set(c.layer, a);
    }
    // header consistency, offset order and total_bytes are checked by the assembly (@cm/protocol)
    if (a.append(c, where)) {
      this.assembling.delete(c.layer);
      const streamed = this.poolingAsReceived.get(c.layer);
      this.poolingAsReceived.delete(c.layer);
      // pooled (and checked) at once: the raw tensor, often several times its pooled size, goes
      // now instead of after the whole checkpoint is dissected (issue 15, docs/dissect.md "Memory");
      // a streamed layer was pooled chunk by chunk and was never held raw
      const layer = streamed
        ? streamed.finish()
        : this.opts.engine.poolReceivedLayer(runId, c.step, a.toActivations());
      this.complete.set(c.layer, layer);
      logMemory(this.opts.log, 'layer received', { runId, step: c.step, layer: c.layer });
      // its dissection starts now, overlapping the receive of the later layers (issue 15)
      this.current?.addLayer(layer);
    }
  }

  private onCheckpointEnd(m: WireCheckpointEnd): void {
    const runId = this.requireRun();
    if (this.step !== undefined && m.step !== this.step) {
      throw invalidArgument(
        `run ${runId}: checkpoint_end for step ${m.step}, but the chunks were for step ${this.step}`,
        { runId, step: m.step },
      );
    }
    if (this.assembling.size > 0) {
      const [layer, a] = [...this.assembling.entries()][0];
      throw invalidArgument(
        `run ${runId} step ${m.step} layer ${layer}: checkpoint ended after ${a.received} of ${a.totalBytes} bytes`,
        {
          runId,
          step: m.step,
          layer,
        },
      );
    }
    const cp: CheckpointData = {
      step: m.step,
      layers: [...this.complete.values()],
      metrics: { ...m.metrics },
    };
    const bytes = this.checkpointBytes;
    // what the reservation held beyond the layers goes back now; the rest once processed
    if (this.reserved > 0) this.opts.budget?.release(this, this.reserved);
    const held = this.checkpointHeld - this.reserved;
    this.checkpointHeld = 0;
    this.reserved = 0;
    if (held > 0) {
      this.checkpointEstimate = held;
      this.opts.budget?.settle(this, held);
    }
    const receiveMs = this.step === undefined ? 0 : performance.now() - this.firstChunkAt;
    this.step = undefined;
    this.checkpointBytes = 0;
    this.complete.clear();
    const receiving = this.current;
    this.current = undefined;
    this.opts.observer?.checkpointReceived(bytes);
    logMemory(this.opts.log, 'checkpoint end', { runId, step: m.step });
    this.enqueue(async () => {
      const t0 = performance.now();
      if (receiving) this.receiving.delete(receiving);
      // the engine may let go of the raw layers once pooled (cp.layers becomes the pooled ones);
      // acknowledged below only once every layer is dissected and the records are in the sink
      const processed = await (
        receiving
          ? receiving.finish(cp, { release: true })
          : this.opts.engine.processCheckpoint(runId, cp, { release: true })
      ).finally(() => this.opts.budget?.release(this, held));
      const t1 = performance.now();
      logMemory(this.opts.log, 'dissected', { runId, step: cp.step });
      await this.writeToSink(processed.records);
      this.send({ checkpointAck: resultToWire(processed.result) });
      // dissected and published: its pooled layers' buffers serve the next checkpoint (engine
      // releaseLayers; a new buffer per checkpoint stayed resident, dissect's buffer-pool.ts)
      this.opts.engine.releaseLayers(cp.layers);
      logMemory(this.opts.log, 'published and acked', { runId, step: cp.step });
      const info: CheckpointInfo = {
        runId,
        step: cp.step,
        layers: cp.layers.length,
        bytes,
        records: processed.records.length,
        receiveMs: Math.round(receiveMs),
        processMs: Math.round(performance.now() - t0),
        publishMs: Math.round(performance.now() - t1),
        replayed: processed.replayed,
      };
      this.opts.log.info(`checkpoint run=${runId} step=${cp.step} acked`, { ...info });
      this.opts.onCheckpoint?.(info);
      this.opts.observer?.checkpointAcked(info);
    }, cp.step);
  }

  /**
   * The chunks since the last end were a random initialisation of the model (the learned-concept
   * baseline, docs/dissect.md): dissected by the engine, recorded nowhere, answered with
   * RandomInitAck. A refused one is answered with its error and the stream goes on: only the run's
   * learned figure is affected.
   */
  private onRandomInitEnd(m: WireRandomInitEnd): void {
    const runId = this.requireRun();
    if (this.assembling.size > 0) {
      const [layer, a] = [...this.assembling.entries()][0];
      throw invalidArgument(
        `run ${runId} random init ${m.index} layer ${layer}: ended after ${a.received} of ${a.totalBytes} bytes`,
        { runId, layer },
      );
    }
    const layers = [...this.complete.values()];
    this.sentRandomInit = true;
    // not a checkpoint: what was dissected early is thrown away (awaited before the baseline's own)
    const discarded = this.current?.abort();
    if (this.current) this.receiving.delete(this.current);
    this.current = undefined;
    if (this.reserved > 0) this.opts.budget?.release(this, this.reserved);
    const held = this.checkpointHeld - this.reserved;
    this.checkpointHeld = 0;
    this.reserved = 0;
    if (held > 0) this.opts.budget?.settle(this, held);
    this.step = undefined;
    this.checkpointBytes = 0;
    this.complete.clear();
    this.enqueue(async () => {
      let answer: { index: number; complete: boolean; error: string };
      try {
        await discarded;
        const r = await this.opts.engine.processBaseline(runId, { index: m.index, inits: m.inits, layers });
        // dissected: the buffers of the layers pooled on arrival can be reused (not after a refusal)
        this.opts.engine.releaseLayers(layers);
        answer = { index: m.index, complete: r.complete, error: '' };
      } catch (e) {
        answer = { index: m.index, complete: false, error: e instanceof Error ? e.message : String(e) };
        this.opts.log.warn(`run ${runId}: random init ${m.index} refused: ${answer.error}`, { runId });
      } finally {
        this.opts.budget?.release(this, held);
      }
      this.send({ randomInitAck: answer });
    }, undefined);
  }

  private onRunEnd(status: 'completed' | 'failed'): void {
    const runId = this.requireRun();
    this.enqueue(async () => {
      await this.writeToSink([await this.opts.engine.endRun(runId, status)]);
      this.opts.log.info(`run ${runId} ended (${status})`, { runId, status });
      this.send({ runEnded: { runId } });
    }, undefined);
  }

  private onHalfClose(): void {
    this.halfClosed = true;
    // messages parked for budget come first; onBudgetGranted calls back here
    if (this.waitingForBudget) return;
    // Finish what was received, then close with OK.
    void this.tail.then(() => {
      if (!this.closed) {
        this.closed = true;
        this.call.end();
        this.releaseBudget();
        this.resolveDone();
      }
    });
  }

  /** Run `task` after the earlier ones (acks stay in order); pause reading while too much is queued. */
  private enqueue(task: () => Promise<void>, step: number | undefined): void {
    this.inFlight++;
    if (this.inFlight >= this.opts.maxInFlight) this.pause();
    const run = this.tail.then(async () => {
      if (this.closed) return;
      try {
        await task();
      } catch (e) {
        this.fail(e, step);
      }
    });
    this.tail = run.finally(() => {
      this.inFlight--;
      if (this.inFlight < this.opts.maxInFlight) this.resume();
    });
  }

  /**
   * Graceful stop: read no more, finish and ack the checkpoints already received, then end the
   * stream with UNAVAILABLE so the client reconnects (elsewhere or later) and resends the rest.
   */
  async drain(): Promise<void> {
    this.draining = true;
    this.pause();
    await this.tail;
    this.fail(
      new CmError('UNAVAILABLE', 'concept service is shutting down', {
        hint: 'the client reconnects and resends unacknowledged checkpoints',
      }),
      undefined,
    );
  }

  /**
   * Budget for a new layer of `cost` bytes. The first layer of a checkpoint reserves the whole
   * checkpoint's estimate; later layers draw on it, and take more only when the estimate was low.
   * True when the bytes are there; false when the stream has to wait: the chunk is parked, reading
   * pauses, and the chunk is replayed once granted.
   */
  private takeBudget(c: WireActivationChunk, cost: number, where: string): boolean {
    const budget = this.opts.budget;
    if (!budget) return true;
    if (cost > budget.limit) {
      throw new CmError(
        'RESOURCE_EXHAUSTED',
        `${where}: layer needs ${cost} bytes, more than the service's buffer bound of ${budget.limit} bytes`,
        {
          context: { runId: this.runId, step: c.step, layer: c.layer },
          hint: 'send pooled [D, N] activations or raise CM_SERVICE_MAX_BUFFERED_BYTES',
        },
      );
    }
    if (this.reserved < cost) {
      const want =
        this.checkpointHeld === 0
          ? Math.min(budget.limit, Math.max(cost, this.checkpointEstimate))
          : cost - this.reserved;
      if (budget.tryTake(this, want)) {
        this.reserved += want;
        this.checkpointHeld += want;
      } else {
        this.waitingForBudget = true;
        this.parked.unshift({ chunk: c });
        this.pause();
        budget.wait(this, want, () => this.onBudgetGranted(want));
        return false;
      }
    }
    this.reserved -= cost;
    return true;
  }

  private onBudgetGranted(bytes: number): void {
    if (this.closed) {
      this.opts.budget?.releaseAll(this);
      return;
    }
    this.waitingForBudget = false;
    this.reserved += bytes;
    this.checkpointHeld += bytes;
    const parked = this.parked;
    this.parked = [];
    for (const m of parked) this.onMessage(m);
    this.resume();
    if (this.halfClosed && !this.waitingForBudget) this.onHalfClose();
  }

  private pause(): void {
    if (this.pauses++ === 0) this.call.pause();
  }
  private resume(): void {
    if (this.pauses > 0 && --this.pauses === 0 && !this.closed && !this.halfClosed && !this.draining)
      this.call.resume();
  }

  private async writeToSink(records: Parameters<RecordSink['write']>[0]): Promise<void> {
    try {
      await this.opts.sink.write(records);
    } catch (e) {
      throw new CmError(
        'UNAVAILABLE',
        `could not publish records: ${e instanceof Error ? e.message : String(e)}`,
        {
          cause: e,
          hint: 'the message bus is unreachable; the client resends unacknowledged checkpoints',
        },
      );
    }
  }

  private requireRun(): string {
    if (this.runId === undefined)
      throw notFound(
        'stream sent activations before RunStart: no run on this stream',
        {},
        'send run_start first',
      );
    return this.runId;
  }

  private send(m: ServiceMessage): void {
    if (!this.closed) this.call.write(m);
  }

  private fail(e: unknown, step: number | undefined): void {
    if (this.closed) return;
    this.closed = true;
    const status = toGrpcStatus(e, step);
    this.opts.observer?.streamRefused(grpc.status[status.code]);
    this.opts.log[this.draining ? 'info' : 'warn'](
      `stream of run ${this.runId ?? '(none)'} ended: ${status.full}`,
      { runId: this.runId, step, code: status.code },
    );
    this.call.emit('error', status);
    this.releaseBudget();
    this.resolveDone();
  }

  private abandon(why: string): void {
    if (this.closed) return;
    this.closed = true;
    this.opts.log.info(`stream of run ${this.runId ?? '(none)'} ${why}`, { runId: this.runId });
    this.releaseBudget();
    this.resolveDone();
  }

  /**
   * The stream is over: what it held of the budget comes back (a task still running gives nothing
   * more back). Checkpoints received but not yet being processed are aborted; their budget comes
   * back once their early dissections are over (until then they still hold the pooled layers).
   */
  private releaseBudget(): void {
    this.parked = [];
    this.assembling.clear();
    this.poolingAsReceived.clear();
    this.complete.clear();
    this.current = undefined;
    const aborted = [...this.receiving].map((r) => r.abort());
    this.receiving.clear();
    if (aborted.length === 0) this.opts.budget?.releaseAll(this);
    else void Promise.all(aborted).finally(() => this.opts.budget?.releaseAll(this));
  }
}
