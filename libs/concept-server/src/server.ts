/**
 * The concept service's gRPC server: the ConceptMonitor service of protos/conceptmonitor/v1 bound
 * to a ConceptEngine and a RecordSink. Network shell only; validation and dissection live in
 * @cm/engine, the wire contract (types, conversions, status table) in @cm/protocol.
 */
import * as grpc from '@grpc/grpc-js';
import { CmError, createLogger, type Logger } from '@cm/core';
import type { ConceptEngine, RecordSink } from '@cm/engine';
import {
  serviceDefinition,
  type ServiceMessage,
  type TrainerMessage,
  type WireHealthResponse,
} from '@cm/protocol';
import { MemoryBudget, type MemoryBudgetStats } from './memory-budget';
import { StreamSession, type CheckpointInfo, type MalformedMessage, type SessionObserver } from './session';

export interface ConceptServerOptions {
  engine: ConceptEngine;
  sink: RecordSink;
  /** Largest message accepted (gRPC max receive length). */
  maxMessageBytes?: number;
  /** Bound on one checkpoint's activation bytes. */
  maxCheckpointBytes?: number;
  /** Checkpoints per stream processed concurrently before reading pauses. */
  maxInFlight?: number;
  /**
   * Bound on activation bytes held across all streams (layers being assembled, checkpoints queued
   * for dissection); a stream whose next layer would pass it pauses (default 1 GiB).
   */
  maxBufferedBytes?: number;
  /** Readiness of the dependencies (NATS); Health answers NOT_SERVING with its message when it throws. */
  ready?: () => Promise<void>;
  log?: Logger;
  onCheckpoint?: (info: CheckpointInfo) => void;
  observer?: SessionObserver;
}

export interface ConceptServer {
  /** Bind `address` (host:port, port 0 picks one); resolves with the port. */
  listen(address: string): Promise<number>;
  health(): Promise<WireHealthResponse>;
  /** Stop accepting streams, let running ones finish up to `graceMs`, then cut them. */
  stop(graceMs?: number): Promise<void>;
  readonly activeStreams: number;
  /** The server-wide memory bound: bytes held now, the peak, streams waiting. */
  bufferStats(): MemoryBudgetStats;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
export const DEFAULT_MAX_CHECKPOINT_BYTES = 2 * 1024 * 1024 * 1024;
export const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024 * 1024;

/**
 * The service definition with a deserializer that never throws: grpc-js answers a message it
 * cannot decode with a bare INTERNAL; we want INVALID_ARGUMENT naming the problem.
 */
function tolerantDefinition(): grpc.ServiceDefinition {
  const def = serviceDefinition();
  const monitor = def.Monitor as grpc.MethodDefinition<TrainerMessage, ServiceMessage>;
  return {
    ...def,
    Monitor: {
      ...monitor,
      requestDeserialize: (bytes: Buffer): TrainerMessage | MalformedMessage => {
        try {
          return monitor.requestDeserialize(bytes);
        } catch (e) {
          return { malformed: e instanceof Error ? e.message : String(e) };
        }
      },
    } as grpc.MethodDefinition<TrainerMessage | MalformedMessage, ServiceMessage>,
  };
}

export function createConceptServer(opts: ConceptServerOptions): ConceptServer {
  const log = opts.log ?? createLogger('concept-service');
  const maxMessageBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const server = new grpc.Server({
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    // Ping idle trainers: a trainer host that vanished without closing its connection ends its
    // stream within ~80 s instead of grpc-js' 2 h default, which releases its run for idle eviction.
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_timeout_ms': 20_000,
  });
  const sessions = new Set<StreamSession>();
  const maxBufferedBytes = opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
  if (!(maxBufferedBytes > 0))
    throw new CmError('INVALID_ARGUMENT', `maxBufferedBytes must be > 0, got ${maxBufferedBytes}`);
  const budget = new MemoryBudget(maxBufferedBytes);

  const health = async (): Promise<WireHealthResponse> => {
    try {
      await opts.ready?.();
      return { status: 'SERVING', detail: '', activeStreams: sessions.size };
    } catch (e) {
      return {
        status: 'NOT_SERVING',
        detail: e instanceof Error ? e.message : String(e),
        activeStreams: sessions.size,
      };
    }
  };

  server.addService(tolerantDefinition(), {
    Monitor: (call: grpc.ServerDuplexStream<TrainerMessage | MalformedMessage, ServiceMessage>) => {
      const session = new StreamSession(call, {
        engine: opts.engine,
        sink: opts.sink,
        log,
        maxMessageBytes,
        maxCheckpointBytes: opts.maxCheckpointBytes ?? DEFAULT_MAX_CHECKPOINT_BYTES,
        maxInFlight: opts.maxInFlight ?? 2,
        budget,
        onCheckpoint: opts.onCheckpoint,
        observer: opts.observer,
      });
      sessions.add(session);
      void session.done.then(() => sessions.delete(session));
    },
    Health: (
      _call: grpc.ServerUnaryCall<unknown, WireHealthResponse>,
      callback: grpc.sendUnaryData<WireHealthResponse>,
    ) => {
      health().then(
        (h) => callback(null, h),
        (e) => callback(e as Error),
      );
    },
  });

  return {
    get activeStreams() {
      return sessions.size;
    },
    bufferStats: () => budget.stats(),
    listen(address: string): Promise<number> {
      return new Promise((resolve, reject) => {
        server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => {
          if (err) {
            reject(
              new CmError('UNAVAILABLE', `concept service cannot listen on ${address}: ${err.message}`, {
                context: { address },
                cause: err,
              }),
            );
          } else resolve(port);
        });
      });
    },
    health,
    async stop(graceMs = 10_000): Promise<void> {
      const drained = Promise.all([...sessions].map((s) => s.drain()));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await Promise.race([drained, new Promise((r) => setTimeout(r, 100))]);
    },
  };
}
