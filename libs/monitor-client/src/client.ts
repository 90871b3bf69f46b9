/**
 * The trainer SDK over gRPC: a `Monitor` (see @cm/contracts) that streams checkpoints to a concept
 * service (protos/conceptmonitor/v1).
 *
 * Delivery: every checkpoint stays in an in-memory buffer until the service acknowledges it (its
 * records are in JetStream). When the stream fails for a transient reason (service restarting,
 * network), the client reconnects with backoff, sends RunStart again (resume) and resends every
 * unacknowledged checkpoint; the service and JetStream make the resend harmless. When the service
 * rejects a checkpoint (bad shape, NaN...), that checkpoint's promise rejects with the service's
 * message and the others continue on a new stream.
 *
 * Bounds: the buffer holds at most `maxBufferedBytes` of encoded activations; `sendCheckpoint`
 * waits at most `maxBlockMs` for room, and buffered checkpoints wait at most `maxBlockMs` for the
 * service to come back. What happens then is the policy: 'drop' resolves them with `undefined`,
 * logs a warning and counts `droppedCheckpoints`; 'wait' rejects them with TIMEOUT/UNAVAILABLE
 * (with the default maxBlockMs = Infinity, 'wait' waits for as long as the service is down).
 * 'spool': while the service is unreachable (or the memory buffer is full) checkpoints are written
 * to a bounded folder on disk (`spoolDir`/<run id>, at most `spoolMaxBytes`) and resolve with
 * `undefined` at once, so training goes on; when the service is back they are read back oldest
 * first and sent in order, behind whatever was in memory. A full spool drops (counted in
 * `droppedCheckpoints`), like 'drop'. `endRun` waits for the spool to drain; when the service stays
 * unreachable `maxBlockMs` at that point, what is left is dropped and counted.
 * The random-init baseline of the learned-concept figure (sendBaseline) is spooled the same way:
 * with the service unreachable when the run starts, baselineWanted() answers true (the service
 * cannot say yet), the K initialisations wait on disk ahead of the checkpoints and go out first when
 * it is back, so the run gets its learned figure from its first checkpoint on; a service that has the
 * architecture's baseline by then (RunAccepted.baseline_wanted false) is not sent them.
 * Backpressure: a write() that returns false suspends sending until 'drain'.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CmError, createLogger, type Logger } from '@cm/core';
import type {
  CheckpointData,
  CheckpointResult,
  Monitor,
  RandomInitBaseline,
  RunSpec,
  StartOptions,
} from '@cm/contracts';
import {
  DEFAULT_CHUNK_BYTES,
  checkpointToWire,
  clientConstructor,
  payloadBytes,
  resultFromWire,
  runStartToWire,
  type ServiceMessage,
  isPermanentStatus,
  statusToCmError,
  stepFromMetadata,
  type TrainerMessage,
  type WireFloat,
} from '@cm/protocol';
import { Spool } from './spool';

export type DeliveryPolicy = 'wait' | 'drop' | 'spool';

/** Default bound of a run's spool folder (policy 'spool'). */
export const DEFAULT_SPOOL_MAX_BYTES = 2 * 1024 * 1024 * 1024;

export interface MonitorClientOptions {
  /**
   * host:port of the concept service, or several replicas comma-separated
   * (`a:50051,b:50051`): a stream lost on one is taken up on the next, and the run continues
   * there with its state (the replicas share it through JetStream KV).
   */
  target: string;
  /** What to do when the service stays unreachable or the buffer stays full (default 'wait'). */
  policy?: DeliveryPolicy;
  /** Longest a checkpoint waits for buffer room or for the service (default: wait Infinity, drop and spool 5000). */
  maxBlockMs?: number;
  /** Policy 'spool': the folder under which each run spools into `<spoolDir>/<run id>` (default .cm/spool; callers pass <CM_HOME>/spool). */
  spoolDir?: string;
  /** Policy 'spool': bound on a run's spool files, in bytes (default 2 GiB). */
  spoolMaxBytes?: number;
  /** Bound on unacknowledged activation bytes held for resend (default 512 MiB). */
  maxBufferedBytes?: number;
  /** Wire precision of activations (default float32; float16 halves the bytes). */
  dtype?: WireFloat;
  /** Activation bytes per chunk message (default 1 MiB, a quarter of gRPC's default limit). */
  chunkBytes?: number;
  /** Reconnect backoff (default 100 ms doubling to 2 s). */
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number };
  credentials?: grpc.ChannelCredentials;
  channelOptions?: grpc.ChannelOptions;
  log?: Logger;
}

export interface MonitorClientStats {
  connected: boolean;
  acknowledgedCheckpoints: number;
  droppedCheckpoints: number;
  /** Checkpoints written again on a new stream after a failure. */
  resentCheckpoints: number;
  reconnects: number;
  /** Checkpoints written to the spool folder (policy 'spool'), delivered or not. */
  spooledCheckpoints: number;
  /** Random initialisations written to the spool folder (policy 'spool'), delivered or not. */
  spooledBaselines: number;
  /** Spooled random initialisations not sent: the service had the architecture's baseline by then. */
  skippedBaselines: number;
  /** Checkpoints in the spool folder now, and their bytes on disk. */
  spoolPendingCheckpoints: number;
  spoolBytes: number;
  pendingCheckpoints: number;
  bufferedBytes: number;
  sentBytes: number;
}

export interface MonitorClient extends Monitor {
  stats(): MonitorClientStats;
  /** RunAccepted.baseline_wanted: the service has no random-init baseline of the run's architecture yet. */
  baselineWanted(): Promise<boolean>;
  /** One random initialisation (RandomInitEnd); resolves on its RandomInitAck. */
  sendBaseline(baseline: RandomInitBaseline): Promise<void>;
  /** See Monitor.undeliveredSteps: the steps of this run dropped, or refused after being spooled. */
  undeliveredSteps(): { dropped: readonly number[]; failed: readonly { step: number; error: string }[] };
}

interface Item {
  /** 'baseline': a random initialisation of the model (learned-concept baseline); step = -2 - index. */
  kind: 'checkpoint' | 'end' | 'baseline';
  step: number;
  messages: TrainerMessage[];
  bytes: number;
  /** Id of the connection it was last written on (0 = never written). */
  writtenOn: number;
  /** While disconnected: when it is dropped (drop) or failed (wait), or its caller let go (spool). */
  deadline?: number;
  /** Policy 'spool': the caller was answered `undefined`; the item stays to be delivered. */
  released?: boolean;
  resolve(result: CheckpointResult | undefined): void;
  reject(error: Error): void;
}

interface RoomRequest {
  bytes: number;
  settle(granted: boolean): void;
  timer?: NodeJS.Timeout;
}

interface Connection {
  id: number;
  call: grpc.ClientDuplexStream<TrainerMessage, ServiceMessage>;
  ready: boolean;
  dead: boolean;
  wake?: () => void;
}

type StreamMethod = (
  metadata?: grpc.Metadata,
  options?: grpc.CallOptions,
) => grpc.ClientDuplexStream<TrainerMessage, ServiceMessage>;

export function createMonitorClient(opts: MonitorClientOptions): MonitorClient {
  return new GrpcMonitorClient(opts);
}

class GrpcMonitorClient implements MonitorClient {
  private readonly log: Logger;
  private readonly policy: DeliveryPolicy;
  private readonly maxBlockMs: number;
  private readonly maxBufferedBytes: number;
  private readonly dtype: WireFloat;
  private readonly chunkBytes: number;
  private readonly initialDelayMs: number;
  private readonly maxDelayMs: number;
  /** The replicas (MonitorClientOptions.target), one channel each, made when first used. */
  private readonly targets: string[];
  private readonly channels = new Map<string, grpc.Client>();
  private targetIndex = 0;

  private spec?: RunSpec;
  private accepted = false;
  /** startRun's resume option: every RunStart of this run asks to continue it. */
  private resumeAsked = false;
  /** This start's token, sent on every (re)connect: see RunStart.start_token. */
  private startToken = '';
  private fatal?: Error;
  private items: Item[] = [];
  private buffered = 0;
  private conn?: Connection;
  private connSeq = 0;
  private delayMs: number;
  private reconnectTimer?: NodeJS.Timeout;
  private deadlineTimer?: NodeJS.Timeout;
  private closed = false;
  private outageLogged = false;
  private readonly readyWaiters = new Set<() => void>();
  /** RunAccepted.baseline_wanted of the current run's last accepted stream. */
  private baselineWantedByService = false;
  private roomQueue: RoomRequest[] = [];
  private readonly counters = {
    acknowledged: 0,
    dropped: 0,
    resent: 0,
    reconnects: 0,
    sentBytes: 0,
    spooled: 0,
    spooledBaselines: 0,
    skippedBaselines: 0,
  };
  private spool?: Spool;
  /** Steps of the current (or last) run dropped: see Monitor.droppedSteps. */
  private dropped: number[] = [];
  /** Steps answered `undefined` (spooled) that the service then refused. */
  private failedLate: { step: number; error: string }[] = [];
  /** The RunEnd written behind spooled checkpoints: its promise settles when the service ends the run. */
  private spooledEnd?: Pick<Item, 'resolve' | 'reject'>;

  constructor(private readonly opts: MonitorClientOptions) {
    this.log = opts.log ?? createLogger('monitor-client');
    this.policy = opts.policy ?? 'wait';
    this.maxBlockMs = opts.maxBlockMs ?? (this.policy === 'wait' ? Infinity : 5000);
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 512 * 1024 * 1024;
    this.dtype = opts.dtype ?? 'float32';
    this.chunkBytes = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    this.initialDelayMs = opts.reconnect?.initialDelayMs ?? 100;
    this.maxDelayMs = opts.reconnect?.maxDelayMs ?? 2000;
    this.delayMs = this.initialDelayMs;
    if (!(this.maxBlockMs >= 0))
      throw new CmError('INVALID_ARGUMENT', `maxBlockMs must be >= 0, got ${this.maxBlockMs}`);
    if (!(this.maxBufferedBytes > 0))
      throw new CmError('INVALID_ARGUMENT', `maxBufferedBytes must be > 0, got ${this.maxBufferedBytes}`);
    if (opts.spoolMaxBytes !== undefined && !(opts.spoolMaxBytes > 0))
      throw new CmError('INVALID_ARGUMENT', `spoolMaxBytes must be > 0, got ${opts.spoolMaxBytes}`);
    this.targets = opts.target
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
    if (this.targets.length === 0) throw new CmError('INVALID_ARGUMENT', 'target names no concept service');
  }

  /** The replica streams go to now. */
  private get target(): string {
    return this.targets[this.targetIndex];
  }

  private get grpcClient(): grpc.Client {
    let client = this.channels.get(this.target);
    if (!client) {
      const Ctor = clientConstructor();
      client = new Ctor(this.target, this.opts.credentials ?? grpc.credentials.createInsecure(), {
        // Reconnect quickly after a service restart (grpc-js defaults back off to 2 minutes).
        'grpc.initial_reconnect_backoff_ms': this.initialDelayMs,
        'grpc.max_reconnect_backoff_ms': this.maxDelayMs,
        ...this.opts.channelOptions,
      });
      this.channels.set(this.target, client);
    }
    return client;
  }

  stats(): MonitorClientStats {
    return {
      connected: this.conn?.ready ?? false,
      acknowledgedCheckpoints: this.counters.acknowledged,
      droppedCheckpoints: this.counters.dropped,
      resentCheckpoints: this.counters.resent,
      reconnects: this.counters.reconnects,
      spooledCheckpoints: this.counters.spooled,
      spooledBaselines: this.counters.spooledBaselines,
      skippedBaselines: this.counters.skippedBaselines,
      spoolPendingCheckpoints: this.spool?.checkpoints() ?? 0,
      spoolBytes: this.spool?.bytes ?? 0,
      pendingCheckpoints: this.items.filter((i) => i.kind === 'checkpoint').length,
      bufferedBytes: this.buffered,
      sentBytes: this.counters.sentBytes,
    };
  }

  undeliveredSteps(): { dropped: readonly number[]; failed: readonly { step: number; error: string }[] } {
    return { dropped: [...this.dropped], failed: [...this.failedLate] };
  }

  async startRun(spec: RunSpec, options: StartOptions = {}): Promise<void> {
    this.assertOpen();
    if (this.spec) {
      throw new CmError(
        'INVALID_ARGUMENT',
        `run ${this.spec.runId} is still running on this client; endRun() it first`,
        {
          context: { runId: this.spec.runId, next: spec.runId },
        },
      );
    }
    this.spec = spec;
    this.dropped = [];
    this.failedLate = [];
    this.resumeAsked = options.resume ?? false;
    this.startToken = randomUUID();
    this.accepted = false;
    this.fatal = undefined;
    if (this.policy === 'spool') {
      this.spool = new Spool(
        join(this.opts.spoolDir ?? join('.cm', 'spool'), spec.runId),
        this.opts.spoolMaxBytes ?? DEFAULT_SPOOL_MAX_BYTES,
      );
    }
    this.connect();
    const ready = await this.waitReady(this.maxBlockMs);
    if (this.fatal) {
      const e = this.fatal;
      this.resetRun();
      throw e;
    }
    if (!ready) {
      if (this.policy !== 'wait') {
        this.log.warn(
          `concept service ${this.target} unreachable for ${this.maxBlockMs} ms; run ${spec.runId} goes on, checkpoints are ${this.policy === 'drop' ? 'dropped' : `spooled to ${this.spool?.dir}`} until it returns`,
        );
        return;
      }
      this.resetRun();
      throw new CmError(
        'UNAVAILABLE',
        `concept service ${this.target} unreachable for ${this.maxBlockMs} ms`,
        {
          context: { target: this.target },
          hint: 'start it (`cm stack up`) or use policy drop',
        },
      );
    }
  }

  async sendCheckpoint(cp: CheckpointData): Promise<CheckpointResult | undefined> {
    this.assertOpen();
    if (this.fatal) throw this.fatal;
    if (!this.spec)
      throw new CmError('NOT_FOUND', 'no run started on this client', { hint: 'call startRun first' });
    const messages = checkpointToWire(cp, this.dtype, this.chunkBytes);
    const bytes = payloadBytes(messages);
    if (bytes > this.maxBufferedBytes) {
      throw new CmError(
        'RESOURCE_EXHAUSTED',
        `checkpoint ${cp.step} needs ${bytes} bytes, more than maxBufferedBytes ${this.maxBufferedBytes}`,
        {
          context: { step: cp.step, bytes },
          hint: 'raise maxBufferedBytes, send pooled [D, N] activations, or use dtype float16',
        },
      );
    }
    if (this.spool) return this.sendSpooled(this.spool, 'checkpoint', cp.step, messages, bytes);
    // Reserve buffer room first, in call order (steps must reach the service in order).
    const granted = this.reserve(bytes);
    if (!(granted === true || (await granted))) {
      if (this.fatal) throw this.fatal;
      this.assertOpen();
      if (this.policy === 'drop') {
        this.noteDropped([cp.step]);
        this.log.warn(`checkpoint ${cp.step} dropped: send buffer full for ${this.maxBlockMs} ms`, {
          step: cp.step,
          dropped: this.counters.dropped,
        });
        return undefined;
      }
      throw new CmError('TIMEOUT', `checkpoint ${cp.step}: send buffer full for ${this.maxBlockMs} ms`, {
        context: { step: cp.step, bufferedBytes: this.buffered, maxBufferedBytes: this.maxBufferedBytes },
        hint: 'the service is slower than training: raise maxBlockMs or maxBufferedBytes, or use policy drop',
      });
    }
    return this.enqueue('checkpoint', cp.step, messages, bytes);
  }

  /**
   * Monitor.baselineWanted: what the service said when it accepted the run. Before any service
   * accepted it: true under policy 'spool' (the baseline is spooled and offered first when the
   * service is back), false otherwise (nothing would carry it).
   */
  async baselineWanted(): Promise<boolean> {
    if (!this.spec || this.fatal) return false;
    if (this.accepted) return this.baselineWantedByService;
    return this.spool !== undefined;
  }

  /**
   * Monitor.sendBaseline: one random initialisation, as chunks (step 0) ended by RandomInitEnd.
   * Resolves once the service dissected it (RandomInitAck); rejects with the service's reason when
   * it was refused. Policy 'spool': while the service is unreachable (or checkpoints are spooled
   * before it) it is written to the spool and resolves at once, like a checkpoint; a spooled one the
   * service then refuses is logged.
   */
  async sendBaseline(b: RandomInitBaseline): Promise<void> {
    this.assertOpen();
    if (this.fatal) throw this.fatal;
    if (!this.spec)
      throw new CmError('NOT_FOUND', 'no run started on this client', { hint: 'call startRun first' });
    const messages = checkpointToWire(
      { step: 0, layers: b.layers, metrics: {} },
      this.dtype,
      this.chunkBytes,
    );
    messages[messages.length - 1] = { randomInitEnd: { index: b.index, inits: b.inits } };
    if (this.spool)
      await this.sendSpooled(this.spool, 'baseline', -2 - b.index, messages, payloadBytes(messages));
    else await this.enqueue('baseline', -2 - b.index, messages, payloadBytes(messages));
  }

  async endRun(status: 'completed' | 'failed'): Promise<void> {
    this.assertOpen();
    if (!this.spec)
      throw new CmError('NOT_FOUND', 'no run started on this client', { hint: 'call startRun first' });
    if (this.fatal) {
      this.resetRun();
      return;
    }
    const runEnd: TrainerMessage = {
      runEnd: { status: status === 'failed' ? 'RUN_STATUS_FAILED' : 'RUN_STATUS_COMPLETED' },
    };
    const spool = this.spool;
    if (spool && !(await this.waitReady(this.maxBlockMs))) {
      const inMemory = this.items.filter((i) => i.kind === 'checkpoint');
      const baselines = this.items.filter((i) => i.kind === 'baseline');
      this.items = [];
      this.buffered = 0;
      for (const i of [...inMemory, ...baselines]) i.resolve(undefined);
      const left = spool.checkpoints() + inMemory.length;
      this.noteDropped([...spool.steps(), ...inMemory.map((i) => i.step)]);
      this.log.warn(
        `concept service ${this.target} unreachable for ${this.maxBlockMs} ms at the end of the run: dropped ${left} undelivered checkpoint(s)`,
        { droppedCheckpoints: this.counters.dropped },
      );
      this.spool = undefined;
      spool.close();
      this.resetRun();
      return;
    }
    if (spool && spool.length > 0) {
      // Behind the spooled checkpoints, in order.
      await new Promise<unknown>((resolve, reject) => {
        this.spooledEnd = { resolve, reject };
        spool.put(-1, spool.encode([runEnd]), 64);
        this.drainSpool();
      });
    } else {
      await this.enqueue('end', -1, [runEnd], 64);
    }
    this.resetRun();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.deadlineTimer);
    const items = this.items;
    this.items = [];
    this.buffered = 0;
    for (const i of items)
      i.reject(
        new CmError('UNAVAILABLE', 'monitor client closed before the service acknowledged', {
          context: { step: i.step },
        }),
      );
    this.killConnection();
    this.closeSpool();
    for (const w of this.readyWaiters) w();
    this.refuseRoom();
    for (const client of this.channels.values()) client.close();
  }

  // ---- connection -------------------------------------------------------------------------

  private connect(): void {
    if (this.closed || this.conn || !this.spec) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const method = (this.grpcClient as unknown as { Monitor: StreamMethod }).Monitor.bind(this.grpcClient);
    const call = method();
    const conn: Connection = { id: ++this.connSeq, call, ready: false, dead: false };
    this.conn = conn;
    call.on('data', (m: ServiceMessage) => this.onMessage(conn, m));
    // 'status' carries the code, details and trailers of every ending, OK or not.
    call.on('status', (s: grpc.StatusObject) => this.onEnded(conn, s));
    call.on('error', () => undefined);
    call.write(runStartToWire(this.spec, this.accepted || this.resumeAsked, this.startToken));
  }

  private onMessage(conn: Connection, m: ServiceMessage): void {
    if (conn.dead) return;
    if ('runAccepted' in m && m.runAccepted) {
      conn.ready = true;
      this.baselineWantedByService = m.runAccepted.baselineWanted;
      if (this.accepted) {
        this.counters.reconnects++;
        this.log.info(`reconnected to ${this.target}; resending ${this.items.length} unacknowledged item(s)`);
      }
      this.accepted = true;
      this.outageLogged = false;
      this.delayMs = this.initialDelayMs;
      for (const i of this.items) i.deadline = undefined;
      clearTimeout(this.deadlineTimer);
      for (const w of this.readyWaiters) w();
      this.drainSpool();
      void this.pump(conn);
    } else if ('checkpointAck' in m && m.checkpointAck) {
      const step = m.checkpointAck.step;
      const idx = this.items.findIndex((i) => i.kind === 'checkpoint' && i.step === step);
      if (idx < 0) return; // an ack for a checkpoint already given up on
      const [item] = this.items.splice(idx, 1);
      this.release(item);
      this.counters.acknowledged++;
      item.resolve(resultFromWire(m.checkpointAck));
    } else if ('randomInitAck' in m && m.randomInitAck) {
      const ack = m.randomInitAck;
      const idx = this.items.findIndex((i) => i.kind === 'baseline' && i.step === -2 - ack.index);
      if (idx < 0) return;
      const [item] = this.items.splice(idx, 1);
      this.release(item);
      if (ack.error)
        item.reject(
          new CmError('INVALID_ARGUMENT', `random init ${ack.index} refused: ${ack.error}`, {
            context: { index: ack.index },
          }),
        );
      else item.resolve(undefined);
    } else if ('runEnded' in m && m.runEnded) {
      const idx = this.items.findIndex((i) => i.kind === 'end');
      if (idx < 0) return;
      const [item] = this.items.splice(idx, 1);
      this.release(item);
      item.resolve(undefined);
      conn.call.end();
    }
  }

  /** Write every item not yet written on this connection, in order, honouring backpressure. */
  private async pump(conn: Connection): Promise<void> {
    while (!conn.dead) {
      const item = this.items.find((i) => i.writtenOn !== conn.id);
      if (!item) {
        await new Promise<void>((resolve) => (conn.wake = resolve));
        continue;
      }
      if (item.writtenOn !== 0) this.counters.resent++;
      item.writtenOn = conn.id;
      for (const message of item.messages) {
        if (conn.dead) return;
        this.counters.sentBytes += 'chunk' in message && message.chunk ? message.chunk.data.length : 0;
        if (!conn.call.write(message)) {
          await new Promise<void>((resolve) => {
            conn.wake = resolve;
            conn.call.once('drain', resolve);
          });
        }
      }
    }
  }

  private onEnded(conn: Connection, s: grpc.StatusObject): void {
    if (conn.dead) return;
    conn.dead = true;
    conn.wake?.();
    if (this.conn === conn) this.conn = undefined;
    if (this.closed) return;
    if (s.code === grpc.status.OK && this.items.length === 0) return; // a clean end (after RunEnd)
    if (s.code !== grpc.status.OK && isPermanentStatus(s.code)) {
      const error = statusToCmError(s, this.target);
      if (!conn.ready) {
        // The service refused the run itself (unknown bundle, bad layers...): nothing can go through.
        this.fatal = error;
        const items = this.items;
        this.items = [];
        this.buffered = 0;
        for (const i of items) i.reject(error);
        for (const w of this.readyWaiters) w();
        this.refuseRoom();
        return;
      }
      const step = stepFromMetadata(s.metadata);
      const idx =
        step !== undefined
          ? this.items.findIndex((i) => i.kind === 'checkpoint' && i.step === step)
          : this.items.findIndex((i) => i.writtenOn === conn.id);
      if (idx >= 0) {
        const [item] = this.items.splice(idx, 1);
        this.release(item);
        item.reject(error);
      } else {
        this.log.warn(`stream failed: ${error.message}`);
      }
      // The other checkpoints continue on a fresh stream right away.
      this.connect();
      return;
    }
    if (!this.outageLogged) {
      this.outageLogged = true;
      this.log.warn(
        `stream to ${this.target} lost (${grpc.status[s.code]}: ${s.details}); reconnecting, ${this.items.length} item(s) to resend`,
      );
    }
    this.armDeadlines();
    // with several replicas, the next attempt goes to the next one
    if (this.targets.length > 1) {
      this.targetIndex = (this.targetIndex + 1) % this.targets.length;
      this.log.debug(`next attempt: ${this.target}`);
    }
    this.reconnectTimer = setTimeout(() => this.connect(), this.delayMs);
    this.delayMs = Math.min(this.delayMs * 2, this.maxDelayMs);
  }

  private killConnection(): void {
    const conn = this.conn;
    if (!conn) return;
    conn.dead = true;
    conn.wake?.();
    this.conn = undefined;
    conn.call.cancel();
  }

  // ---- buffer -----------------------------------------------------------------------------

  private enqueue(
    kind: Item['kind'],
    step: number,
    messages: TrainerMessage[],
    bytes: number,
  ): Promise<CheckpointResult | undefined> {
    return new Promise((resolve, reject) => {
      this.items.push({ kind, step, messages, bytes, writtenOn: 0, resolve, reject });
      if (kind !== 'checkpoint') this.buffered += bytes; // checkpoints reserved their room in reserve()
      if (!this.conn) this.connect();
      this.conn?.wake?.();
      this.armDeadlines();
    });
  }

  private release(item: Item): void {
    this.buffered -= item.bytes;
    this.grantRoom();
    this.drainSpool();
  }

  // ---- spool (policy 'spool') -------------------------------------------------------------

  /** A checkpoint, or a random initialisation (step -2 - index), under policy 'spool'. */
  private sendSpooled(
    spool: Spool,
    kind: 'checkpoint' | 'baseline',
    step: number,
    messages: TrainerMessage[],
    bytes: number,
  ): Promise<CheckpointResult | undefined> {
    // Straight to memory only when nothing is spooled before it (order) and there is room now.
    if (
      this.conn?.ready &&
      spool.length === 0 &&
      this.roomQueue.length === 0 &&
      this.buffered + bytes <= this.maxBufferedBytes
    ) {
      if (kind === 'checkpoint') this.buffered += bytes; // enqueue() counts the other kinds
      return this.enqueue(kind, step, messages, bytes);
    }
    const data = spool.encode(messages);
    if (kind === 'baseline') {
      if (!spool.fits(data.length)) {
        this.log.warn(
          `random init ${-2 - step} not spooled: spool ${spool.dir} full (${spool.bytes} + ${data.length} > ${spool.maxBytes} bytes); the run's learned figure waits for a complete baseline`,
        );
        return Promise.resolve(undefined);
      }
      spool.put(step, data, bytes);
      this.counters.spooledBaselines++;
      this.drainSpool();
      return Promise.resolve(undefined);
    }
    if (!spool.fits(data.length)) {
      this.noteDropped([step]);
      this.log.warn(
        `checkpoint ${step} dropped: spool ${spool.dir} full (${spool.bytes} + ${data.length} > ${spool.maxBytes} bytes)`,
        { step, dropped: this.counters.dropped },
      );
      return Promise.resolve(undefined);
    }
    spool.put(step, data, bytes);
    this.counters.spooled++;
    this.drainSpool();
    return Promise.resolve(undefined);
  }

  /** While connected, move spooled entries into memory, oldest first, as long as the buffer has room. */
  private drainSpool(): void {
    const spool = this.spool;
    if (!spool || !this.conn?.ready) return;
    for (let next = spool.peek(); next; next = spool.peek()) {
      // an empty buffer always takes one (a checkpoint never exceeds the bound: sendCheckpoint checks)
      if (this.buffered > 0 && this.buffered + next.payload > this.maxBufferedBytes) return;
      const { step, payload, messages } = spool.pop();
      if (step <= -2 && !this.baselineWantedByService) {
        // the service has the architecture's baseline (another run made it meanwhile): not needed
        this.counters.skippedBaselines++;
        continue;
      }
      this.buffered += payload;
      if (step <= -2) {
        this.items.push({
          kind: 'baseline',
          step,
          messages,
          bytes: payload,
          writtenOn: 0,
          resolve: () => undefined,
          reject: (e) => this.baselineFailedLate(step, e),
        });
      } else if (step < 0) {
        const end = this.spooledEnd;
        this.spooledEnd = undefined;
        this.items.push({
          kind: 'end',
          step,
          messages,
          bytes: payload,
          writtenOn: 0,
          resolve: end?.resolve ?? (() => undefined),
          reject: end?.reject ?? (() => undefined),
        });
      } else {
        this.items.push({
          kind: 'checkpoint',
          step,
          messages,
          bytes: payload,
          writtenOn: 0,
          // the trainer had its answer (undefined) when the checkpoint was spooled
          resolve: () => undefined,
          reject: (e) => this.failLate(step, e),
        });
      }
      this.conn.wake?.();
    }
  }

  /** A random initialisation whose caller was answered at once (spool) was refused by the service. */
  private baselineFailedLate(step: number, e: Error): void {
    this.log.warn(
      `spooled random init ${-2 - step} failed: ${e.message}; the learned figure waits for a complete baseline`,
    );
  }

  /** A checkpoint whose caller was answered `undefined` (spool) was refused by the service. */
  private failLate(step: number, e: Error): void {
    this.failedLate.push({ step, error: e.message });
    this.log.warn(`spooled checkpoint ${step} failed: ${e.message}`, { step });
  }

  private noteDropped(steps: readonly number[]): void {
    this.counters.dropped += steps.length;
    this.dropped.push(...steps);
  }

  private closeSpool(): void {
    if (!this.spool) return;
    const steps = this.spool.steps();
    const left = this.spool.close();
    this.spool = undefined;
    if (left > 0) {
      this.noteDropped(steps);
      this.log.warn(`dropped ${left} spooled checkpoint(s) never delivered`, {
        droppedCheckpoints: this.counters.dropped,
      });
    }
    this.spooledEnd?.reject(new CmError('UNAVAILABLE', 'monitor client closed before the run ended'));
    this.spooledEnd = undefined;
  }

  /**
   * Take `bytes` of buffer room: `true` at once when nobody waits and it fits, else a promise that
   * resolves true when granted (first come, first served) or false after maxBlockMs.
   */
  private reserve(bytes: number): true | Promise<boolean> {
    if (this.roomQueue.length === 0 && this.buffered + bytes <= this.maxBufferedBytes) {
      this.buffered += bytes;
      return true;
    }
    return new Promise<boolean>((resolve) => {
      const request: RoomRequest = { bytes, settle: resolve };
      if (Number.isFinite(this.maxBlockMs)) {
        request.timer = setTimeout(() => {
          this.roomQueue = this.roomQueue.filter((r) => r !== request);
          resolve(false);
          this.grantRoom();
        }, this.maxBlockMs);
      }
      this.roomQueue.push(request);
    });
  }

  private grantRoom(): void {
    while (this.roomQueue.length > 0 && this.buffered + this.roomQueue[0].bytes <= this.maxBufferedBytes) {
      const request = this.roomQueue.shift() as RoomRequest;
      clearTimeout(request.timer);
      this.buffered += request.bytes;
      request.settle(true);
    }
  }

  /** Refuse every waiting reservation (client closed, run refused). */
  private refuseRoom(): void {
    for (const request of this.roomQueue.splice(0)) {
      clearTimeout(request.timer);
      request.settle(false);
    }
  }

  private async waitReady(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.conn?.ready) {
      if (this.closed || this.fatal) return false;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await this.waitSignal(this.readyWaiters, left);
    }
    return true;
  }

  /** Resolve on the next signal of `set` or after `ms` (no timer for an infinite wait). */
  private waitSignal(set: Set<() => void>, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(timer);
        set.delete(done);
        resolve();
      };
      set.add(done);
      if (Number.isFinite(ms)) timer = setTimeout(done, ms);
    });
  }

  /** While disconnected, give every buffered item `maxBlockMs` to see the service again. */
  private armDeadlines(): void {
    // spool: checkpoints in memory are kept for the service, their callers let go after maxBlockMs
    const waiting =
      this.policy === 'spool' ? this.items.filter((i) => i.kind !== 'end' && !i.released) : this.items;
    if (this.conn?.ready || !Number.isFinite(this.maxBlockMs) || waiting.length === 0) return;
    const now = Date.now();
    for (const i of waiting) i.deadline ??= now + this.maxBlockMs;
    const next = Math.min(...waiting.map((i) => i.deadline as number));
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = setTimeout(() => this.expire(), Math.max(0, next - now));
  }

  private expire(): void {
    if (this.conn?.ready) return;
    const now = Date.now();
    if (this.policy === 'spool') {
      for (const item of this.items) {
        if (item.released || item.deadline === undefined || item.deadline > now) continue;
        item.released = true;
        item.deadline = undefined;
        item.resolve(undefined);
        item.resolve = () => undefined;
        item.reject = (e) =>
          item.kind === 'baseline' ? this.baselineFailedLate(item.step, e) : this.failLate(item.step, e);
      }
      this.armDeadlines();
      return;
    }
    const expired = this.items.filter((i) => i.deadline !== undefined && i.deadline <= now);
    this.items = this.items.filter((i) => !expired.includes(i));
    for (const item of expired) {
      this.release(item);
      if (this.policy === 'drop') {
        if (item.kind === 'checkpoint') this.noteDropped([item.step]);
        item.resolve(undefined);
      } else {
        item.reject(
          new CmError('UNAVAILABLE', `concept service ${this.target} unreachable for ${this.maxBlockMs} ms`, {
            context: { step: item.step },
          }),
        );
      }
    }
    if (expired.length && this.policy === 'drop') {
      this.log.warn(`service unreachable for ${this.maxBlockMs} ms: dropped ${expired.length} item(s)`, {
        droppedCheckpoints: this.counters.dropped,
      });
    }
    this.armDeadlines();
  }

  private resetRun(): void {
    this.closeSpool();
    this.spec = undefined;
    this.accepted = false;
    clearTimeout(this.reconnectTimer);
    this.killConnection();
  }

  private assertOpen(): void {
    if (this.closed) throw new CmError('UNAVAILABLE', 'monitor client is closed');
  }
}
